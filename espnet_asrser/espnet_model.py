"""The joint ASR-SER model and the paper's baselines, selected by one ``mode`` switch.

=========  ===========================================  =====================================
mode       SER inputs                                   paper (Table 1 row)
=========  ===========================================  =====================================
audio      log-mel                                      Audio-based
text       word embeddings of a transcript              Text-based (reference or ASR text)
combined   log-mel + word embeddings                    Combined (reference or ASR text)
asr        ASR features (decoder states)                (ablation: ASR branch alone)
asrser     log-mel + ASR features                       ASR-SER (proposed)
=========  ===========================================  =====================================

Each input goes through its own BiLSTM + structured self-attention branch; the pooled vectors
are concatenated and classified (FC 2048 -> ReLU -> FC n_classes).

Loss: ``asr_weight * L_ASR + (1 - asr_weight) * L_SER`` (the paper's λ = 0.2), both
cross-entropies. L_SER is the batch mean over utterances (one label each). L_ASR, reported
as the ``loss_asr`` stat, is normalised by ``asr_loss_normalization``:

* ``token`` (default, the paper's): the mean over all target tokens of the batch, <eos>
  included, so that both terms are per-prediction means and λ = 0.2 weights SER more;
* ``utterance``: each utterance's token sum, averaged over the utterances. An utterance of
  n words then weighs about n + 1 times a per-token loss, and 0.2 L_ASR can outweigh
  0.8 L_SER several times over.

Either way L_ASR does not depend on the ASR part's ``length_normalized_loss``: the summed
loss is taken from its criterion and divided here. A CTC term (``ctc_weight > 0``) is divided
by the same denominator. The authors' code summed L_ASR over the batch, so their effective
weight was not the stated 0.2. Utterances with an empty transcript are left out of L_ASR
(its tokens and its count of utterances) and kept for L_SER.

ASR features during training (``asr_feature_source``):

* ``teacher_forcing`` (default, as the paper): decoder states from the reference transcript.
  The same decoder pass gives L_ASR, so the joint step costs one ASR step plus the SER head.
* ``greedy``: states from the model's own greedy hypothesis, the same kind of sequence as
  at test time (beam search), removing the train/test mismatch at the cost of decoding
  every training batch (a greedy search, linear in the hypothesis length for the A2W and
  Transformer decoders, then a teacher-forced pass over the hypothesis; no gradient
  through the search).

At inference (:class:`espnet_asrser.bin.asrser_inference.Speech2Emotion`) the features come
from beam search on the audio alone. Validation, which selects the epoch, uses
``valid_asr_feature_source`` (default ``greedy``): the features of the model's own greedy
hypothesis, the batched counterpart of test time's beam search. With teacher-forced
features a validation score measures a model that reads the reference transcript, and
ranks epochs by what the test never sees; with a weak recogniser the two disagree by tens
of points.

Units of the ASR features (``asr_feature_pooling``): ``token`` (default) keeps one vector per
decoder step; ``word`` mean-pools the states of each word's sub-word pieces (a word starts at
a sentencepiece piece beginning with "▁"), so that a BPE ASR gives word-level features as
the paper's A2W model does. The <eos> state stays a vector of its own. Training and
:meth:`ESPnetASRSERModel.pool_asr_states` (used by the beam-search path) pool alike.

Checkpoint layout: ``asr.*`` is a complete ``ESPnetASRModel`` (frontend, normalize, encoder,
decoder, ctc), so an ESPnet ASR checkpoint loads with ``--init_param asr.pth::asr``;
``frontend``/``normalize``/``audio_branch.*`` belong to the acoustic SER branch,
``embed``/``text_branch.*`` to the text baselines, ``asr_branch.*`` to the ASR-feature branch,
``classifier.*`` to the head.
"""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from typeguard import typechecked

from espnet.nets.pytorch_backend.nets_utils import th_accuracy
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet_asrser.asr.decoder_states import (
    decoder_state_size,
    greedy_tokens,
    teacher_forced_states,
)
from espnet_asrser.ser.branch import BLSTMAttentionBranch
from espnet_asrser.ser.classifier import EmotionClassifier

