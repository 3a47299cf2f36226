"""A small ctypes wrapper around eSpeak NG, the formant speech synthesiser.

Usage:
    from espnet_asrser.corpora.espeak import ESpeak
    tts = ESpeak()
    wav = tts.synth("Excuse me.", voice="en-us+m3", rate=170, pitch=45,
                    pitch_range=50, volume=100)   # float32, 16 kHz, mono

The library and its data come from the PyPI wheel ``espeakng-loader``, so nothing
needs root or a system package. eSpeak NG keeps global state (one voice, one
parameter set, one callback per process), so ``ESpeak`` is a per-process
singleton: create it once in each worker process.

Reproducibility. Two things make eSpeak NG's output vary between identical calls:

* random numbers: the breath noise of some voice variants (``breath`` in f2, f3, f5)
  comes from the C library's ``rand()``. ``synth`` reseeds it, and eSpeak's own
  generator, before every utterance;
* state kept by the wave generator from one utterance to the next (the phase of its
  pitch "flutter", its automatic gain control, a cycle counter), which no API resets,
  not even ``espeak_Terminate`` followed by ``espeak_Initialize``: the same sentence
  synthesised twice in a row comes out up to a few hundred samples longer or shorter.

So the output is a deterministic function of the *sequence* of calls made since the
library was loaded. Reproducible corpora therefore synthesise each batch of
utterances in a fresh process, in a fixed order (see ``make_mini_corpora.py``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import List, Optional

import numpy as np
from scipy.signal import resample_poly

# Values of the C enums in espeak-ng/speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_ESPEAK_VOLUME = 2
_ESPEAK_PITCH = 3
_ESPEAK_RANGE = 4
_ESPEAK_WORDGAP = 7
_EE_OK = 0

# int callback(short *wav, int numsamples, espeak_EVENT *events)
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

OUTPUT_SAMPLE_RATE = 16000


class ESpeak:
    """eSpeak NG bound through ctypes, returning 16 kHz float32 waveforms.

    Args:
        library_path: path of ``libespeak-ng.so``; default: the one in ``espeakng_loader``.
        data_path: directory holding ``espeak-ng-data``; default: the one in
            ``espeakng_loader``.
    """

    _instance_pid: Optional[int] = None

    def __init__(
        self, library_path: Optional[str] = None, data_path: Optional[str] = None
    ) -> None:
        if library_path is None or data_path is None:
            import espeakng_loader

            library_path = library_path or espeakng_loader.get_library_path()
            data_path = data_path or espeakng_loader.get_data_path()
        if ESpeak._instance_pid == os.getpid():
            # A second Initialize in one process would silently reset the voice and
            # callback of the first instance; refuse rather than corrupt it.
            raise RuntimeError("ESpeak is a per-process singleton; reuse the instance")
        self._lib = ctypes.CDLL(library_path)
        self._declare_signatures()
        # Returns the native sample rate (22050 Hz for the bundled voices), or -1.
        rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0
        )
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (data path {data_path})")
        self.native_sample_rate: int = int(rate)
        self._chunks: List[np.ndarray] = []
        # Keep a reference to the callback object: ctypes does not, and a collected
        # trampoline would crash the process on the next synthesis.
        self._callback = _SYNTH_CALLBACK(self._on_samples)
        self._lib.espeak_SetSynthCallback(self._callback)
        ESpeak._instance_pid = os.getpid()

    def _declare_signatures(self) -> None:
        lib = self._lib
        lib.espeak_Initialize.argtypes = [
            ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int
        ]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"))
        self._libc.srand.argtypes = [ctypes.c_uint]
        self._libc.srand.restype = None

    def _on_samples(self, wav, numsamples: int, events) -> int:  # noqa: ANN001
        if numsamples > 0 and wav:
            # Copy now: the buffer belongs to espeak and is reused for the next chunk.
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0  # 0 = go on synthesising

    def _check(self, status: int, what: str) -> None:
        if status != _EE_OK:
            raise RuntimeError(f"eSpeak NG {what} failed with status {status}")

    def synth(
        self,
        text: str,
        voice: str = "en-us",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        volume: int = 100,
        word_gap: int = 0,
    ) -> np.ndarray:
        """Synthesise ``text`` and return float32 samples in [-1, 1] at 16 kHz.

        Args:
            text: UTF-8 text; punctuation shapes the intonation (``?`` rises).
            voice: eSpeak voice name, optionally with a variant (``en-us+f3``).
            rate: speaking rate in words per minute (eSpeak accepts 80-450).
            pitch: base pitch, 0-100 (50 is the voice's normal).
            pitch_range: pitch excursion, 0-100 (0 is a monotone, 50 normal).
            volume: amplitude, 0-200 (100 normal); eSpeak compresses above ~150.
            word_gap: extra pause between words, in units of 10 ms.
        """
        self._check(self._lib.espeak_SetVoiceByName(voice.encode()), f"voice {voice!r}")
        # SetVoiceByName resets the parameters to the voice defaults, so set them after.
        for parameter, value in (
            (_ESPEAK_RATE, rate), (_ESPEAK_PITCH, pitch), (_ESPEAK_RANGE, pitch_range),
            (_ESPEAK_VOLUME, volume), (_ESPEAK_WORDGAP, word_gap),
        ):
            self._check(self._lib.espeak_SetParameter(parameter, int(value), 0), "parameter")
        # Same noise for the same call (see the module docstring for what remains).
        self._lib.espeak_ng_SetRandSeed(0)
        self._libc.srand(0)
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        self._check(
            self._lib.espeak_Synth(
                data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            ),
            "synthesis",
        )
        self._lib.espeak_Synchronize()
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        pcm = np.concatenate(self._chunks).astype(np.float32) / 32768.0
        # 22050 -> 16000 is the exact ratio 320/441; polyphase filtering keeps it
        # deterministic and alias-free without an FFT over the whole utterance.
        g = np.gcd(OUTPUT_SAMPLE_RATE, self.native_sample_rate)
        out = resample_poly(pcm, OUTPUT_SAMPLE_RATE // g, self.native_sample_rate // g)
        return out.astype(np.float32)
