"""Checks of the data files given to ``asrser_train``, run before the first batch.

ESPnet reads each ``--{train,valid}_data_path_and_name_and_type`` file on its own
(``read_2columns_text`` splits each line with ``str.split``) and looks utterances up batch
by batch, without checking the files against each other. So, in ESPnet alone:

* an utterance missing from one file is a ``KeyError`` in the middle of some epoch, and one
  missing from the shape file is never trained on, silently;
* a CRLF line end leaves ``\\r`` in every value, bytes that are not UTF-8 stop the run with a
  ``UnicodeDecodeError`` that names no line;
* an emotion label that is not a class fails at the first batch holding it, naming that one
  label only;
* a truncated WAV trains as a shorter utterance, a stereo file goes to a frontend that picks
  one channel at random, and files at one wrong rate train without any message.

:func:`check_data_files` finds all of these at once, before anything is trained (the
collect-stats pass included), and raises :class:`DataFileError` naming the file, the line
or the utterances. Only files that are ``<utt-id> <value>`` tables are read (the types in
:data:`TABLE_TYPES`), by :func:`espnet_asrser.utils.kaldi_table.read_table`, whose
:class:`~espnet_asrser.utils.kaldi_table.KaldiTableError` names the file and line of a
malformed one; audio headers are read for ``sound`` files.
"""

import logging
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_asrser.utils.audio_files import AudioError, read_header
from espnet_asrser.utils.kaldi_table import read_table

logger = logging.getLogger(__name__)

#: ESPnet data types whose file is a ``<utt-id> <value>`` table.
TABLE_TYPES = frozenset(
    {
        "sound",
        "multi_columns_sound",
        "kaldi_ark",
        "npy",
        "text",
        "text_int",
        "text_float",
        "csv_int",
        "csv_float",
    }
)
#: Data names whose value may be empty (an utterance with an empty transcript).
EMPTY_VALUE_NAMES = frozenset({"text"})
_MAX_LISTED = 10


class DataFileError(ValueError):
    """The data files given to the training do not fit together (utterances, labels,
    audio) or cannot be opened; names the files and lines. A file that is not a valid
    table raises :class:`~espnet_asrser.utils.kaldi_table.KaldiTableError` instead."""


def _listed(items: Sequence[str]) -> str:
    more = f" ... ({len(items)} in total)" if len(items) > _MAX_LISTED else ""
    return " ".join(items[:_MAX_LISTED]) + more


def _read_data_file(path: str, name: str) -> Dict[str, str]:
    """``path`` as ``{utt: value}``; any line ESPnet would misread is an error."""
    try:
        # ESPnet needs no order and these files are not always ours (shape files, a
        # hand-made wav.scp), so only what ESPnet would misread is checked.
        entries = read_table(
            path,
            allow_empty_value=name in EMPTY_VALUE_NAMES,
            check_sorted=False,
            check_final_newline=False,
        )
    except OSError as e:
        raise DataFileError(f"cannot read data '{name}' from {path}: {e}") from None
    if not entries:
        raise DataFileError(f"{path}: no utterances (data '{name}')")
    return entries


def _key_problems(
    tables: List[Tuple[str, str, Dict[str, str]]], shape_files: Sequence[str]
) -> List[str]:
    ref_path, _, ref = tables[0]
    ref_keys = set(ref)
    others = [(path, set(entries)) for path, _, entries in tables[1:]]
    for shape_file in shape_files:
        others.append((shape_file, set(_read_data_file(shape_file, "shape"))))
    problems = []
    for path, keys in others:
        missing = sorted(ref_keys - keys)
        extra = sorted(keys - ref_keys)
        if missing:
            problems.append(
                f"{path}: {len(missing)} utterances of {ref_path} are missing: {_listed(missing)}"
            )
        if extra:
            problems.append(
                f"{path}: {len(extra)} utterances are not in {ref_path}: {_listed(extra)}"
            )
    return problems


def check_labels(path: str, entries: Dict[str, str], classes: Sequence[str]) -> None:
    """Every label of ``entries`` is one of ``classes``; else one error listing them all."""
    allowed = set(classes)
    bad: Dict[str, List[Tuple[int, str]]] = defaultdict(list)
    for line_no, (utt, label) in enumerate(entries.items(), start=1):
        if label not in allowed:
            bad[label].append((line_no, utt))
    if not bad:
        return
    parts = []
    for label, where in sorted(bad.items(), key=lambda item: item[1][0][0]):
        line_no, utt = where[0]
        parts.append(f"{label!r} ({len(where)} utterances, first at line {line_no}: {utt})")
    n = sum(len(where) for where in bad.values())
    folded = {c.lower(): c for c in classes}
    hint = ""
    near = {label: folded[label.lower()] for label in bad if label.lower() in folded}
    if near:
        hint = " Labels are case-sensitive: " + ", ".join(
            f"{label!r} is not {cls!r}" for label, cls in near.items()
        ) + "."
    raise DataFileError(
        f"{path}: {n} utterances have an emotion label that is not one of the "
        f"emotion_classes {list(classes)}: {', '.join(parts)}.{hint} Map the labels in data "
        f"preparation, or give --emotion_classes."
    )


