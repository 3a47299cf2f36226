#!/usr/bin/env python3
"""Usage: local/export_hf.py RUN_OPTIONS [--out exp/hf]

Writes each fold's packed ASR-SER model (``exp/packed/<experiment>.zip``) as a model
directory in the layout of ESPnet's Hugging Face repositories, ready to upload:
``exp/hf/<experiment>/`` holds the archive's members (``meta.yaml`` naming the config and
the weights by relative paths, the config, the weights, the files the config names), a
``README.md`` model card (what the model is, how to use it, the run's RESULTS.md), and the
experiment's training curves (``images/``). Nothing here needs the network; uploading is
one command (README.md, "Export"), e.g.::

    huggingface-cli upload <user>/<repo> exp/hf/<experiment> .

Opened, once downloaded or as it is, by ``Speech2Emotion.from_pretrained(<dir>)``, by
``--pretrained_asr``-style tools that read ``meta.yaml``, and by ESPnet's model-zoo
loader for Hugging Face directories. A directory whose inputs are unchanged is not
rewritten: its fingerprint is kept in ``<out>/.markers/<experiment>/.done``, outside the
directory, whose ``.done`` would tell ESPnet's loader that its paths are rewritten
already.

RUN_OPTIONS are those of :mod:`espnet_asrser.recipe.layout` (the stage script's run_opts).
"""

import argparse
import shutil
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import yaml

from espnet_asrser.recipe.fingerprint import fingerprint, is_done, mark_done
from espnet_asrser.recipe.layout import Layout, LayoutError, add_run_options
from espnet_asrser.utils.archive import extract_archive

CARD = """---
library_name: espnet
tags:
- espnet
- audio
- speech-emotion-recognition
- automatic-speech-recognition
language: en
datasets:
- iemocap
- librispeech_asr
license: cc-by-4.0
---

# {name}

Speech emotion recognition ({classes}) combined with an acoustic-to-word ASR model: the
{mode} model of fold {fold} ({protocol}, {subset} utterances) of the `egs2/iemocap_asrser/ser1`
recipe of espnet-asrser (an ESPnet plugin), after Feng, Ueno and Kawahara, *End-to-end
speech emotion recognition combined with acoustic-to-word ASR model*, Interspeech 2020.
ASR model: {asr}.{mini}

## Use

```python
from espnet_asrser.bin.asrser_inference import Speech2Emotion

s2e = Speech2Emotion.from_pretrained("<this directory or its downloaded copy>")
result = s2e.classify_file("speech.wav")  # any rate and channels; or s2e([array], fs=...)
result.label, result.posteriors, result.transcript
```

or `python -m espnet_asrser.bin.asrser_inference --model_tag <dir> a.wav b.wav` (prints
`utt label` lines; `--wav_scp` and `--output_dir` for a whole set).

## Training

Config: `{config}` (in this directory). Training curves: `images/`.

{results}
"""


def export_one(layout: Layout, fold: str, out: Path, results: str) -> Optional[Path]:
    exp = Path(layout.ser_exp("asrser", fold))
    archive = Path("exp/packed") / f"{exp.name}.zip"
    if not archive.is_file():
        raise LayoutError(f"no {archive}: pack the models first")
    target = out / exp.name
    images = sorted((exp / "images").glob("*.png"))
    sig = fingerprint([str(archive), *map(str, images), f"{layout.results_dir}/RESULTS.md"])
    marker = out / ".markers" / exp.name
    if target.is_dir() and is_done(marker, sig):
        return None
    staging = out / f".{exp.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    extract_archive(archive, staging)
    meta = yaml.safe_load((staging / "meta.yaml").read_text(encoding="utf-8"))
    config_name = meta["yaml_files"]["asrser_train_config"]
    config = yaml.safe_load((staging / config_name).read_text(encoding="utf-8"))
    if images:
        (staging / "images").mkdir()
        for image in images:
            shutil.copyfile(image, staging / "images" / image.name)
    o = layout.opts
    (staging / "README.md").write_text(
        CARD.format(
            name=exp.name, classes=" ".join(config.get("emotion_classes", [])),
            mode=config.get("mode"), fold=fold, protocol=o.protocol, subset=o.subset,
            asr=layout.asr_label, config=config_name, results=results,
            mini=(" Trained on the recipe's synthetic mini corpora: a demonstration, not a "
                  "model of real speech." if "synthetic mini corpora" in results else ""),
        ),
        encoding="utf-8",
    )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    mark_done(marker, sig)
    return target


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Export the ASR-SER models as HF-style dirs.")
    add_run_options(parser)
    parser.add_argument("--out", default="exp/hf", help="where the directories go (exp/hf)")
    args = parser.parse_args(argv)
    try:
        layout = Layout(args)
        results_md = Path(layout.results_dir, "RESULTS.md")
        results = results_md.read_text(encoding="utf-8") if results_md.is_file() else ""
        # The card's own title is the model's; the run's headings go one level down.
        results = "\n".join("#" + line if line.startswith("#") else line
                            for line in results.splitlines())
        written: List[Path] = []
        for fold in layout.folds:
            target = export_one(layout, fold, Path(args.out), results)
            if target is not None:
                written.append(target)
    except (LayoutError, OSError, KeyError, yaml.YAMLError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    for target in written:
        print(f"exported {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
