"""Reading and checking audio files: what soundfile accepts but a recipe must not.

libsndfile opens a WAV file that was cut short (a copy interrupted by a full disk, a killed
``rsync``) without complaint and returns the samples that are there, so the utterance would
be trained on and scored as a shorter one. :func:`wav_truncation` compares the size that
the RIFF header declares for the sample data with the bytes the file holds.

The other checks are the ones every consumer of ``wav.scp`` in this project needs: the file
opens, holds samples, is mono and at the expected rate. Where the caller allows it,
:func:`read_audio` down-mixes (mean of the channels) and resamples
(:func:`resample_wave`: torchaudio's windowed-sinc resampler with librosa's ``kaiser_best``
settings) instead of refusing; what it did is returned, so that the caller can count and
log it.
"""

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np
import soundfile
import torch

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
        wave = resample_wave(wave, int(rate), int(fs))
        done.append(f"resampled {rate} -> {fs} Hz")
    return np.ascontiguousarray(wave, dtype=np.float32), done


# librosa's "kaiser_best" (torchaudio's resampling tutorial): on 44.1/48 -> 16 kHz it keeps a
# 7 kHz tone within -100 dB and attenuates what would alias by more than 110 dB, where
# torchaudio's default (Hann window, 6 zero crossings) lets -28 dB through and the scipy
# polyphase filter this module used before -14 dB (8.5 kHz) to -55 dB; 3-4 times the cost
# of the latter, about 50 ms per 10 s of 48 kHz audio on one core.
_RESAMPLE_OPTIONS = dict(
    lowpass_filter_width=64,
    rolloff=0.9475937167399596,
    resampling_method="sinc_interp_kaiser",
    beta=14.769656459379492,
)


def resample_wave(wave: Union[np.ndarray, torch.Tensor], orig_fs: int, new_fs: int):
    """``wave`` (samples on the last axis) from ``orig_fs`` to ``new_fs`` Hz with
    ``torchaudio.functional.resample``; same type (array or tensor) as given."""
    import torchaudio.functional

    if orig_fs == new_fs:
        return wave
    x = torch.as_tensor(wave)
    y = torchaudio.functional.resample(
        x.float() if not torch.is_floating_point(x) else x, orig_fs, new_fs, **_RESAMPLE_OPTIONS
    )
    return y.numpy().astype(np.float32, copy=False) if isinstance(wave, np.ndarray) else y


def pcm_to_float(wave: Union[np.ndarray, torch.Tensor]):
    """Integer PCM samples as floats in [-1, 1), scaled as soundfile reads them
    (``int16 / 2**15``, ``int32 / 2**31``, ``(uint8 - 128) / 2**7``); floats unchanged.
    Raises ValueError for other types (bool, complex)."""
    x = torch.as_tensor(wave)
    if torch.is_floating_point(x):
        return wave
    scale = {torch.int8: 2**7, torch.int16: 2**15, torch.int32: 2**31, torch.uint8: 2**7}
    if x.dtype not in scale:
        raise ValueError(
            f"samples of type {x.dtype}: expected float or integer PCM (int8, int16, int32, "
            "uint8)"
        )
    y = x.double()
    if x.dtype == torch.uint8:
        y = y - 128
    y = (y / scale[x.dtype]).float()
    return y.numpy() if isinstance(wave, np.ndarray) else y


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