MODES = ("audio", "text", "combined", "asr", "asrser")
FEATURE_SOURCES = ("teacher_forcing", "greedy")
FEATURE_POOLINGS = ("token", "word")
ASR_LOSS_NORMALIZATIONS = ("token", "utterance")
WORD_START = "\u2581"  # sentencepiece's word-boundary mark "▁"


def mode_inputs(mode: str) -> Tuple[bool, bool, bool]:
    """Which SER inputs ``mode`` uses: (audio, text, asr features)."""
    if mode not in MODES:
        raise ValueError(f"Unknown mode '{mode}'; choose one of {', '.join(MODES)}")
    return (
        mode in ("audio", "combined", "asrser"),
        mode in ("text", "combined"),
        mode in ("asr", "asrser"),
    )


def summed_criterion_loss(
    criterion: torch.nn.Module,
    logits: torch.Tensor,
    ys_out: torch.Tensor,
    n_tokens: Union[int, torch.Tensor],
) -> torch.Tensor:
    """The loss of ESPnet's ``LabelSmoothingLoss`` summed over the ``n_tokens`` targets.

    The criterion divides its sum by the number of targets when ``normalize_length``
    (the ASR's ``length_normalized_loss``) is set, by the batch size otherwise; multiplying
    back lets the caller choose the denominator whatever that setting is.
    """
    divisor = n_tokens if criterion.normalize_length else logits.size(0)
    return criterion(logits, ys_out) * divisor


