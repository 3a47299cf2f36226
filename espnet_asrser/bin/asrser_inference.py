#!/usr/bin/env python3
"""Usage: python -m espnet_asrser.bin.asrser_inference MODEL INPUT [--output_dir DIR] [options]

MODEL: ``--asrser_train_config exp/X/config.yaml --asrser_model_file exp/X/valid.acc_ser.best.pth``,
or ``--model_tag exp/packed/X.zip`` (a packed model or its directory; decoded with the
decoding settings packed with it, e.g. ``maxlenratio``, unless options here say otherwise).

INPUT, one of:

* ``WAV [WAV ...]``: audio files (wav, flac, anything soundfile reads), each named by its
  path as given;
* ``--wav_scp wav.scp``: a Kaldi table ``utt path``;
* ``--data_path_and_name_and_type dump/fbank/test/feats.scp,speech,kaldi_ark`` (ESPnet's
  loader: dumped features, or ``wav.scp,speech,sound`` for audio already mono at the
  model's rate).

Files at another sampling rate are resampled (torchaudio) and multi-channel files
down-mixed (mean) with the first two inputs; the loader's ``sound`` input refuses them
instead, as the recipe does. The text and combined modes also need the transcripts:
``--data_path_and_name_and_type data/test/text,text,text`` (with any INPUT).

With ``--output_dir DIR``: writes Kaldi-style ``DIR/emotion`` (utt label),
``DIR/posteriors`` (utt p_1 ... p_C, in the order of ``DIR/classes``) and, for models with
an ASR part, ``DIR/text`` (utt transcript). Without it: prints ``utt label`` lines on
stdout (logs go to stderr). Progress: a bar on a terminal, a log line every 30 s otherwise.

An utterance that cannot be decoded (unreadable, empty or non-finite audio, shorter than
the model's frontend or encoder can take, or an output that is not finite) does not stop
the others: it is left out of those outputs, listed with the reason in ``DIR/failed``
(utt reason) and logged, and the command exits with status 1 after writing everything
else. ``asrser_score`` refuses a hypothesis file that lacks a reference utterance, so
such an utterance is never left out of a score unnoticed (docs/reliability.md, row 15).

In Python::

    s2e = Speech2Emotion("exp/asrser/config.yaml", "exp/asrser/valid.acc_ser.best.pth")
    s2e.classify_file("x.wav").label       # any rate, any number of channels
    results = s2e([wave1, "y.flac"], fs=8000)   # arrays at fs Hz (files at their own)
    results[0].label, results[0].posteriors, results[0].transcript

For ASR modes, the ASR features come from the beam search on the audio alone (width 4 by
default, as in the paper): all utterances of a batch at once
(:class:`~espnet_asrser.asr.batch_beam_search.UtteranceBatchBeamSearch`), with the hypotheses
and states of ESPnet's per-utterance search (``Speech2Emotion.beam_search``, which runs
instead where the search has CTC prefix scoring); text modes take the transcript as input
(``text=``). ``--batch_size`` sets how many utterances are decoded together.
"""

import argparse
import logging
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import yaml

from espnet_asrser.bin import flash_attention_notice_to_stderr

# Before ESPnet's imports: without output_dir, stdout carries the labels alone.
flash_attention_notice_to_stderr()

from espnet.nets.batch_beam_search import BatchBeamSearch  # noqa: E402
from espnet.nets.beam_search import BeamSearch
from espnet.nets.scorer_interface import BatchScorerInterface
from espnet.nets.scorers.ctc import CTCPrefixScorer
from espnet2.text.build_tokenizer import build_tokenizer
from espnet2.text.token_id_converter import TokenIDConverter
from espnet2.torch_utils.device_funcs import to_device
from espnet2.utils import config_argparse
from espnet2.utils.types import str2bool, str2triple_str, str_or_none
from espnet_asrser.asr.batch_beam_search import UtteranceBatchBeamSearch
from espnet_asrser.tasks.asrser import ASRSERTask
from espnet_asrser.utils.audio_files import (
    AudioError,
    format_problems,
    pcm_to_float,
    read_audio,
    read_header,
    resample_wave,
)
from espnet_asrser.utils.kaldi_table import read_table
from espnet_asrser.utils.progress import progress

Audio = Union[np.ndarray, torch.Tensor]
# One utterance: a waveform (or dumped features), or an audio file.
AudioInput = Union[np.ndarray, torch.Tensor, str, Path]

# The beam search's settings, with the values used where neither the caller nor a
# decoding config (packed with the model, or given) sets them.
DECODE_DEFAULTS: Dict[str, Any] = {
    "beam_size": 4, "ctc_weight": 0.0, "maxlenratio": 0.0, "minlenratio": 0.0
}


