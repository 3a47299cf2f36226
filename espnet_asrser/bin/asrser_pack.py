#!/usr/bin/env python3
"""Usage: python -m espnet_asrser.bin.asrser_pack --asrser_train_config exp/X/config.yaml \
    --asrser_model_file exp/X/valid.acc_ser.best.pth --outpath exp/packed/X.zip \
    [--decode_config conf/decode_asr.yaml] [--option FILE ...]

Packs a trained ASR-SER model as a model-zoo archive (see :mod:`espnet_asrser.model_zoo`);
``Speech2Emotion.from_pretrained("X.zip")`` and ``ModelDownloader().unpack_local_file``
open it. With ``--decode_config``, the archive carries the decoding settings the model was
evaluated with (beam size, length limits), which ``from_pretrained`` and
``asrser_inference --model_tag`` use unless told otherwise.
"""

import argparse

from espnet_asrser.model_zoo import pack_asrser_model


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--asrser_train_config",
        required=True,
        help="the config.yaml that asrser_train wrote in its output directory (required)",
    )
    parser.add_argument(
        "--asrser_model_file",
        required=True,
        help="the model to pack, e.g. exp/X/valid.acc_ser.best.pth (required)",
    )
    parser.add_argument(
        "--outpath",
        required=True,
        help="the archive to write; .zip or .tar.gz decides the format (required)",
    )
    parser.add_argument(
        "--decode_config",
        default=None,
        help="the decoding config the model was evaluated with (e.g. conf/decode_asr.yaml), "
        "packed as decode.yaml (default: none: from_pretrained then uses Speech2Emotion's "
        "defaults, width 4 and maxlenratio 0)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        help="an extra file to pack (README, RESULTS.md); repeat for several "
        "(default: none)",
    )
    return parser


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    out = pack_asrser_model(
        args.asrser_train_config, args.asrser_model_file, args.outpath, args.option,
        decode_config=args.decode_config,
    )
    print(f"Packed {out}")


if __name__ == "__main__":
    main()
