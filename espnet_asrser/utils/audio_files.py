"""Reading and checking audio files: what soundfile accepts but a recipe must not.

libsndfile opens a WAV file that was cut short (a copy interrupted by a full disk, a killed
``rsync``) without complaint and returns the samples that are there, so the utterance would
be trained on and scored as a shorter one. :func:`wav_truncation` compares the size that
the RIFF header declares for the sample data with the bytes the file holds.

The other checks are the ones every consumer of ``wav.scp`` in this project needs: the file
opens, holds samples, is mono and at the expected rate. Where the caller allows it,
:func:`read_audio` down-mixes (mean of the channels) and resamples (polyphase, scipy)
instead of refusing; what it did is returned, so that the caller can count and log it.
"""

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np
import soundfile

from espnet2.utils.types import str2bool

PathLike = Union[str, Path]

# A streamed WAV may carry 0 or 0xFFFFFFFF as its data size: "unknown", not truncated.
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)


class AudioError(ValueError):
    """An audio file that cannot be used as it is; the message names the file."""


@dataclass(frozen=True)
class AudioHeader:
    """What the header of an audio file says."""

    path: str
    samplerate: int
    channels: int
    frames: int


def wav_truncation(path: PathLike) -> Optional[str]:
    """Why ``path`` is a truncated RIFF/WAVE file, or None (complete, or not a WAV).

    Only the chunk headers are read, so this costs a few small reads per file.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None  # FLAC, RF64, ...: libsndfile itself fails on a cut-short FLAC
        position = 12
        while position + 8 <= size:
            f.seek(position)
            chunk = f.read(8)
            chunk_id, length = chunk[:4], int.from_bytes(chunk[4:], "little")
            if chunk_id == b"data":
                available = size - position - 8
                if length in _UNKNOWN_SIZES or length <= available:
                    return None
                return (
                    f"truncated: the header declares {length} bytes of samples, the file "
                    f"holds {available}"
                )
            position += 8 + length + (length & 1)
    return "truncated: the file ends before its sample data"


def read_header(path: PathLike) -> AudioHeader:
    """The header of ``path``; raises :class:`AudioError` if it is unreadable, empty or a
    truncated WAV."""
    path = os.fspath(path)
    try:
        info = soundfile.info(path)
        truncated = wav_truncation(path)
    except (RuntimeError, OSError) as e:  # soundfile.LibsndfileError is a RuntimeError
        raise AudioError(f"cannot read audio file {path}: {e}") from None
    if truncated is not None:
        raise AudioError(f"audio file {path} is {truncated}")
    if info.frames == 0:
        raise AudioError(f"audio file {path} is empty (no samples)")
    return AudioHeader(path, int(info.samplerate), int(info.channels), int(info.frames))


def format_problems(
    header: AudioHeader, fs: int, *, resample: bool = False, downmix: bool = False
) -> List[str]:
    """What keeps ``header`` from being mono audio at ``fs`` Hz, given what may be fixed."""
    problems = []
    if header.channels != 1 and not downmix:
        problems.append(f"{header.channels} channels (expected mono)")
    if header.samplerate != fs and not resample:
        problems.append(f"a rate of {header.samplerate} Hz (expected {fs} Hz)")
    return problems


def read_audio(
    path: PathLike, fs: int, *, resample: bool = False, downmix: bool = False
) -> Tuple[np.ndarray, List[str]]:
    """Read ``path`` as mono float32 samples at ``fs`` Hz.

    Args:
        path: an audio file soundfile can read (WAV, FLAC, ...).
        fs: the sampling rate the caller needs.
        resample: convert another rate to ``fs`` instead of refusing the file.
        downmix: average the channels of a multi-channel file instead of refusing it.

    Returns:
        The samples and what was done to them (``["resampled 8000 -> 16000 Hz"]``; empty
        when the file was used as it is).

    Raises:
        AudioError: naming the file: unreadable, truncated, empty, or not mono at ``fs``
            where that is not to be fixed.
    """
    header = read_header(path)
    problems = format_problems(header, fs, resample=resample, downmix=downmix)
    if problems:
        raise AudioError(f"audio file {header.path} has {' and '.join(problems)}")
    try:
        wave, rate = soundfile.read(header.path, dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as e:
        raise AudioError(f"cannot read audio file {header.path}: {e}") from None
    if wave.shape[0] == 0:
        raise AudioError(f"audio file {header.path} is empty (no samples)")
    done = []
    if wave.shape[1] > 1:
        wave = wave.mean(axis=1, keepdims=True)
        done.append(f"down-mixed {header.channels} channels")
    wave = wave[:, 0]
    if rate != fs:
        from scipy.signal import resample_poly

        g = math.gcd(int(rate), int(fs))
        wave = resample_poly(wave, fs // g, rate // g).astype(np.float32)
        done.append(f"resampled {rate} -> {fs} Hz")
    return np.ascontiguousarray(wave, dtype=np.float32), done


def add_accept_format_options(parser: argparse.ArgumentParser) -> None:
    """``--resample``/``--downmix`` of the data preparation scripts: audio at another rate
    or with several channels is accepted there (and converted by the dump stage) instead
    of being an error."""
    parser.add_argument(
        "--resample", type=str2bool, default=False,
        help="accept audio at other rates (local/dump_feats.py --resample true converts it)",
    )
    parser.add_argument(
        "--downmix", type=str2bool, default=False,
        help="accept multi-channel audio (local/dump_feats.py --downmix true mixes it)",
    )
