#!/usr/bin/env python3
"""Usage: local/infer_batch.py ARGS_FILE [ARGS_FILE ...]

Runs ``python -m espnet_asrser.bin.asrser_inference`` once per ARGS_FILE (its command
line, one argument per line), all in this one Python process, in the order given. An
exception stops at once. An inference that could not decode some utterances (its
``main`` returns 1 after writing the others and listing those in ``<output_dir>/failed``)
does not stop the next ones; the exit status is then 1, naming those ``failed`` files, so
that the recipe stops before scoring outputs that lack utterances.

Why: importing ESPnet takes about 10 s of CPU per process, which is more than a small
model needs to classify a test session, and stage 11 runs six inferences per fold (audio;
text and combined, each with reference and with ASR transcripts; ASR-SER). One process
per fold keeps each fold a single job (for --nj and the Slurm backend) and pays the
import once.
"""

import logging
import sys
from pathlib import Path

from espnet_asrser.bin import asrser_inference


def output_dir(args) -> str:
    return args[args.index("--output_dir") + 1] if "--output_dir" in args else "?"


def main(argv=None) -> int:
    files = sys.argv[1:] if argv is None else argv
    if not files or files[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if files else 1
    incomplete = []
    for i, path in enumerate(files, start=1):
        args = Path(path).read_text(encoding="utf-8").splitlines()
        print(f"# [{i}/{len(files)}] asrser_inference {' '.join(args)}", flush=True)
        if asrser_inference.main(args):
            incomplete.append(f"{output_dir(args)}/failed")
        logging.getLogger().info("finished %s", path)
    if incomplete:
        print(
            f"{len(incomplete)} of {len(files)} inferences could not decode every utterance; "
            f"see {' '.join(incomplete)}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
