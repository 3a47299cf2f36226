#!/usr/bin/env python3
"""Usage: python -m espnet_asrser.bin.asrser_inference \
    --asrser_train_config exp/asrser/config.yaml --asrser_model_file exp/asrser/valid.acc_ser.best.pth \
    --data_path_and_name_and_type dump/fbank/test/feats.scp,speech,kaldi_ark \
    [--data_path_and_name_and_type data/test/text,text,text] --output_dir DIR [--beam_size 4]

Writes Kaldi-style ``DIR/emotion`` (utt label), ``DIR/posteriors`` (utt p_1 ... p_C, in the
order of ``DIR/classes``) and, for models with an ASR part, ``DIR/text`` (utt transcript).

An utterance that cannot be decoded (audio shorter than the model's frontend or encoder
can take, or an output that is not finite) does not stop the others: it is left out of
those files, listed with the reason in ``DIR/failed`` (utt reason) and logged, and the
command exits with status 1 after writing everything else. ``asrser_score`` refuses a
hypothesis file that lacks a reference utterance, so such an utterance is never left out
of a score unnoticed (docs/reliability.md, row 15).

In Python::

    s2e = Speech2Emotion("exp/asrser/config.yaml", "exp/asrser/valid.acc_ser.best.pth")
    results = s2e([wave1, wave2])          # list of 16 kHz mono float arrays
    results[0].label, results[0].posteriors, results[0].transcript

For ASR modes, the ASR features come from ESPnet's beam search on the audio alone (width 4
by default, as in the paper); text modes take the transcript as input (``text=``).
"""

import argparse
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from espnet.nets.batch_beam_search import BatchBeamSearch
from espnet.nets.beam_search import BeamSearch
from espnet.nets.scorer_interface import BatchScorerInterface
from espnet.nets.scorers.ctc import CTCPrefixScorer
from espnet2.text.build_tokenizer import build_tokenizer
from espnet2.text.token_id_converter import TokenIDConverter
from espnet2.torch_utils.device_funcs import to_device
from espnet2.utils import config_argparse
from espnet2.utils.types import str2triple_str, str_or_none
from espnet_asrser.tasks.asrser import ASRSERTask
from espnet_asrser.utils.audio_files import AudioError, format_problems, read_header
from espnet_asrser.utils.kaldi_table import read_table

Audio = Union[np.ndarray, torch.Tensor]


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
        beam_size: int = 4,
        ctc_weight: float = 0.0,
        maxlenratio: float = 0.0,
        minlenratio: float = 0.0,
        dtype: str = "float32",
    ):
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
            self.converter = TokenIDConverter(token_list=token_list)
            self.tokenizer = build_tokenizer(
                token_type=args.token_type, bpemodel=args.bpemodel
            )
            self.sos_eos = {asr.sos, asr.eos}

    @classmethod
    def from_pretrained(cls, model_tag: Optional[str] = None, **kwargs) -> "Speech2Emotion":
        """Build from a packed model (``model.zip``) or an unpacked model directory."""
        from espnet_asrser.model_zoo import unpack_asrser_model

        return cls(**unpack_asrser_model(model_tag), **kwargs)

    # ---- input checks --------------------------------------------------------------------

    def _check(self, index: int, audio: Audio) -> torch.Tensor:
        x = torch.as_tensor(audio)
        if not torch.is_floating_point(x):
            raise TypeError(
                f"input {index}: expected float samples, got dtype {x.dtype}; convert "
                "integer PCM to float in [-1, 1]"
            )
        if x.dim() == 2 and x.size(-1) == self.feature_size:
            pass  # precomputed (frames, n_mels) features, as dumped by the recipe
        elif x.dim() != 1:
            raise ValueError(
                f"input {index}: expected a mono waveform of shape (samples,), got "
                f"{tuple(x.shape)}; down-mix multi-channel audio first"
            )
        if x.size(0) == 0:
            raise ValueError(f"input {index}: empty audio")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"input {index}: audio contains NaN or inf")
        return x

    # ---- decoding ------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        speech: Union[Audio, Sequence[Audio]],
        text: Optional[Union[str, Sequence[str]]] = None,
        fs: Optional[int] = None,
    ) -> List[EmotionResult]:
        """Classify one waveform or a list of them.

        Args:
            speech: a 1-D waveform, or a list of them (any lengths), at the model's rate;
                (frames, n_mels) features as dumped by the recipe are accepted too.
            text: transcript(s), needed by the text and combined modes.
            fs: sampling rate of ``speech``; checked against the model's when given.
        """
        if fs is not None and self.sample_rate is not None and fs != self.sample_rate:
            raise ValueError(
                f"the model expects {self.sample_rate} Hz audio, got {fs} Hz; resample first"
            )
        if isinstance(speech, (np.ndarray, torch.Tensor)):
            # One array is one utterance; a batch is a list (lengths differ in general).
            # A (samples, channels) array is rejected by _check rather than read as a batch.
            items = [speech]
        else:
            items = list(speech)
        if isinstance(text, str):
            text = [text]
        checked = [self._check(i, a) for i, a in enumerate(items)]
        lengths = torch.tensor([len(x) for x in checked])
        batch = torch.nn.utils.rnn.pad_sequence(checked, batch_first=True)
        tokens = token_lengths = None
        if text is not None:
            if len(text) != len(items):
                raise ValueError(f"{len(items)} waveforms but {len(text)} transcripts")
            ids = [
                torch.as_tensor(self.preprocess(f"input{i}", {"text": t})["text"])
                for i, t in enumerate(text)
            ]
            token_lengths = torch.tensor([len(t) for t in ids])
            tokens = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=-1)
        return self.decode_batch(batch, lengths, tokens, token_lengths)

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
        sequences, transcripts, token_ids = [], [], []
        for enc, length in zip(encoder_out, encoder_lens):
            hyps = self.beam_search(
                x=enc[:length], maxlenratio=self.maxlenratio, minlenratio=self.minlenratio
            )
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
        description="ASR-SER inference", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--log_level", type=lambda x: x.upper(), default="INFO")
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument("--ngpu", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64"])
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=8)
    group = parser.add_argument_group("Input data related")
    group.add_argument(
        "--data_path_and_name_and_type", type=str2triple_str, required=True, action="append"
    )
    group.add_argument("--key_file", type=str_or_none)
    group.add_argument("--allow_variable_data_keys", type=bool, default=False)
    group = parser.add_argument_group("The model configuration related")
    group.add_argument("--asrser_train_config", type=str)
    group.add_argument("--asrser_model_file", type=str)
    group.add_argument("--model_tag", type=str_or_none, help="A packed model (zip or dir)")
    group = parser.add_argument_group("Beam-search related")
    group.add_argument("--beam_size", type=int, default=4)
    group.add_argument("--ctc_weight", type=float, default=0.0)
    group.add_argument("--maxlenratio", type=float, default=0.0)
    group.add_argument("--minlenratio", type=float, default=0.0)
    return parser


