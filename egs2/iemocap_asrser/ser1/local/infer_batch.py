#!/usr/bin/env python3
"""Usage: local/infer_batch.py ARGS_FILE [ARGS_FILE ...]

Runs ``python -m espnet_asrser.bin.asrser_inference`` once per ARGS_FILE (its command
line, one argument per line), all in this one Python process, in the order given; stops
at the first failure.

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


def main(argv=None) -> int:
    files = sys.argv[1:] if argv is None else argv
    if not files or files[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if files else 1
    for i, path in enumerate(files, start=1):
        args = Path(path).read_text(encoding="utf-8").splitlines()
        print(f"# [{i}/{len(files)}] asrser_inference {' '.join(args)}", flush=True)
        asrser_inference.main(args)
        logging.getLogger().info("finished %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
