#!/usr/bin/env python3
"""Usage: local/pack_models.py RUN_OPTIONS

Packs every final model of the run as a model-zoo archive in ``exp/packed``: our A2W model
(ESPnet's own packer, with its normalisation statistics) and the audio, text, combined and
ASR-SER models of every fold (:mod:`espnet_asrser.bin.asrser_pack`, which adds the files
their configs name). A pretrained ASR is not packed again: the ASR-SER archives hold what
they need of it. The ASR-SER archives carry the run's decoding settings (``--decode_config``
with ``--decode_args`` applied), which ``Speech2Emotion.from_pretrained`` uses, so that a
packed model decodes as the recipe evaluated it. ``exp/packed/<name>/.done`` holds the
fingerprint of an archive's inputs; an archive whose inputs are unchanged is not rewritten.
All in one process, which pays ESPnet's import once.

RUN_OPTIONS are those of :mod:`espnet_asrser.recipe.layout` (the stage script's run_opts).
"""

import contextlib
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import yaml

from espnet_asrser.recipe.fingerprint import fingerprint, is_done, mark_done
from espnet_asrser.recipe.layout import Layout, LayoutError, layout_from_args


def pack_one(name: str, main, args: List[str]) -> None:
    out = Path("exp/packed", name)
    sig = fingerprint(args)
    if out.with_suffix(".zip").is_file() and is_done(out, sig):
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "pack.log", "w", encoding="utf-8") as f, contextlib.redirect_stdout(f):
        main([*args, "--outpath", f"{out}.zip"])
    mark_done(out, sig)
    print(f"packed {out}.zip", flush=True)


def decode_config(layout: Layout) -> str:
    """The decoding config local/evaluate.py decodes ASR-SER with: ``--decode_config``
    itself, or, with ``--decode_args``, its beam-search settings with those applied
    (``exp/packed/decode_<tag>.yaml``), read by asrser_inference's own parser."""
    o = layout.opts
    if not o.decode_args.split():
        return o.decode_config
    from espnet_asrser.bin.asrser_inference import DECODE_DEFAULTS, get_parser

    args = get_parser().parse_args(["--config", o.decode_config, *o.decode_args.split()])
    settings = {k: getattr(args, k) for k in DECODE_DEFAULTS if getattr(args, k) is not None}
    path = Path("exp/packed", f"decode_{layout.decode_tag}.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"# {o.decode_config} with {o.decode_args}\n" + yaml.safe_dump(settings)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return str(path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        layout = layout_from_args(argv, "Pack every final model of the run.")
    except LayoutError as e:
        print(f"pack_models.py: error: {e}", file=sys.stderr)
        return 1
    from espnet2.bin.pack import main as espnet_pack
    from espnet_asrser.bin.asrser_pack import main as asrser_pack

    if not layout.pretrained:
        pack_one(
            layout.asr_exp[len("exp/"):],
            espnet_pack,
            ["asr", "--asr_train_config", f"{layout.asr_exp}/config.yaml",
             "--asr_model_file", layout.asr_model_file,
             "--option", f"{layout.asr_stats}/train/feats_stats.npz"],
        )
    for k in layout.folds:
        for system in ("audio", "text", "combined", "asrser"):
            exp = layout.ser_exp(system, k)
            args = ["--asrser_train_config", f"{exp}/config.yaml",
                    "--asrser_model_file", f"{exp}/{layout.opts.ser_model}"]
            if system == "asrser":
                args += ["--decode_config", decode_config(layout)]
            pack_one(exp[len("exp/"):], asrser_pack, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