def decoding_settings(
    decode_config: Union[Path, str, None] = None, **given: Any
) -> Dict[str, Any]:
    """The beam-search settings: ``given`` (those not None), else ``decode_config``'s (a
    YAML mapping such as the recipe's ``conf/decode_asr.yaml``), else
    :data:`DECODE_DEFAULTS`. Keys of ``decode_config`` that are no beam-search setting
    (``batch_size``, ...) concern the CLI and are ignored here, with a log line."""
    settings = dict(DECODE_DEFAULTS)
    if decode_config is not None:
        loaded = yaml.safe_load(Path(decode_config).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{decode_config}: not a mapping of decoding options")
        from_file = {k: v for k, v in loaded.items() if k in DECODE_DEFAULTS}
        settings.update(from_file)
        ignored = sorted(set(loaded) - set(DECODE_DEFAULTS))
        logging.info(
            f"decoding settings from {decode_config}: "
            + ", ".join(f"{k}={v}" for k, v in from_file.items())
            + (f" (ignored here: {', '.join(ignored)})" if ignored else "")
        )
    settings.update({k: v for k, v in given.items() if v is not None})
    types = {"beam_size": int}
    return {k: types.get(k, float)(v) for k, v in settings.items()}


@dataclass
class EmotionResult:
    """The emotion of one utterance, or why it has none.

    ``error`` is None for a decoded utterance. Otherwise it says why the utterance could not
    be decoded; ``label`` is then None and ``posteriors`` empty.
    """

    label: Optional[str]
    posteriors: Dict[str, float]
    transcript: Optional[str] = None
    error: Optional[str] = None


class Speech2Emotion:
    """Emotion (and transcript) for a batch of waveforms from a trained ASR-SER model."""

    def __init__(
        self,
        asrser_train_config: Union[Path, str],
        asrser_model_file: Union[Path, str, None] = None,
        device: str = "cpu",
        beam_size: Optional[int] = None,
        ctc_weight: Optional[float] = None,
        maxlenratio: Optional[float] = None,
        minlenratio: Optional[float] = None,
        dtype: str = "float32",
        decode_config: Union[Path, str, None] = None,
    ):
        """Load a trained model.

        The beam-search settings (``beam_size``, ``ctc_weight``, ``maxlenratio``,
        ``minlenratio``) given here win over those of ``decode_config`` (a YAML file such
        as the recipe's ``conf/decode_asr.yaml``, or the one packed with a model), which
        win over :data:`DECODE_DEFAULTS` (width 4, ``maxlenratio`` 0: at most as many
        words as encoder frames).
        """
        settings = decoding_settings(
            decode_config, beam_size=beam_size, ctc_weight=ctc_weight,
            maxlenratio=maxlenratio, minlenratio=minlenratio,
        )
        beam_size, ctc_weight = settings["beam_size"], settings["ctc_weight"]
        maxlenratio, minlenratio = settings["maxlenratio"], settings["minlenratio"]
        self.decoding = settings
        model, args = ASRSERTask.build_model_from_file(
            asrser_train_config, asrser_model_file, device
        )
        self.model = model.to(dtype=getattr(torch, dtype)).eval()
        self.args = args
        self.device = device
        self.dtype = dtype
        self.classes = list(model.emotion_classes)
        self.maxlenratio = maxlenratio
        self.minlenratio = minlenratio
        self.preprocess = ASRSERTask.build_preprocess_fn(args, False)
        frontend = model.frontend or (model.asr.frontend if model.asr is not None else None)
        self.sample_rate = getattr(frontend, "fs", None)
        self.feature_size = frontend.output_size() if frontend is not None else None
        self.min_samples = _min_samples(
            [model.frontend, model.asr.frontend if model.asr is not None else None]
        )

        self.beam_search = None
        if model.asr is not None:
            asr = model.asr
            token_list = list(args.token_list)
            scorers = {"decoder": asr.decoder}
            weights = {"decoder": 1.0 - ctc_weight}
            if ctc_weight > 0:
                if asr.ctc is None:
                    raise ValueError("ctc_weight > 0 but the ASR model has no CTC layer")
                scorers["ctc"] = CTCPrefixScorer(ctc=asr.ctc, eos=asr.eos)
                weights["ctc"] = ctc_weight
            beam = BeamSearch(
                scorers=scorers,
                weights=weights,
                beam_size=beam_size,
                vocab_size=len(token_list),
                sos=asr.sos,
                eos=asr.eos,
                token_list=token_list,
                pre_beam_score_key=None if ctc_weight == 1.0 else "full",
                return_hs=True,
            )
            if all(isinstance(s, BatchScorerInterface) for s in scorers.values()):
                beam.__class__ = BatchBeamSearch
            self.beam_search = beam.to(device=device, dtype=getattr(torch, dtype)).eval()
            # All utterances of a batch in one search; ESPnet's, one at a time, where the
            # scorers need it (CTC prefix scoring): see asr/batch_beam_search.py.
            self.batch_beam_search = UtteranceBatchBeamSearch(self.beam_search)
            self.converter = TokenIDConverter(token_list=token_list)
            self.tokenizer = build_tokenizer(
                token_type=args.token_type, bpemodel=args.bpemodel
            )
            self.sos_eos = {asr.sos, asr.eos}

    @classmethod
    def from_pretrained(
        cls,
        model_tag: Union[Path, str],
        cache_dir: Union[Path, str, None] = None,
        **kwargs,
    ) -> "Speech2Emotion":
        """Build from a packed model (``model.zip``/``.tar.gz``, as ``asrser_pack``
        writes it), a Hugging Face-style model directory, or an unpacked model directory.

        An archive (or a Hugging Face-style directory) is unpacked under ``cache_dir``,
        by default ``$ESPNET_ASRSER_CACHE``, else ``~/.cache/espnet_asrser``, one
        directory per source path; a log line says where. An unpacked directory is used
        where it is.

        The decoding settings packed with the model (``asrser_pack --decode_config``:
        the recipe's beam size and length limits) are used; keyword arguments override
        them and set the rest (``device``, ``dtype``, ...), as for :class:`Speech2Emotion`.
        """
        from espnet_asrser.model_zoo import unpack_asrser_model

        files = unpack_asrser_model(model_tag, cache_dir)
        return cls(**{**files, **kwargs})

    # ---- inputs --------------------------------------------------------------------------

    def load(
        self, item: AudioInput, fs: Optional[int] = None, name: Optional[str] = None
    ) -> torch.Tensor:
        """One input as the model takes it: a 1-D float waveform at the model's rate, or
        (frames, n_mels) features as dumped by the recipe.

        ``item`` is an audio file (read at its own rate) or an array/tensor at ``fs`` Hz
        (the model's rate when None): shaped (samples,), (samples, channels) as soundfile
        reads it or (channels, samples) as torchaudio does (the shorter axis is taken for
        the channels). Integer PCM is scaled to [-1, 1) as soundfile reads it; several
        channels are averaged; another rate is resampled (torchaudio); one log line names
        the input (``name``, else the path) and what was done (both rates). Raises
        ValueError (for a file, :class:`AudioError`) naming the input for audio that is
        empty, not finite, unreadable or of another kind.
        """
        name = name or (str(item) if isinstance(item, (str, Path)) else "input")
        x, done = self._load(item, fs, name)
        if done:
            logging.info(f"{name}: {', '.join(done)}")
        return x

    def _load(
        self, item: AudioInput, fs: Optional[int], name: str
    ) -> Tuple[torch.Tensor, List[str]]:
        done: List[str] = []
        if isinstance(item, (str, Path)):
            rate = self.sample_rate or read_header(item).samplerate
            wave, done = read_audio(item, rate, resample=True, downmix=True)
            x = torch.from_numpy(wave)
        else:
            x = torch.as_tensor(
                np.ascontiguousarray(item) if isinstance(item, np.ndarray) else item
            )
            if not torch.is_floating_point(x):
                try:
                    x = pcm_to_float(x)
                except ValueError as e:
                    raise ValueError(f"{name}: {e}") from None
            self._finite(name, x)  # before averaging or filtering spreads a NaN
            if fs is None and x.dim() == 2 and x.size(-1) == self.feature_size:
                return x, done  # precomputed (frames, n_mels) features
            if x.dim() == 2:
                axis = 0 if x.size(0) < x.size(1) else 1
                if x.size(axis) > 1:
                    done.append(f"down-mixed {x.size(axis)} channels")
                x = x.mean(dim=axis)
            elif x.dim() != 1:
                raise ValueError(
                    f"{name}: expected a waveform of shape (samples,) or (samples, "
                    f"channels), got {tuple(x.shape)}"
                )
            self._finite(name, x)
            if fs is not None and self.sample_rate is not None and fs != self.sample_rate:
                x = resample_wave(x, int(fs), int(self.sample_rate))
                done.append(f"resampled {fs} -> {self.sample_rate} Hz")
        return self._finite(name, x), done

    @staticmethod
    def _finite(name: str, x: torch.Tensor) -> torch.Tensor:
        if x.numel() == 0:
            raise ValueError(f"{name}: empty audio")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}: audio contains NaN or inf")
        return x

    def _text_batch(self, text: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        ids = [
            torch.as_tensor(self.preprocess(f"input{i}", {"text": t})["text"])
            for i, t in enumerate(text)
        ]
        lengths = torch.tensor([len(t) for t in ids])
        return torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=-1), lengths

    # ---- decoding ------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        speech: Union[AudioInput, Sequence[AudioInput]],
        text: Optional[Union[str, Sequence[str]]] = None,
        fs: Optional[int] = None,
    ) -> List[EmotionResult]:
        """Classify one input or a list of them.

        Args:
            speech: an audio file (str or Path; read at its own rate), a waveform array or
                tensor, or a list of them (any lengths, mixed); see :meth:`load` for what
                is converted and what is refused. (frames, n_mels) features as dumped by
                the recipe are accepted too.
            text: transcript(s), needed by the text and combined modes.
            fs: sampling rate of the arrays in ``speech`` (files carry their own); the
                model's rate when None. Another rate is resampled, with a log line.
        """
        if isinstance(speech, (np.ndarray, torch.Tensor, str, Path)):
            # One array is one utterance; a batch is a list (lengths differ in general).
            items = [speech]
        else:
            items = list(speech)
        if isinstance(text, str):
            text = [text]
        checked = [
            self.load(a, fs, name=None if isinstance(a, (str, Path)) else f"input {i}")
            for i, a in enumerate(items)
        ]
        lengths = torch.tensor([len(x) for x in checked])
        batch = torch.nn.utils.rnn.pad_sequence(checked, batch_first=True)
        tokens = token_lengths = None
        if text is not None:
            if len(text) != len(items):
                raise ValueError(f"{len(items)} waveforms but {len(text)} transcripts")
            tokens, token_lengths = self._text_batch(text)
        return self.decode_batch(batch, lengths, tokens, token_lengths)

    def classify_file(self, path: Union[Path, str], text: Optional[str] = None) -> EmotionResult:
        """The emotion of one audio file (any format soundfile reads, any rate, any number
        of channels), as SpeechBrain's ``classify_file``. ``text``: its transcript, for
        the text and combined modes. An unreadable or empty file raises
        :class:`AudioError`; one the model cannot decode (too short) gives a result with
        ``error`` set, as :meth:`__call__` does."""
        return self([path], text=None if text is None else [text])[0]

    @torch.no_grad()
    def decode_batch(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: Optional[torch.Tensor] = None,
        text_lengths: Optional[torch.Tensor] = None,
    ) -> List[EmotionResult]:
        """Classify a padded batch (as produced by the ESPnet data loader).

        One result per utterance, in input order. An utterance that cannot be decoded gets a
        result with ``error`` set, and the others are decoded as if it were not there: a
        waveform shorter than :attr:`min_samples` is not tried; when the batch fails as a
        whole, its utterances are decoded one by one.
        """
        if self.model.uses[1] and text is None:
            # A fault of the call, not of an utterance: not one to report per utterance.
            raise ValueError(f"mode '{self.model.mode}' needs 'text' (a transcript)")
        waveform = speech.dim() == 2
        results: List[Optional[EmotionResult]] = [None] * speech.size(0)
        for i, length in enumerate(speech_lengths.tolist()):
            if length == 0 or (waveform and length < self.min_samples):
                results[i] = self._failure(length, waveform, None)
        todo = [i for i, r in enumerate(results) if r is None]
        if not todo:
            return results
        try:
            decoded = self._decode(*_select(todo, speech, speech_lengths, text, text_lengths))
        except Exception as e:
            if len(todo) == 1:
                decoded = [self._failure(int(speech_lengths[todo[0]]), waveform, e)]
            else:
                logging.warning(
                    f"a batch of {len(todo)} utterances failed ({type(e).__name__}: {e}); "
                    "decoding them one by one"
                )
                decoded = []
                for i in todo:
                    try:
                        decoded += self._decode(
                            *_select([i], speech, speech_lengths, text, text_lengths)
                        )
                    except Exception as e_one:
                        decoded.append(
                            self._failure(int(speech_lengths[i]), waveform, e_one)
                        )
        for i, result in zip(todo, decoded):
            results[i] = result
        return results

    def _failure(
        self, length: int, waveform: bool, error: Optional[Exception]
    ) -> EmotionResult:
        if waveform and self.sample_rate:
            size = f"{length} samples, {length / self.sample_rate:.3f} s"
        else:
            size = f"{length} {'samples' if waveform else 'frames'}"
        if length == 0:
            reason = f"empty input ({size})"
        elif waveform and length < self.min_samples:
            reason = (
                f"too short: {size}; the model's frontend needs at least "
                f"{self.min_samples} samples (its STFT window)"
            )
        else:
            reason = f"cannot be decoded ({size}): {type(error).__name__}: {error}"
        return EmotionResult(label=None, posteriors={}, transcript=None, error=reason)

    def _decode(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: Optional[torch.Tensor] = None,
        text_lengths: Optional[torch.Tensor] = None,
    ) -> List[EmotionResult]:
        # ESPnet's RNN encoders pack without enforce_sorted=False: decode longest first,
        # then return the results in input order.
        order = torch.argsort(speech_lengths, descending=True, stable=True)
        speech, speech_lengths = speech[order], speech_lengths[order]
        if text is not None:
            text, text_lengths = text[order], text_lengths[order]
        dtype = getattr(torch, self.dtype)
        speech = to_device(speech.to(dtype), self.device)
        speech_lengths = to_device(speech_lengths, self.device)
        if text is not None:
            text, text_lengths = to_device((text, text_lengths), self.device)
        transcripts: List[Optional[str]] = [None] * speech.size(0)
        states = state_lengths = None
        if self.beam_search is not None:
            states, state_lengths, transcripts = self._asr_features(speech, speech_lengths)
        logits = self.model.ser_logits(
            speech, speech_lengths, text, text_lengths, states, state_lengths
        )
        posteriors = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        results: List[Optional[EmotionResult]] = [None] * len(order)
        for position, p, t in zip(order.tolist(), posteriors, transcripts):
            if not np.isfinite(p).all():
                # argmax would turn NaN posteriors into the first class, silently.
                results[position] = EmotionResult(
                    label=None,
                    posteriors={},
                    error=f"the model's output is not finite for this input ({p.tolist()})",
                )
                continue
            results[position] = EmotionResult(
                label=self.classes[int(p.argmax())],
                posteriors=dict(zip(self.classes, map(float, p))),
                transcript=t,
            )
        return results

    def _asr_features(self, speech: torch.Tensor, speech_lengths: torch.Tensor):
        encoder_out, encoder_lens = self.model.encode_asr(speech, speech_lengths)
        feature_size = self.model.asr_state_size
        nbest = self.batch_beam_search(
            encoder_out, encoder_lens, maxlenratio=self.maxlenratio, minlenratio=self.minlenratio
        )
        sequences, transcripts, token_ids = [], [], []
        for hyps in nbest:
            if hyps:
                best = hyps[0]
                states = (
                    torch.stack(best.hs)
                    if best.hs
                    else encoder_out.new_zeros(0, feature_size)
                )
                ids = [int(i) for i in best.yseq.tolist() if int(i) not in self.sos_eos]
            else:
                # ESPnet returns no hypothesis only when none ended; we define the
                # features as empty (the SER branch maps them to a zero vector).
                states, ids = encoder_out.new_zeros(0, feature_size), []
            sequences.append(states)
            token_ids.append(ids)
            transcripts.append(self.tokenizer.tokens2text(self.converter.ids2tokens(ids)))
        lengths = torch.tensor([len(s) for s in sequences], device=speech.device)
        padded = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True)
        # Sub-word ASR models: optionally one vector per word (model_conf asr_feature_pooling).
        padded, lengths = self.model.pool_asr_states(padded, lengths, token_ids)
        return padded, lengths, transcripts