def inference(args: argparse.Namespace) -> int:
    """Decode the data into ``args.output_dir``; returns the number of failed utterances."""
    device = "cuda" if args.ngpu > 0 else "cpu"
    kwargs = dict(
        device=device,
        beam_size=args.beam_size,
        ctc_weight=args.ctc_weight,
        maxlenratio=args.maxlenratio,
        minlenratio=args.minlenratio,
        dtype=args.dtype,
    )
    if args.model_tag is not None:
        s2e = Speech2Emotion.from_pretrained(args.model_tag, **kwargs)
    else:
        s2e = Speech2Emotion(args.asrser_train_config, args.asrser_model_file, **kwargs)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    failed: List[str] = []
    key_file = args.key_file
    bad_audio = unusable_audio(args.data_path_and_name_and_type, s2e.sample_rate)
    if bad_audio:
        # The loader gets only the decodable keys; the others are reported as failed.
        listed = read_table(
            key_file or args.data_path_and_name_and_type[0][0],
            allow_empty_value=True,
            check_sorted=False, check_final_newline=False,
        )
        failed += [f"{utt} {bad_audio[utt]}\n" for utt in listed if utt in bad_audio]
        for line in failed:
            logging.warning(line.rstrip("\n").replace(" ", ": ", 1))
        key_file = str(out / "keys.decodable")
        Path(key_file).write_text(
            "".join(f"{utt}\n" for utt in listed if utt not in bad_audio), encoding="utf-8"
        )
    else:
        (out / "keys.decodable").unlink(missing_ok=True)
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
    (out / "classes").write_text("".join(f"{c}\n" for c in s2e.classes), encoding="utf-8")
    n = len(failed)
    with open(out / "emotion", "w", encoding="utf-8") as f_emo, open(
        out / "posteriors", "w", encoding="utf-8"
    ) as f_post, open(out / "text", "w", encoding="utf-8") as f_text:
        for keys, batch in loader:
            results = s2e.decode_batch(
                batch["speech"], batch["speech_lengths"],
                batch.get("text"), batch.get("text_lengths"),
            )
            for key, res in zip(keys, results):
                if res.error is not None:
                    logging.warning(f"{key}: {res.error}")
                    failed.append(f"{key} {res.error}\n")
                    continue
                f_emo.write(f"{key} {res.label}\n")
                probs = " ".join(f"{res.posteriors[c]:.6f}" for c in s2e.classes)
                f_post.write(f"{key} {probs}\n")
                if res.transcript is not None:
                    f_text.write(f"{key} {res.transcript}".rstrip() + "\n")
            n += len(keys)
            logging.info(f"processed {n} utterances")
    if s2e.beam_search is None:
        (out / "text").unlink()
    failed_file = out / "failed"
    if failed:
        failed_file.write_text("".join(failed), encoding="utf-8")
        logging.error(
            f"{len(failed)} of {n} utterances could not be decoded and are not in "
            f"{out}/emotion: listed with the reason in {failed_file}. Scoring will refuse "
            "the output until they are decoded or removed from the reference knowingly"
        )
    else:
        failed_file.unlink(missing_ok=True)
    return len(failed)


def main(cmd=None):
    parser = get_parser()
    args = parser.parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    if args.model_tag is None and args.asrser_train_config is None:
        parser.error("give --asrser_train_config and --asrser_model_file, or --model_tag")
    return 1 if inference(args) else 0


if __name__ == "__main__":
    sys.exit(main())
