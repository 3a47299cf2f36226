#!/usr/bin/env python3
"""Usage: local/pretrained_asrser_config.py --ser_config conf/train_asrser.yaml \
           --audio_config conf/train_audio.yaml \
           --out exp/ser_fold1_train_asrser_pretrained_X/input_config.yaml

Stage 10 of the recipe when ``--pretrained_asr`` is given: the ASR-SER training config,
made of the SER config plus the acoustic frontend of the audio baseline.

With a pretrained ASR the joint model reads waveforms (``wav.scp``): the ASR part
computes its own features with its own frontend and normalisation (both from its
archive, through ``asrser_train --pretrained_asr``), and the acoustic SER branch computes
the recipe's 40-dim log-mel with its own ``frontend``. Taking that frontend from the audio
baseline's config (``frontend: logmel``, the function the dumped features of stage 3 were
made with) gives the ASR-SER model's acoustic branch exactly the features of the audio
and combined baselines; the recipe normalises them with the fold's statistics of stage 8.
A ``frontend`` written in the SER config itself wins. The ASR architecture is not
written here: it is the pretrained model's own, and ``asr_model_conf`` does not apply
(the pretrained model's ``model_conf`` does).
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asr_part_config import load_yaml, write_config  # noqa: E402


def merge(ser: dict, audio: dict, audio_path: str) -> dict:
    if ser.get("input_size") is not None or audio.get("input_size") is not None:
        raise ValueError(
            "input_size is set: the acoustic branch would read precomputed features, but "
            "with --pretrained_asr the model reads waveforms; remove input_size"
        )
    merged = dict(ser)
    if "frontend" not in ser:
        if "frontend" not in audio:
            raise ValueError(f"{audio_path} sets no frontend to copy for the acoustic branch")
        merged["frontend"] = audio["frontend"]
        merged["frontend_conf"] = audio.get("frontend_conf", {})
    return merged


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="ASR-SER config for a pretrained ASR.")
    parser.add_argument("--ser_config", required=True, help="the ASR-SER training config")
    parser.add_argument("--audio_config", required=True, help="the audio baseline's config")
    parser.add_argument("--out", required=True, help="the merged config to write")
    args = parser.parse_args(argv)
    try:
        merged = merge(
            load_yaml(args.ser_config), load_yaml(args.audio_config), args.audio_config
        )
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    header = (
        f"# {args.ser_config} + the acoustic frontend of {args.audio_config} "
        "(local/pretrained_asrser_config.py)"
    )
    write_config(Path(args.out), header, merged)
    return 0


if __name__ == "__main__":
    sys.exit(main())
