#!/usr/bin/env python3
"""Usage: local/normalize_text.py IN OUT

Maps the transcripts of a Kaldi-style text file (``utt-id words ...``) to the recipe's
word convention (:func:`espnet_asrser.corpora.text_norm.normalize_text_file`: upper
case, no punctuation, bracketed annotations removed) and writes them to OUT.

Used on the hypotheses of a pretrained ASR model (``--pretrained_asr``), whose tokenizer
may write another case or punctuation than our references: the WER is then counted on
words of one convention, and the text baselines, trained on normalised reference
transcripts, read ASR transcripts in the same convention. Our own A2W model's output is
already in that convention and is not passed through here.
"""

import sys

from espnet_asrser.corpora.text_norm import normalize_text_file


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args[:1] in (["-h"], ["--help"]) else 1
    normalize_text_file(args[0], args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
