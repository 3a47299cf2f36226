"""One transcript convention for word-level (A2W) ASR across IEMOCAP and LibriSpeech.

The A2W model predicts whole words from a vocabulary built on LibriSpeech, whose
transcripts are upper case, without punctuation, with apostrophes kept inside words
(``DON'T``, ``O'CLOCK``). IEMOCAP transcripts are written prose (``Excuse me.``,
``Oh, I- I don't know [LAUGHTER]``); unless both corpora are mapped to the same
convention, fine-tuning on IEMOCAP would meet almost every word as ``<unk>`` or as a new
spelling of a known word.

:func:`normalize_transcript` is that convention:

* annotations in square, curly or angle brackets (``[LAUGHTER]``, ``[BREATHING]``,
  ``{NOISE}``, ``<sil>``) are non-speech and are removed;
* text is upper-cased;
* every character that is not a letter, a digit or an apostrophe becomes a word
  boundary, so ``twenty-five`` is two words, as LibriSpeech writes it;
* an apostrophe survives only between two letters or digits: ``'em``, ``'hello'`` or
  ``players'`` lose it (quotes and trailing possessives), ``don't`` keeps it;
* runs of white space collapse to one space; the result has no leading or trailing
  space and may be empty (an utterance that is only ``[LAUGHTER]``).

Digits are kept as digits: spelling numbers out needs a language-specific verbaliser,
and IEMOCAP has very few of them.
"""

import re
from pathlib import Path
from typing import Union

__all__ = ["normalize_transcript", "normalize_text_file"]

# Non-greedy and non-nested: IEMOCAP marks one event per bracket pair.
_BRACKETED = re.compile(r"\[[^\]]*\]|\{[^}]*\}|<[^>]*>")
# Anything that cannot be part of a word token. ``\w`` also admits ``_``, excluded here.
_NON_WORD = re.compile(r"[^\w']|_")
# An apostrophe not flanked by word characters on both sides (quote marks, ``players'``).
_LOOSE_APOSTROPHE = re.compile(r"(?<![^\W_])'|'(?![^\W_])")


def normalize_transcript(text: str) -> str:
    """Map a transcript to the upper-case, punctuation-free word convention.

    Args:
        text: a transcript as written in the corpus.

    Returns:
        The normalised transcript, words separated by single spaces (possibly empty).

    Examples:
        >>> normalize_transcript("Oh, I- I don't know... [LAUGHTER] 'Really'?")
        "OH I I DON'T KNOW REALLY"
    """
    text = _BRACKETED.sub(" ", text)
    # Typographic apostrophes would otherwise split "don’t" into two words.
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = _NON_WORD.sub(" ", text.upper())
    # Lookarounds see the string before substitution, so one pass also clears "''x".
    text = _LOOSE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


def normalize_text_file(src: Union[str, Path], dst: Union[str, Path]) -> None:
    """Write the Kaldi-style text file ``src`` (``utt-id words ...``) to ``dst`` with every
    transcript in this convention: a pretrained ASR model's tokenizer may write another
    case or punctuation than our references, and a WER (or a text model reading its
    hypotheses) must count words of one convention."""
    lines = []
    for line in Path(src).read_text(encoding="utf-8").splitlines():
        parts = line.split(maxsplit=1)
        if parts:
            text = normalize_transcript(parts[1] if len(parts) > 1 else "")
            lines.append(f"{parts[0]} {text}".rstrip())
    Path(dst).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