def _min_samples(frontends: Sequence[Optional[torch.nn.Module]]) -> int:
    """The shortest waveform every STFT frontend of the model can take (1 if none).

    A centred STFT reflect-pads ``n_fft // 2`` samples at each end, which torch refuses
    for an input that is not longer than the padding.
    """
    need = 1
    for frontend in frontends:
        stft = getattr(frontend, "stft", None)
        n_fft = getattr(stft, "n_fft", None)
        if isinstance(n_fft, int):
            need = max(need, n_fft // 2 + 1 if getattr(stft, "center", True) else n_fft)
    return need


def _select(
    rows: List[int],
    speech: torch.Tensor,
    speech_lengths: torch.Tensor,
    text: Optional[torch.Tensor],
    text_lengths: Optional[torch.Tensor],
):
    """Rows of a padded batch, with the padding beyond their longest member cut."""
    index = torch.tensor(rows, dtype=torch.long)
    lengths = speech_lengths[index]
    batch = speech[index][:, : int(lengths.max())]
    if text is None:
        return batch, lengths, None, None
    t_lengths = text_lengths[index]
    return batch, lengths, text[index][:, : max(int(t_lengths.max()), 1)], t_lengths


def unusable_audio(
    data_path_and_name_and_type: Sequence[Sequence[str]], fs: Optional[int]
) -> Dict[str, str]:
    """Utterance -> why its ``sound`` file cannot be decoded as it is.

    ESPnet's loader would stop the whole run on an unreadable file, and would pass on a
    truncated WAV (as a shorter utterance) or a file at another rate, which the model
    would classify without a word.
    """
    bad: Dict[str, str] = {}
    for path, _, data_type in data_path_and_name_and_type:
        if data_type != "sound":
            continue
        for utt, wav in read_table(path, check_sorted=False, check_final_newline=False).items():
            try:
                header = read_header(wav)
            except AudioError as e:
                bad[utt] = str(e)
                continue
            problems = format_problems(header, fs) if fs else []
            if not problems and header.channels != 1:
                problems = [f"{header.channels} channels (expected mono)"]
            if problems:
                bad[utt] = f"audio file {wav} has {' and '.join(problems)}"
    return bad


def get_parser() -> argparse.ArgumentParser:
    parser = config_argparse.ArgumentParser(
        description="Emotion (and transcript) of audio files or dumped features with a trained "
        "ASR-SER model. See the module docstring (python -m pydoc "
        "espnet_asrser.bin.asrser_inference) for the outputs.",
    )
    parser._option_string_actions["--config"].help = (
        "a YAML file of these options (e.g. the recipe's conf/decode_asr.yaml); options on "
        "the command line win (default: %(default)s)"
    )
    parser.add_argument(
        "--log_level", type=lambda x: x.upper(), default="INFO",
        help="logging level; logs go to stderr (default: %(default)s)",
    )
    parser.add_argument(
        "--output_dir", type=str_or_none, default=None,
        help="write emotion, posteriors, classes, text and failed here; when not given, print "
        "'utt label' lines on stdout (default: %(default)s)",
    )
    parser.add_argument(
        "--ngpu", type=int, default=0,
        help="0: decode on the CPU; 1: on the GPU (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0,
        help="random seed, as ESPnet's inference CLIs take it; decoding draws no random "
        "numbers (default: %(default)s)",
    )
    parser.add_argument(
        "--dtype", default="float32", choices=["float16", "float32", "float64"],
        help="precision of the model and its inputs (default: %(default)s)",
    )
    parser.add_argument(
        "--num_workers", type=int, default=1,
        help="data-loader workers for --data_path_and_name_and_type (default: %(default)s)",
    )
    parser.add_argument(
        "--batch_size", type=int, default=8,
        help="utterances decoded together (default: %(default)s)",
    )
    group = parser.add_argument_group("Input data related")
    group.add_argument(
        "wav", nargs="*", metavar="WAV",
        help="audio files to classify (wav, flac, anything soundfile reads; any rate and "
        "number of channels), each named by its path as given (default: none)",
    )
    group.add_argument(
        "--wav_scp", type=str_or_none, default=None,
        help="a Kaldi table 'utt path' of audio files (any rate and number of channels) "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--data_path_and_name_and_type", type=str2triple_str, action="append", default=[],
        help="ESPnet's PATH,NAME,TYPE, repeatable: the input (e.g. feats.scp,speech,kaldi_ark "
        "or wav.scp,speech,sound: mono audio at the model's rate) and, for the text and "
        "combined modes, the transcripts (text,text,text; also with WAV or --wav_scp) "
        "(default: none)",
    )
    group.add_argument(
        "--key_file", type=str_or_none, default=None,
        help="decode only the utterances listed here (first column) (default: all)",
    )
    group.add_argument(
        "--allow_variable_data_keys", type=str2bool, default=False,
        help="let the data files list different utterances (ESPnet's loader option) "
        "(default: %(default)s)",
    )
    group = parser.add_argument_group("The model configuration related")
    group.add_argument(
        "--asrser_train_config", type=str_or_none, default=None,
        help="the config.yaml that asrser_train wrote (default: %(default)s; give it or "
        "--model_tag)",
    )
    group.add_argument(
        "--asrser_model_file", type=str_or_none, default=None,
        help="the trained weights, e.g. valid.acc_ser.best.pth (default: %(default)s)",
    )
    group.add_argument(
        "--model_tag", type=str_or_none, default=None,
        help="a packed model (.zip/.tar.gz from asrser_pack) or its directory, instead of "
        "the two options above; decoded with the decoding settings packed with it unless "
        "the options below are given (default: %(default)s)",
    )
    group.add_argument(
        "--cache_dir", type=str_or_none, default=None,
        help="where --model_tag archives are unpacked (default: $ESPNET_ASRSER_CACHE, "
        "else ~/.cache/espnet_asrser)",
    )
    group = parser.add_argument_group(
        "Beam-search related (ASR-SER mode; when not given: the packed model's decoding "
        "settings, else Speech2Emotion's defaults)"
    )
    group.add_argument(
        "--beam_size", type=int, default=None,
        help=f"beam width (default: {DECODE_DEFAULTS['beam_size']})",
    )
    group.add_argument(
        "--ctc_weight", type=float, default=None,
        help=f"weight of CTC prefix scores (default: {DECODE_DEFAULTS['ctc_weight']})",
    )
    group.add_argument(
        "--maxlenratio", type=float, default=None,
        help="most output words: this times the encoder frames; 0: as many as the frames; "
        f"negative: its absolute value (default: {DECODE_DEFAULTS['maxlenratio']})",
    )
    group.add_argument(
        "--minlenratio", type=float, default=None,
        help=f"fewest output words, as a ratio of the encoder frames (default: "
        f"{DECODE_DEFAULTS['minlenratio']})",
    )
    return parser


def build(args: argparse.Namespace) -> Speech2Emotion:
    """The model the options name, with the beam-search options that were given."""
    kwargs = dict(device="cuda" if args.ngpu > 0 else "cpu", dtype=args.dtype)
    for key in DECODE_DEFAULTS:
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    if args.model_tag is not None:
        return Speech2Emotion.from_pretrained(args.model_tag, args.cache_dir, **kwargs)
    return Speech2Emotion(args.asrser_train_config, args.asrser_model_file, **kwargs)


Batches = Iterator[Tuple[List[str], List[EmotionResult]]]


def loader_batches(
    args: argparse.Namespace, s2e: Speech2Emotion, workdir: Path, failed: List[str]
) -> Tuple[Batches, int]:
    """ESPnet's loader over ``--data_path_and_name_and_type``, and its number of batches.
    Utterances whose ``sound`` file cannot be decoded are added to ``failed``."""
    key_file = args.key_file
    keys_from = key_file or args.data_path_and_name_and_type[0][0]
    bad_audio = unusable_audio(args.data_path_and_name_and_type, s2e.sample_rate)
    if bad_audio:
        listed = read_table(
            keys_from, allow_empty_value=True, check_sorted=False, check_final_newline=False
        )
        # The loader gets only the decodable keys; the others are reported as failed.
        failed += [f"{utt} {bad_audio[utt]}\n" for utt in listed if utt in bad_audio]
        for line in failed:
            logging.warning(line.rstrip("\n").replace(" ", ": ", 1))
        if any("Hz" in reason or "channels" in reason for reason in bad_audio.values()):
            logging.warning(
                "audio at another rate or with several channels is resampled and down-mixed "
                "when given as WAV files or with --wav_scp"
            )
        key_file = str(workdir / "keys.decodable")
        Path(key_file).write_text(
            "".join(f"{utt}\n" for utt in listed if utt not in bad_audio), encoding="utf-8"
        )
    else:
        (workdir / "keys.decodable").unlink(missing_ok=True)
    loader = ASRSERTask.build_streaming_iterator(
        args.data_path_and_name_and_type,
        dtype=args.dtype,
        batch_size=args.batch_size,
        key_file=key_file,
        num_workers=args.num_workers,
        preprocess_fn=ASRSERTask.build_preprocess_fn(s2e.args, False),
        collate_fn=ASRSERTask.build_collate_fn(s2e.args, False),
        allow_variable_data_keys=args.allow_variable_data_keys,
        inference=True,
    )

    def batches() -> Batches:
        for keys, batch in loader:
            yield list(keys), s2e.decode_batch(
                batch["speech"], batch["speech_lengths"],
                batch.get("text"), batch.get("text_lengths"),
            )

    with open(key_file or keys_from, "rb") as f:  # for the progress display only
        n = sum(1 for line in f if line.strip())
    return batches(), math.ceil(n / args.batch_size)


def file_batches(
    args: argparse.Namespace, s2e: Speech2Emotion, failed: List[str]
) -> Tuple[Batches, int]:
    """The audio files of ``WAV ...`` or ``--wav_scp``, read (resampled, down-mixed) and
    decoded ``--batch_size`` at a time, and the number of batches. A file that cannot be
    read, or a missing transcript, is added to ``failed``."""
    if args.wav_scp is not None:
        table = read_table(args.wav_scp, check_sorted=False, check_final_newline=False)
        items = list(table.items())
    else:
        items = [(path, path) for path in args.wav]
    if args.key_file is not None:
        keep = read_table(args.key_file, allow_empty_value=True, check_sorted=False,
                          check_final_newline=False)
        items = [(k, p) for k, p in items if k in keep]
    texts = None
    for path, _, _ in args.data_path_and_name_and_type:
        texts = read_table(path, allow_empty_value=True, check_sorted=False,
                           check_final_newline=False)
    converted: Dict[str, int] = {}

    def read(key: str, path: str) -> Optional[torch.Tensor]:
        if texts is not None and key not in texts:
            failed.append(f"{key} no transcript in {args.data_path_and_name_and_type[-1][0]}\n")
            return None
        try:
            wave, done = s2e._load(path, None, key)
        except ValueError as e:  # AudioError: unreadable, empty, ...; or not finite
            failed.append(f"{key} {e}\n")
            return None
        for what in done:  # counted, not logged per file: a corpus at 8 kHz is one line
            converted[what] = converted.get(what, 0) + 1
        return wave

    def batches() -> Batches:
        for start in range(0, len(items), args.batch_size):
            keys, waves = [], []
            for key, path in items[start:start + args.batch_size]:
                wave = read(key, path)
                if wave is not None:
                    keys.append(key)
                    waves.append(wave)
            if not keys:
                continue
            lengths = torch.tensor([len(w) for w in waves])
            speech = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
            tokens = token_lengths = None
            if texts is not None:
                tokens, token_lengths = s2e._text_batch([texts[k] for k in keys])
            yield keys, s2e.decode_batch(speech, lengths, tokens, token_lengths)
        for what, n in converted.items():
            logging.info(f"{what} for {n} of {len(items)} files")

    return batches(), math.ceil(len(items) / args.batch_size)


class Outputs:
    """Where the results go: the Kaldi-style files of ``output_dir``, or ``utt label``
    lines on stdout."""

    def __init__(self, output_dir: Optional[str], s2e: Speech2Emotion):
        self.s2e = s2e
        self.dir = Path(output_dir) if output_dir else None
        self.files = {}
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "classes").write_text(
                "".join(f"{c}\n" for c in s2e.classes), encoding="utf-8"
            )
            for name in ("emotion", "posteriors", "text"):
                self.files[name] = open(self.dir / name, "w", encoding="utf-8")

    def write(self, key: str, res: EmotionResult) -> None:
        if self.dir is None:
            print(f"{key} {res.label}", flush=True)
            return
        self.files["emotion"].write(f"{key} {res.label}\n")
        probs = " ".join(f"{res.posteriors[c]:.6f}" for c in self.s2e.classes)
        self.files["posteriors"].write(f"{key} {probs}\n")
        if res.transcript is not None:
            self.files["text"].write(f"{key} {res.transcript}".rstrip() + "\n")

    def close(self, failed: List[str], n: int) -> None:
        for f in self.files.values():
            f.close()
        if self.dir is None:
            return
        if self.s2e.beam_search is None:
            (self.dir / "text").unlink()
        failed_file = self.dir / "failed"
        if failed:
            failed_file.write_text("".join(failed), encoding="utf-8")
            logging.error(
                f"{len(failed)} of {n} utterances could not be decoded and are not in "
                f"{self.dir}/emotion: listed with the reason in {failed_file}. Scoring will "
                "refuse the output until they are decoded or removed from the reference "
                "knowingly"
            )
        else:
            failed_file.unlink(missing_ok=True)


