#!/usr/bin/env python3
"""Usage: local/asr_part_config.py --asr_config exp/asr_train_a2w/config.yaml \
           --ser_config conf/train_asrser.yaml --out exp/ser_fold1_train_asrser/input_config.yaml

Stage 10 of the recipe: the training config of the joint ASR-SER model, made of the SER
config plus the ASR part of the pretrained ASR model's own config (the ``config.yaml``
ESPnet wrote when it trained that model).

``--init_param <asr model>::asr`` loads the pretrained weights into the ASR part, which
only works if that part is built exactly like the pretrained model. Taking its
architecture from the pretrained model's config (rather than repeating it in every SER
config) makes that hold by construction for the recipe's own A2W model of stage 6 (a model
trained elsewhere, ``--pretrained_asr``, is built by ``asrser_train --pretrained_asr``
from its own config instead). Copied: the frontend, pre-encoder, encoder, post-encoder,
decoder and CTC settings, ``token_list``/``token_type``/``bpemodel``, and the ASR model
options (``model_conf`` there, ``asr_model_conf`` here). The SER config may update
``asr_model_conf`` (e.g. label smoothing during fine-tuning); setting an architecture key
to another value than the ASR model's is an error. Normalisation is not copied: the
recipe passes each fold's statistics, and ``--init_param`` then restores the ASR part's
own (pretraining) statistics, which are buffers of its checkpoint.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import yaml

ARCHITECTURE_KEYS = (
    "input_size",
    "frontend",
    "frontend_conf",
    "specaug",
    "specaug_conf",
    "preencoder",
    "preencoder_conf",
    "encoder",
    "encoder_conf",
    "postencoder",
    "postencoder_conf",
    "decoder",
    "decoder_conf",
    "ctc_conf",
    "token_list",
    "token_type",
    "bpemodel",
)


def load_yaml(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return config


def write_config(out: Path, header: str, config: dict) -> None:
    """``header`` (a comment line) and ``config`` as YAML; an unchanged file is not
    rewritten, so the recipe's reruns leave every file as it was."""
    text = header + "\n" + yaml.safe_dump(config, sort_keys=False)
    if not out.is_file() or out.read_text(encoding="utf-8") != text:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")


def merge(asr: dict, ser: dict, ser_path: str) -> dict:
    merged = dict(ser)
    for key in ARCHITECTURE_KEYS:
        if key not in asr:
            continue
        if key in ser and ser[key] != asr[key]:
            raise ValueError(
                f"{ser_path} sets {key} = {ser[key]!r}, but the pretrained ASR model has "
                f"{asr[key]!r}; the ASR part must match the pretrained model: remove {key} "
                f"from {ser_path}"
            )
        merged[key] = asr[key]
    merged["asr_model_conf"] = {**asr.get("model_conf", {}), **ser.get("asr_model_conf", {})}
    return merged


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="ASR-SER config with the pretrained ASR part.")
    parser.add_argument("--asr_config", required=True, help="config.yaml of the pretrained ASR")
    parser.add_argument("--ser_config", required=True, help="the SER training config")
    parser.add_argument("--out", required=True, help="the merged config to write")
    args = parser.parse_args(argv)
    try:
        merged = merge(load_yaml(args.asr_config), load_yaml(args.ser_config), args.ser_config)
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    header = f"# {args.ser_config} + the ASR part of {args.asr_config} (local/asr_part_config.py)"
    write_config(Path(args.out), header, merged)
    return 0


if __name__ == "__main__":
    sys.exit(main())
