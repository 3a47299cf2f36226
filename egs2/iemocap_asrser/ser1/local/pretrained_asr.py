#!/usr/bin/env python3
"""Usage: local/pretrained_asr.py --pretrained_asr SPEC --out exp/asr_pretrained_NAME [--fs 16000]

For ``--pretrained_asr``: instead of pre-training our A2W
model, take an ESPnet ASR model trained elsewhere. SPEC is

* ``X.zip`` / ``X.tar.gz``: an archive of ``python -m espnet2.bin.pack asr``, as the ESPnet
  model zoo serves them (``espnet_model_zoo``'s downloader leaves such a zip in its cache);
* ``DIR``: such an archive unpacked, the directory holding its ``meta.yaml`` (a Hugging
  Face ESPnet model repository is one);
* ``CONFIG,MODEL``: an ESPnet ASR training ``config.yaml`` and its ``.pth``; relative
  paths inside the config are read from the recipe directory.

Written under ``--out``:

* ``archive/``: the archive unpacked by ESPnet's own unpacker (zip/tar.gz only);
* ``config.yaml``: the model's own ESPnet config, with every file it names (normalisation
  statistics, BPE model) as an absolute path and the token list inline, so that ESPnet's
  ``Speech2Text`` and ``asrser_train --pretrained_asr OUT/config.yaml,OUT/model.pth``
  read it from any directory;
* ``model.pth``: a symbolic link to its weights;
* ``info.json``: what the model is (source, units and vocabulary size, frontend, encoder,
  decoder, size of the decoder states that feed the SER model, parameters), for the log
  and RESULTS.md.

Checked before anything is written, so that a model the later stages cannot use fails
here and not after hours of decoding: it builds from its config with ESPnet's ``ASRTask``,
its weights load strictly (every tensor, counts logged), its decoder gives per-token
states (an attention decoder with ``return_hs``), and it reads ``--fs`` Hz waveforms
(the recipe gives it IEMOCAP's wav files; a model of precomputed features or of another
sampling rate is refused). Model-zoo names are not downloaded: a SPEC that is no local
path is an error saying how to fetch the archive.
"""

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import List, Optional

import yaml

from espnet_asrser.asr.decoder_states import decoder_state_size
from espnet_asrser.asr.config_keys import TOKENIZER_KEYS
from espnet_asrser.asr.pretrained import (
    build_asr_from_config,
    frontend_rate,
    load_pretrained_weights,
    resolve_pretrained_asr,
)
from espnet_asrser.model_zoo import PackedModelError


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Unpack and check a pretrained ESPnet ASR.")
    parser.add_argument("--pretrained_asr", required=True, help="zip/tar.gz, DIR or CONFIG,MODEL")
    parser.add_argument("--out", required=True, help="directory to write (exp/asr_pretrained_X)")
    parser.add_argument("--fs", type=int, default=16000, help="sampling rate of the corpus")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    spec, out = args.pretrained_asr, Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # An archive is unpacked below the experiment (the unpacker's cache directory), so
    # exp/ holds every file the later experiments name; a new archive replaces the old.
    shutil.rmtree(out / "archive", ignore_errors=True)
    os.environ["ESPNET_ASRSER_CACHE"] = str((out / "archive").absolute())
    try:
        pretrained = resolve_pretrained_asr(spec)
        config = pretrained.config
        if config.get("input_size") is not None:
            raise ValueError(
                f"--pretrained_asr {spec} reads {config['input_size']}-dim precomputed "
                "features (input_size); the recipe gives it waveforms: use a model with a "
                "frontend"
            )
        rate = frontend_rate(config.get("frontend"), config.get("frontend_conf"))
        if rate is not None and rate != args.fs:
            raise ValueError(
                f"--pretrained_asr {spec} reads {rate} Hz audio (frontend_conf fs) but the "
                f"corpus is {args.fs} Hz"
            )
        asr = build_asr_from_config(config, spec)
        load_pretrained_weights(asr, pretrained.model_file, spec)
    except (OSError, ValueError, TypeError, RuntimeError, PackedModelError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1

    with open(pretrained.config_file, encoding="utf-8") as f:
        full = yaml.safe_load(f)
    # The model's own config (Speech2Text reads a few options beyond the model-building
    # ones), with the model-building part as resolved: absolute paths, inline token list.
    full.update(config)
    for key in TOKENIZER_KEYS:
        full.setdefault(key, None)
    (out / "config.yaml").write_text(
        f"# {spec}: {pretrained.config_file} with absolute paths (local/pretrained_asr.py)\n"
        + yaml.safe_dump(full, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    link = out / "model.pth"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(pretrained.model_file.resolve())
    info = {
        "source": spec,
        "config": str(pretrained.config_file),
        "model": str(pretrained.model_file.resolve()),
        "token_type": config.get("token_type"),
        "vocab_size": len(config["token_list"]),
        "frontend": config.get("frontend"),
        "encoder": config.get("encoder"),
        "decoder": config.get("decoder"),
        "decoder_state_size": decoder_state_size(asr.decoder),
        "parameters": sum(p.numel() for p in asr.parameters()),
    }
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print(
        f"{spec}: {info['encoder']} encoder, {info['decoder']} decoder "
        f"({info['decoder_state_size']}-dim states), {info['token_type']} units "
        f"({info['vocab_size']} tokens), {info['parameters']:,} parameters; "
        f"written to {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