class ESPnetASRSERModel(AbsESPnetModel):
    @typechecked
    def __init__(
        self,
        mode: str,
        emotion_classes: Sequence[str],
        frontend: Optional[AbsFrontend],
        normalize: Optional[AbsNormalize],
        asr: Optional[ESPnetASRModel],
        vocab_size: Optional[int],
        input_size: Optional[int],
        ser_hidden_size: int = 256,
        ser_num_layers: int = 2,
        ser_dropout: float = 0.2,
        attention_size: int = 512,
        attention_heads: int = 8,
        classifier_size: int = 2048,
        word_embed_size: int = 300,
        max_audio_frames: int = 750,
        asr_weight: float = 0.2,
        asr_feature_source: str = "teacher_forcing",
        valid_asr_feature_source: str = "greedy",
        greedy_max_steps: int = 200,
        freeze_asr: bool = False,
        asr_feature_pooling: str = "token",
        asr_loss_normalization: str = "token",
    ):
        super().__init__()
        use_audio, use_text, use_asr = mode_inputs(mode)
        if not 0.0 <= asr_weight <= 1.0:
            raise ValueError(f"asr_weight must be in [0, 1], got {asr_weight}")
        for name, value in (
            ("asr_feature_source", asr_feature_source),
            ("valid_asr_feature_source", valid_asr_feature_source),
        ):
            if value not in FEATURE_SOURCES:
                raise ValueError(f"{name} must be one of {FEATURE_SOURCES}, got '{value}'")
        if asr_feature_pooling not in FEATURE_POOLINGS:
            raise ValueError(
                f"asr_feature_pooling must be one of {FEATURE_POOLINGS}, got "
                f"'{asr_feature_pooling}'"
            )
        if asr_loss_normalization not in ASR_LOSS_NORMALIZATIONS:
            raise ValueError(
                f"asr_loss_normalization must be one of {ASR_LOSS_NORMALIZATIONS}, got "
                f"'{asr_loss_normalization}'"
            )
        if use_asr and asr is None:
            raise ValueError(f"mode '{mode}' needs an ASR model")
        if use_text and vocab_size is None:
            raise ValueError(f"mode '{mode}' needs a token list for its word embeddings")
        self.mode = mode
        self.emotion_classes = list(emotion_classes)
        self.max_audio_frames = max_audio_frames
        self.asr_weight = asr_weight if use_asr else 0.0
        self.asr_feature_source = asr_feature_source
        self.valid_asr_feature_source = valid_asr_feature_source
        self.greedy_max_steps = greedy_max_steps
        self.freeze_asr = freeze_asr
        self.asr_feature_pooling = asr_feature_pooling if use_asr else "token"
        self.asr_loss_normalization = asr_loss_normalization

        branch_conf = dict(
            hidden_size=ser_hidden_size,
            num_layers=ser_num_layers,
            dropout=ser_dropout,
            attention_size=attention_size,
            heads=attention_heads,
        )
        pooled = 0
        self.frontend = frontend if use_audio else None
        self.normalize = normalize if use_audio else None
        if use_audio:
            feat_size = frontend.output_size() if frontend is not None else input_size
            if feat_size is None:
                raise ValueError("mode with audio needs a frontend or input_size")
            self.audio_branch = BLSTMAttentionBranch(feat_size, **branch_conf)
            pooled += self.audio_branch.output_size()
        if use_text:
            self.embed = torch.nn.Embedding(vocab_size, word_embed_size)
            self.text_branch = BLSTMAttentionBranch(word_embed_size, **branch_conf)
            pooled += self.text_branch.output_size()
        self.asr = asr if use_asr else None
        if use_asr:
            self.asr_state_size = decoder_state_size(asr.decoder)
            self.asr_branch = BLSTMAttentionBranch(self.asr_state_size, **branch_conf)
            if asr_feature_pooling == "word":
                starts = [token.startswith(WORD_START) for token in asr.token_list]
                if not any(starts):
                    raise ValueError(
                        "asr_feature_pooling 'word' needs sentencepiece units (tokens "
                        f"starting with '{WORD_START}'); the ASR's {len(starts)} tokens have "
                        "none (word units are words already: use 'token')"
                    )
                # Not persistent: derived from the token list, so checkpoints stay the same.
                self.register_buffer("word_start", torch.tensor(starts), persistent=False)
            pooled += self.asr_branch.output_size()
            if freeze_asr:
                self.asr.requires_grad_(False)
        self.classifier = EmotionClassifier(
            pooled, len(self.emotion_classes), hidden_size=classifier_size
        )

    # ---- building blocks, shared with Speech2Emotion ---------------------------------------

    @property
    def uses(self) -> Tuple[bool, bool, bool]:
        return mode_inputs(self.mode)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.asr is not None and self.freeze_asr:
            # A frozen ASR also keeps its dropout off: its features stay deterministic.
            self.asr.eval()
        return self

    def acoustic_features(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Normalised log-mel for the acoustic branch, cut to ``max_audio_frames`` (7.5 s).

        The paper also zero-padded short utterances to 750 frames; padding is masked here,
        so that padding would change nothing and is not done.
        """
        if self.frontend is not None:
            feats, lengths = self.frontend(speech, speech_lengths)
        else:
            feats, lengths = speech, speech_lengths
        if self.normalize is not None:
            feats, lengths = self.normalize(feats, lengths)
        if self.max_audio_frames > 0:
            feats = feats[:, : self.max_audio_frames]
            lengths = lengths.clamp(max=self.max_audio_frames)
        return feats, lengths

    def encode_asr(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_asr):
            return self.asr.encode(speech, speech_lengths)

    def ser_logits(
        self,
        speech: Optional[torch.Tensor] = None,
        speech_lengths: Optional[torch.Tensor] = None,
        text: Optional[torch.Tensor] = None,
        text_lengths: Optional[torch.Tensor] = None,
        asr_states: Optional[torch.Tensor] = None,
        asr_state_lengths: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Emotion logits (B, n_classes) from the inputs this mode uses."""
        use_audio, use_text, use_asr = self.uses
        pooled: List[torch.Tensor] = []
        if use_audio:
            pooled.append(self.audio_branch(*self.acoustic_features(speech, speech_lengths))[0])
        if use_text:
            if text is None:
                raise ValueError(f"mode '{self.mode}' needs 'text' (a transcript)")
            embedded = self.embed(text.clamp(min=0))
            pooled.append(self.text_branch(embedded, text_lengths)[0])
        if use_asr:
            pooled.append(self.asr_branch(asr_states, asr_state_lengths)[0])
        return self.classifier(torch.cat(pooled, dim=-1))

    def pool_asr_states(
        self,
        states: torch.Tensor,
        lengths: torch.Tensor,
        token_ids: Union[torch.Tensor, Sequence[Sequence[int]]],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """ASR features in the configured units (``asr_feature_pooling``).

        Args:
            states: (B, S, D) decoder states; ``states[b, i]`` is the state that emitted
                token ``i`` of utterance ``b``, followed by the state that emitted <eos>.
            lengths: (B,) states per utterance: L_b + 1, or L_b when the search stopped
                at its step limit without scoring <eos>.
            token_ids: the L_b emitted tokens (no <sos>/<eos>) of each utterance, as a
                (B, L) tensor padded with negative ids (ESPnet pads with -1) or a list of
                id sequences.

        Returns:
            ``token``: the inputs unchanged. ``word``: (B, W, D) means of the states of each
            word's pieces, then the <eos> state, and their lengths (words + 1, or words).
        """
        if self.asr_feature_pooling == "token":
            return states, lengths
        batch, steps, _ = states.shape
        device = states.device
        if not isinstance(token_ids, torch.Tensor):
            rows = [torch.as_tensor(list(t), dtype=torch.long) for t in token_ids]
            token_ids = torch.nn.utils.rnn.pad_sequence(
                rows + [torch.zeros(0, dtype=torch.long)], batch_first=True, padding_value=-1
            )[:batch]
        ids = torch.full((batch, steps), -1, dtype=torch.long, device=device)
        width = min(steps, token_ids.size(1))
        ids[:, :width] = token_ids[:, :width].to(device=device, dtype=torch.long)
        lengths = lengths.to(device)
        is_token = ids >= 0
        n_tokens = is_token.sum(dim=1)
        n_eos = lengths - n_tokens
        if bool(((n_eos < 0) | (n_eos > 1)).any()):
            raise ValueError(
                f"pool_asr_states: {lengths.tolist()} states for {n_tokens.tolist()} tokens; "
                "expected one state per token plus at most one for <eos>"
            )
        starts = torch.zeros_like(is_token)
        starts[is_token] = self.word_start[ids[is_token]]
        # An utterance's first piece opens a word even without the mark.
        starts[:, 0] |= is_token[:, 0]
        word = starts.long().cumsum(dim=1) - 1
        n_words = starts.sum(dim=1)
        position = torch.arange(steps, device=device)[None, :]
        is_eos = (position >= n_tokens[:, None]) & (position < lengths[:, None])
        # The <eos> state gets the slot after the last word.
        slot = torch.where(is_token, word, n_words[:, None].expand_as(word))
        keep = is_token | is_eos
        out_lengths = n_words + n_eos
        width = int(out_lengths.max()) if batch else 0
        flat = (torch.arange(batch, device=device)[:, None] * width + slot)[keep]
        sums = states.new_zeros(batch * width, states.size(-1)).index_add(
            0, flat, states[keep]
        )
        counts = states.new_zeros(batch * width).index_add(
            0, flat, states.new_ones(flat.numel())
        )
        pooled = sums / counts.clamp(min=1)[:, None]
        return pooled.view(batch, width, -1), out_lengths

    # ---- training ---------------------------------------------------------------------------

    def _asr_states_and_loss(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: Optional[torch.Tensor],
        text_lengths: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, Optional[torch.Tensor]]]:
        asr = self.asr
        source = self.asr_feature_source if self.training else self.valid_asr_feature_source
        encoder_out, encoder_out_lens = self.encode_asr(speech, speech_lengths)
        if source == "greedy":
            hyp, hyp_lens = greedy_tokens(
                asr.decoder, encoder_out, encoder_out_lens,
                asr.sos, asr.eos, asr.ignore_id, self.greedy_max_steps,
            )
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_asr):
                _, _, states, state_lens = teacher_forced_states(
                    asr.decoder, encoder_out, encoder_out_lens, hyp, hyp_lens,
                    asr.sos, asr.eos, asr.ignore_id,
                )
        if text is None:
            if source == "teacher_forcing" or self.asr_weight > 0:
                raise ValueError(
                    f"mode '{self.mode}' with asr_feature_source="
                    f"'{source}' and asr_weight={self.asr_weight} needs "
                    "the reference transcript 'text'"
                )
            states, state_lens = self.pool_asr_states(states, state_lens, hyp)
            return states, state_lens, {"loss_asr": None, "acc_asr": None}

        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_asr):
            logits, ys_out, tf_states, tf_lens = teacher_forced_states(
                asr.decoder, encoder_out, encoder_out_lens, text, text_lengths,
                asr.sos, asr.eos, asr.ignore_id,
            )
            # Empty transcripts teach the ASR nothing but "<eos> at once"; leave them out
            # of L_ASR (still used for L_SER) and normalise over the others.
            nonempty = text_lengths > 0
            ys_out = ys_out.masked_fill(~nonempty[:, None], asr.ignore_id)
            n_nonempty = int(nonempty.sum())
            # <eos> included; a tensor, so that no step waits for the device to count.
            n_tokens = (ys_out != asr.ignore_id).sum()
            if n_nonempty:
                denominator = n_tokens if self.asr_loss_normalization == "token" else n_nonempty
                loss_att = summed_criterion_loss(asr.criterion_att, logits, ys_out, n_tokens)
                loss_att = loss_att / denominator
                acc = th_accuracy(logits.reshape(-1, logits.size(-1)), ys_out, asr.ignore_id)
            else:
                loss_att = logits.sum() * 0.0
                acc = None
            loss_asr = loss_att
            if asr.ctc is not None and asr.ctc_weight > 0 and n_nonempty:
                # ESPnet's CTC (ctc_type builtin) sums each utterance's loss and divides by
                # the number of utterances given; undo that as for the attention loss.
                loss_ctc, _ = asr._calc_ctc_loss(
                    encoder_out[nonempty], encoder_out_lens[nonempty],
                    text[nonempty], text_lengths[nonempty],
                )
                loss_ctc = loss_ctc * (n_nonempty / denominator)
                loss_asr = asr.ctc_weight * loss_ctc + (1 - asr.ctc_weight) * loss_att
        if source == "teacher_forcing":
            states, state_lens, hyp = tf_states, tf_lens, text
        states, state_lens = self.pool_asr_states(states, state_lens, hyp)
        stats = {
            "loss_asr": loss_asr.detach(),
            "acc_asr": torch.tensor(acc) if acc is not None else None,
        }
        return states, state_lens, {**stats, "_loss_asr": loss_asr}

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        emotion: torch.Tensor,
        emotion_lengths: Optional[torch.Tensor] = None,
        text: Optional[torch.Tensor] = None,
        text_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, Optional[torch.Tensor]], torch.Tensor]:
        batch_size = emotion.size(0)
        _, _, use_asr = self.uses
        asr_states = asr_lens = None
        asr_stats: Dict[str, Optional[torch.Tensor]] = {}
        if use_asr:
            asr_states, asr_lens, asr_stats = self._asr_states_and_loss(
                speech, speech_lengths, text, text_lengths
            )
        logits = self.ser_logits(
            speech, speech_lengths, text, text_lengths, asr_states, asr_lens
        )
        target = emotion.reshape(batch_size, -1)[:, 0].long()
        loss_ser = F.cross_entropy(logits, target)
        loss_asr = asr_stats.pop("_loss_asr", None)
        if loss_asr is not None and self.asr_weight > 0:
            loss = self.asr_weight * loss_asr + (1 - self.asr_weight) * loss_ser
        else:
            loss = loss_ser
        stats = dict(
            loss=loss.detach(),
            loss_ser=loss_ser.detach(),
            acc_ser=(logits.argmax(dim=-1) == target).float().mean().detach(),
            **asr_stats,
        )
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return loss, stats, weight

    def collect_feats(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        **kwargs,
    ) -> Dict[str, torch.Tensor]:
        """Features whose statistics feed ``normalize: global_mvn`` (``--collect_stats``)."""
        frontend = self.frontend if self.frontend is not None else (
            self.asr.frontend if self.asr is not None else None
        )
        if frontend is not None:
            feats, lengths = frontend(speech, speech_lengths)
        else:
            feats, lengths = speech, speech_lengths
        return {"feats": feats, "feats_lengths": lengths}