def inference(args: argparse.Namespace) -> int:
    """Decode the input into ``args.output_dir`` (or print the labels); returns the number
    of failed utterances."""
    s2e = build(args)
    failed: List[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.wav or args.wav_scp:
            batches, total = file_batches(args, s2e, failed)
        else:
            workdir = Path(args.output_dir or tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            batches, total = loader_batches(args, s2e, workdir, failed)
        out = Outputs(args.output_dir, s2e)
        written = 0
        try:
            shown = progress(batches, total=total, desc="asrser_inference", unit="batch")
            for keys, results in shown:
                for key, res in zip(keys, results):
                    if res.error is not None:
                        logging.warning(f"{key}: {res.error}")
                        failed.append(f"{key} {res.error}\n")
                    else:
                        out.write(key, res)
                        written += 1
        finally:
            out.close(failed, written + len(failed))
    if failed and args.output_dir is None:
        logging.error(f"{len(failed)} utterances could not be decoded:\n{''.join(failed)}")
    return len(failed)


def check_inputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One model and one input, or a parser error that says what to give."""
    if args.model_tag is None and args.asrser_train_config is None:
        parser.error("give --asrser_train_config and --asrser_model_file, or --model_tag")
    names = [name for _, name, _ in args.data_path_and_name_and_type]
    sources = [bool(args.wav), args.wav_scp is not None, "speech" in names]
    if sum(sources) != 1:
        parser.error(
            "give one input: audio files (WAV ...), --wav_scp FILE, or "
            "--data_path_and_name_and_type PATH,speech,TYPE"
        )
    if (args.wav or args.wav_scp) and (
        names not in ([], ["text"])
        or any(t != "text" for _, _, t in args.data_path_and_name_and_type)
    ):
        parser.error(
            "with WAV files or --wav_scp, --data_path_and_name_and_type may give only the "
            "transcripts (FILE,text,text)"
        )
    if args.wav and any(len(w.split()) != 1 for w in args.wav):
        parser.error("a WAV path with white space cannot name an utterance: list it in --wav_scp")


def main(cmd=None):
    parser = get_parser()
    args = parser.parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    check_inputs(parser, args)
    return 1 if inference(args) else 0


if __name__ == "__main__":
    sys.exit(main())