def check_audio(
    path: str, entries: Dict[str, str], fs: Optional[int], allow_multi_rates: bool
) -> None:
    """Every audio file of a ``sound`` table opens, holds samples and is mono at ``fs`` Hz
    (or, when ``fs`` is None, all files share one rate unless ``allow_multi_rates``)."""
    bad: List[str] = []
    rates: Dict[int, List[str]] = defaultdict(list)
    for line_no, (utt, wav) in enumerate(entries.items(), start=1):
        if wav.endswith("|"):
            continue  # a command, not a file: ESPnet's sound reader does not take those
        try:
            header = read_header(wav)
        except AudioError as e:
            bad.append(f"{utt} (line {line_no}): {e}")
            continue
        if header.channels != 1:
            bad.append(
                f"{utt} (line {line_no}): {wav} has {header.channels} channels; the model "
                f"takes mono audio (down-mix it, e.g. local/dump_feats.py --downmix true)"
            )
        rates[header.samplerate].append(utt)
    if fs is not None:
        for rate, utts in sorted(rates.items()):
            if rate != fs:
                bad += [
                    f"{utt}: {entries[utt]} is at {rate} Hz; the model's frontend takes {fs} "
                    f"Hz (resample it, e.g. local/dump_feats.py --resample true)"
                    for utt in utts
                ]
    elif len(rates) > 1 and not allow_multi_rates:
        counts = ", ".join(
            f"{rate} Hz: {len(utts)} ({_listed(utts)})" for rate, utts in sorted(rates.items())
        )
        bad.append(f"mixed sampling rates: {counts}")
    if bad:
        raise DataFileError(
            f"{path}: {len(bad)} audio problems:\n  " + "\n  ".join(bad[:_MAX_LISTED])
            + (f"\n  ... ({len(bad)} in total)" if len(bad) > _MAX_LISTED else "")
        )


def check_data_files(
    split: str,
    data_path_and_name_and_type: Sequence[Sequence[str]],
    shape_files: Sequence[str] = (),
    *,
    emotion_classes: Optional[Sequence[str]] = None,
    fs: Optional[int] = None,
    allow_multi_rates: bool = False,
) -> int:
    """Check the data files of one split (``train`` or ``valid``) against each other.

    Args:
        split: for messages.
        data_path_and_name_and_type: ESPnet's triples ``(path, name, type)``.
        shape_files: ESPnet's ``--{split}_shape_file``; they must hold the same utterances.
        emotion_classes: the label set the ``emotion`` data must use.
        fs: the rate ``sound`` files must have (the model's frontend), or None.
        allow_multi_rates: ESPnet's option of that name, for ``fs=None``.

    Returns:
        The number of utterances.

    Raises:
        KaldiTableError: a file is not a valid table (naming its file and line).
        DataFileError: naming the files, the labels or the utterances at fault.
    """
    tables: List[Tuple[str, str, Dict[str, str]]] = []
    for path, name, type_ in data_path_and_name_and_type:
        if type_ not in TABLE_TYPES:
            logger.info(f"{split} data '{name}' ({type_}): not a table, not checked")
            continue
        entries = _read_data_file(path, name)
        if name == "emotion" and emotion_classes is not None:
            check_labels(path, entries, emotion_classes)
        if type_ == "sound":
            check_audio(path, entries, fs, allow_multi_rates)
        tables.append((path, name, entries))
    if not tables:
        return 0
    problems = _key_problems(tables, shape_files)
    if problems:
        raise DataFileError(
            f"{split} data: the files do not hold the same utterances (ESPnet would stop "
            f"with a KeyError mid-epoch, or leave utterances out silently):\n  "
            + "\n  ".join(problems)
            + "\nRegenerate the data directory, or keep only the complete utterances "
            "(local/dump_feats.py merge/subset --drop_incomplete true)."
        )
    n = len(tables[0][2])
    names = ", ".join(f"{name} ({Path(path).name})" for path, name, _ in tables)
    logger.info(f"{split} data checked: {n} utterances in {names}")
    return n
