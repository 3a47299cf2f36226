"""Beam search over many utterances at once, with the results of ESPnet's per-utterance search.

ESPnet's ``BatchBeamSearch`` scores the hypotheses of one utterance in one tensor, but a test
set still goes through its step loop once per utterance, and every step of it reads the
whole output layer (47,465 x 320 at paper size) for at most beam-size rows.
:class:`UtteranceBatchBeamSearch` runs one step loop for B utterances: a step scores the
B x beam rows in one call of the decoder, picks each utterance's beam in one top-k, and
moves states with one gather. It wraps a configured ESPnet ``BeamSearch`` (or
``BatchBeamSearch``), so both read the same settings, and it reproduces, per utterance, what
that search returns for ``x = encoder_out[:length]`` (ESPnet 202511, ``BatchBeamSearch``):

* the search starts from one hypothesis, <sos>; a step takes the ``beam_size`` best
  (hypothesis, token) pairs of all running hypotheses by accumulated weighted score, in the
  order of a flat top-k over hypotheses x vocabulary;
* a candidate that ends with <eos> leaves the beam; it is kept as ended when its step
  ``i >= minlen``, dropped otherwise; the others run on, in top-k order;
* ``maxlen``/``minlen`` come from the utterance's own encoder length: ``maxlenratio`` 0 gives
  T, a negative one |ratio| steps, a positive one ``max(1, int(ratio * T))``; at step
  ``maxlen - 1`` every running hypothesis gets <eos> appended without a decoder step;
* with ``maxlenratio == 0`` ESPnet's end detection (``e2e_asr_common.end_detect``) stops the
  utterance; it also stops when no hypothesis runs;
* the ended hypotheses are sorted by score (``score / (len(yseq) - 1)`` with
  ``normalize_length``), stably, so equal scores keep the order in which they ended; when
  none ended the result is ``[]`` for ``minlenratio < 0.1``, else the search of that
  utterance is run again with ``minlenratio - 0.1``.

Each returned ``Hypothesis`` has ``yseq``, ``score``, ``scores`` and ``hs`` as ESPnet's
(``hs``: one decoder state per decoder step, what ``return_hs=True`` gives); ``states`` is
empty. Per-step decoder states are not copied along the beam: each step keeps its states,
and the hypotheses that are returned are traced back through their parents.

Padding. Utterances of different lengths share the step tensors: the encoder output is
padded and the decoder masks the padding frames (their attention weights are exactly 0);
finished hypotheses are kept in the rows with score -inf, so that they are never chosen
again; an utterance whose search has stopped leaves the batch. The candidates are those of
the per-utterance search, but the matrix products run on other shapes, so scores may differ
in the last bits (``tests/test_batch_beam_search.py`` measures how much), and a near-tie
between two candidates could in principle be broken the other way.

Decoders and scorers batched here: our A2W decoder and ESPnet's Transformer-family decoders
(``BaseTransformerDecoder`` with its own ``batch_score``: Transformer, lightweight and
dynamic convolution), as the only scorer, at any weight. Anything else (CTC prefix scoring,
a language model, an n-gram, a length bonus, a decoder whose step takes no padding mask,
a prompt such as Whisper's) makes the search fall back to ESPnet's search, one utterance
at a time, with the reason logged once: correct everywhere, fast where the recipe decodes
(decoder only). CTC prefix scoring in particular keeps per-hypothesis state over all encoder
frames and a pre-beam; batching it across utterances is a project of its own.
"""

import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from espnet.nets.batch_beam_search import BatchBeamSearch
from espnet.nets.beam_search import BeamSearch, Hypothesis
from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask
from espnet2.asr.decoder.transformer_decoder import BaseTransformerDecoder
from espnet_asrser.asr.a2w_decoder import A2WDecoder

logger = logging.getLogger(__name__)

# ESPnet's end_detect(ended_hyps, i, M=3, D_end=np.log(1 * np.exp(-10))), same arithmetic.
END_DETECT_M = 3
END_DETECT_D = float(np.log(1 * np.exp(-10)))


class _A2WSteps:
    """Batched steps of :class:`A2WDecoder`; the computation of its ``batch_score``."""

    def __init__(self, decoder: A2WDecoder):
        self.decoder = decoder

    def memory(self, enc: torch.Tensor, lens: torch.Tensor):
        attention = self.decoder.attention
        # Projected one utterance at a time, on its unpadded frames, as init_state does:
        # the same product as the per-utterance search, not one of another shape.
        proj = enc.new_zeros(*enc.shape[:2], attention.encoder_proj.out_features)
        for b, length in enumerate(lens.tolist()):
            proj[b, :length] = attention.project_encoder(enc[b, :length])
        mask = torch.arange(enc.size(1), device=enc.device)[None, :] < lens[:, None]
        return enc, proj, mask

    def initial_state(self, memory):
        enc, _, mask = memory
        zeros = enc.new_zeros(enc.size(0), self.decoder.hidden_size)
        return zeros, zeros, self.decoder.attention.initial_weights(mask).to(enc.dtype)

    def step(self, ys: torch.Tensor, state, memory):
        enc, proj, mask = memory
        feature, state = self.decoder._step(self.decoder.embed(ys[:, -1]), state, enc, proj, mask)
        return torch.log_softmax(self.decoder.output_layer(feature), dim=-1), feature, state

    @staticmethod
    def reorder(state, rows: torch.Tensor):
        return tuple(s.index_select(0, rows) for s in state)

    @staticmethod
    def select(memory, state, rows: torch.Tensor, frames: int):
        """Keep ``rows`` and the first ``frames`` frames (the alignment is 0 beyond the
        frames of each row, as the convolution's own zero padding would be)."""
        memory = tuple(m.index_select(0, rows)[:, :frames] for m in memory)
        h, c, att = state
        return memory, (h, c, att[:, :frames])


class _TransformerSteps:
    """Batched steps of an ESPnet Transformer-family decoder: ``forward_one_step`` with its
    key/value cache, as its ``batch_score`` runs it, plus the padding mask of the memory
    (``batch_score`` has none: it sees one utterance at a time)."""

    def __init__(self, decoder: BaseTransformerDecoder):
        self.decoder = decoder

    @staticmethod
    def memory(enc: torch.Tensor, lens: torch.Tensor):
        return enc, (torch.arange(enc.size(1), device=enc.device)[None, :] < lens[:, None])[:, None]

    @staticmethod
    def initial_state(memory):
        return None

    def step(self, ys: torch.Tensor, cache, memory):
        enc, mask = memory
        ys_mask = subsequent_mask(ys.size(1), device=ys.device).unsqueeze(0)
        (logp, hidden), cache = self.decoder.forward_one_step(
            ys, ys_mask, enc, mask, cache=cache, return_hs=True
        )
        return logp, hidden, cache

    @staticmethod
    def reorder(cache, rows: torch.Tensor):
        return None if cache is None else [c.index_select(0, rows) for c in cache]

    @staticmethod
    def select(memory, cache, rows: torch.Tensor, frames: int):
        enc, mask = memory
        return (enc.index_select(0, rows)[:, :frames], mask.index_select(0, rows)[:, :, :frames]), cache


def batched_steps(decoder: torch.nn.Module):
    """The batched step of ``decoder``, or None when there is none here."""
    if isinstance(decoder, A2WDecoder):
        return _A2WSteps(decoder)
    if (
        isinstance(decoder, BaseTransformerDecoder)
        and type(decoder).batch_score is BaseTransformerDecoder.batch_score
        and type(decoder).forward_one_step is BaseTransformerDecoder.forward_one_step
    ):
        return _TransformerSteps(decoder)
    return None


def fallback_reason(beam_search: BeamSearch) -> Optional[str]:
    """Why ``beam_search`` cannot be run across utterances here; None when it can."""
    if type(beam_search) not in (BeamSearch, BatchBeamSearch):
        return f"{type(beam_search).__name__} is not ESPnet's plain (Batch)BeamSearch"
    others = sorted(k for k in beam_search.scorers if k != "decoder")
    if others:
        return f"scorers other than the decoder are configured: {others}"
    if "decoder" not in beam_search.full_scorers:
        return "there is no decoder scorer"
    if batched_steps(beam_search.full_scorers["decoder"]) is None:
        name = type(beam_search.full_scorers["decoder"]).__name__
        return f"{name} has no batched step with a padding mask here"
    if beam_search.hyp_primer is not None:
        return "a hypothesis primer (prompt) is set"
    if beam_search.n_vocab < beam_search.beam_size:
        return "the vocabulary is smaller than the beam"
    return None


@dataclass
class _Ended:
    """An ended hypothesis: where its last token is in the step records."""

    score: torch.Tensor  # 0-d, on the CPU, in the search's dtype (sort keys as ESPnet's)
    step: int
    candidate: int  # index in the step's top-k
    forced: bool  # <eos> appended at maxlen, without a decoder step

    @property
    def yseq_length(self) -> int:
        return self.step + 2 + int(self.forced)


@dataclass
class _Step:
    """What one step leaves for tracing hypotheses back (per utterance block of the step)."""

    blocks: Dict[int, int]  # utterance -> its block in this step's rows
    parent: List[List[int]]  # [block][candidate] -> slot of the parent in this step's rows
    token: List[List[int]]  # [block][candidate] -> new token
    slot_to_candidate: List[List[int]]  # [block][slot of the next step] -> candidate
    score: torch.Tensor  # (blocks, beam) accumulated weighted score per candidate
    decoder_score: torch.Tensor  # (blocks, beam) accumulated decoder score per candidate
    feature_offset: int  # first row of this step in the concatenated features
    width: int  # rows per utterance in this step


class UtteranceBatchBeamSearch:
    """ESPnet's beam search for a padded batch of encoder outputs.

    Usage::

        search = UtteranceBatchBeamSearch(beam_search)   # a configured ESPnet BeamSearch
        nbest = search(encoder_out, encoder_lens, maxlenratio=0.0, minlenratio=0.0)
        nbest[b][0].yseq, nbest[b][0].hs    # utterance b's best, as beam_search(x=...) gives
    """

    def __init__(self, beam_search: BeamSearch):
        self.beam_search = beam_search
        self.reason = fallback_reason(beam_search)
        self._warned = False
        if self.reason is None:
            self.decoder = beam_search.full_scorers["decoder"]
            self.steps = batched_steps(self.decoder)
            self.weight = beam_search.weights["decoder"]
            self.beam = beam_search.beam_size
            self.vocab = beam_search.n_vocab
            self.sos, self.eos = beam_search.sos, beam_search.eos

    @torch.no_grad()
    def __call__(
        self,
        encoder_out: torch.Tensor,
        encoder_lens: torch.Tensor,
        maxlenratio: float = 0.0,
        minlenratio: float = 0.0,
        nbest: int = 1,
    ) -> List[List[Hypothesis]]:
        """The ``nbest`` best ended hypotheses of each utterance (``[]`` when none ended).

        Args:
            encoder_out: (B, T, D) padded encoder output; encoder_lens: (B,) its lengths.
        """
        if self.reason is not None:
            if not self._warned:
                logger.warning(f"beam search one utterance at a time: {self.reason}")
                self._warned = True
            return [
                self.beam_search(x=enc[:length], maxlenratio=maxlenratio,
                                 minlenratio=minlenratio)[:nbest]
                for enc, length in zip(encoder_out, encoder_lens.tolist())
            ]
        results = self._search(encoder_out, encoder_lens, maxlenratio, minlenratio, nbest)
        retry = [b for b, r in enumerate(results) if not r]
        if retry and minlenratio >= 0.1:
            # ESPnet searches again with a shorter minimum when nothing ended.
            index = torch.tensor(retry, device=encoder_out.device)
            lens = encoder_lens[index]
            again = self(encoder_out[index][:, : int(lens.max())], lens, maxlenratio,
                         max(0.0, minlenratio - 0.1), nbest)
            for b, r in zip(retry, again):
                results[b] = r
        return results

    # ---- the search ------------------------------------------------------------------

    def _search(self, encoder_out, encoder_lens, maxlenratio, minlenratio, nbest):
        n_utts, beam, vocab = encoder_out.size(0), self.beam, self.vocab
        frames = encoder_lens.tolist()
        maxlen = [_maxlen(t, maxlenratio) for t in frames]
        minlen = [-int(minlenratio) if minlenratio < 0 else int(minlenratio * t) for t in frames]
        ended: List[List[_Ended]] = [[] for _ in range(n_utts)]
        active = [u for u in range(n_utts) if maxlen[u] > 0]
        if not active:
            return [[] for _ in range(n_utts)]
        device, dtype = encoder_out.device, encoder_out.dtype
        index = torch.tensor(active, device=device)
        # The first step has one hypothesis (<sos>) per utterance: one row each.
        width = 1
        memory = self.steps.memory(encoder_out[index], encoder_lens[index])
        state = self.steps.initial_state(memory)
        ys = torch.full((len(active), 1), self.sos, dtype=torch.long, device=device)
        score = torch.zeros(len(active), 1, dtype=dtype, device=device)
        decoder_score = torch.zeros_like(score)
        best_by_length: List[Dict[int, float]] = [{} for _ in range(n_utts)]
        records: List[_Step] = []
        features: List[torch.Tensor] = []
        offset = 0
        for i in range(max(maxlen)):
            n = len(active)
            logp, feature, state = self.steps.step(ys, state, memory)
            logp = logp.view(n, width, vocab)
            weighted = logp if self.weight == 1.0 else self.weight * logp
            top_score, flat = (weighted + score[:, :, None]).view(n, width * vocab).topk(beam)
            parent = torch.div(flat, vocab, rounding_mode="trunc")
            token = flat % vocab
            block = torch.arange(n, device=device)[:, None]
            top_decoder = decoder_score.gather(1, parent) + logp[block, parent, token]
            forced = [i == maxlen[u] - 1 for u in active]
            ends = (token == self.eos) | torch.tensor(forced, device=device)[:, None]
            # Running candidates first, in top-k order (ESPnet removes the ended ones).
            order = torch.sort(ends.to(torch.int8), dim=1, stable=True).indices
            parent_l, token_l, ends_l, order_l = (t.tolist() for t in (parent, token, ends, order))
            top_cpu = top_score.cpu()
            records.append(_Step({u: k for k, u in enumerate(active)}, parent_l, token_l,
                                 order_l, top_score, top_decoder, offset, width))
            features.append(feature)
            offset += feature.size(0)

            keep = []
            for k, u in enumerate(active):
                for c in range(beam):
                    if ends_l[k][c] and i >= minlen[u]:
                        hyp = _Ended(top_cpu[k, c], i, c, forced[k])
                        ended[u].append(hyp)
                        _note_length(best_by_length[u], hyp)
                done = (
                    forced[k]
                    or all(ends_l[k])
                    or (maxlenratio == 0.0 and _end_detected(best_by_length[u], i))
                )
                if not done:
                    keep.append(k)
            if not keep:
                break
            keep_t = torch.tensor(keep, device=device)
            order, parent, token = order[keep_t], parent[keep_t], token[keep_t]
            sorted_ends = ends[keep_t].gather(1, order)
            # Ended candidates stay in their rows with score -inf: never chosen again.
            score = top_score[keep_t].gather(1, order).masked_fill(sorted_ends, -math.inf)
            decoder_score = top_decoder[keep_t].gather(1, order)
            rows = (keep_t[:, None] * width + parent.gather(1, order)).view(-1)
            state = self.steps.reorder(state, rows)
            ys = torch.cat([ys.index_select(0, rows), token.gather(1, order).view(-1, 1)], 1)
            if len(keep) < n or width == 1:
                # Memory rows follow the utterances (each has `beam` rows from now on,
                # all with the utterance's memory, so any row of its block serves);
                # frames beyond the longest remaining utterance go.
                active = [active[k] for k in keep]
                memory_rows = (keep_t[:, None] * width
                               + torch.zeros(1, beam, dtype=torch.long, device=device)).view(-1)
                memory, state = self.steps.select(memory, state, memory_rows,
                                                  max(frames[u] for u in active))
                width = beam
        all_features = torch.cat(features)
        return [self._nbest(hyps, u, records, all_features, nbest) for u, hyps in enumerate(ended)]

    def _nbest(self, hyps: List[_Ended], utt: int, records: List[_Step],
               features: torch.Tensor, nbest: int) -> List[Hypothesis]:
        if self.beam_search.normalize_length:
            ranked = sorted(hyps, key=lambda h: h.score / (h.yseq_length - 1), reverse=True)
        else:
            ranked = sorted(hyps, key=lambda h: h.score, reverse=True)
        return [self._trace(h, utt, records, features) for h in ranked[:nbest]]

    def _trace(self, hyp: _Ended, utt: int, records: List[_Step],
               features: torch.Tensor) -> Hypothesis:
        """The hypothesis that ended at ``hyp``, from its parents' step records."""
        tokens, rows = [], []
        candidate = hyp.candidate
        for step in range(hyp.step, -1, -1):
            record = records[step]
            k = record.blocks[utt]
            slot = record.parent[k][candidate]
            tokens.append(record.token[k][candidate])
            rows.append(record.feature_offset + k * record.width + slot)
            if step > 0:
                candidate = records[step - 1].slot_to_candidate[
                    records[step - 1].blocks[utt]][slot]
        last = records[hyp.step]
        k = last.blocks[utt]
        yseq = [self.sos, *reversed(tokens)] + ([self.eos] if hyp.forced else [])
        device = features.device
        hs = features[torch.tensor(rows[::-1], device=device)]
        return Hypothesis(
            yseq=torch.tensor(yseq, device=device),
            score=last.score[k, hyp.candidate],
            scores={"decoder": last.decoder_score[k, hyp.candidate]},
            states={},
            hs=list(hs.unbind(0)),
        )


def _maxlen(frames: int, maxlenratio: float) -> int:
    if maxlenratio == 0:
        return frames
    if maxlenratio < 0:
        return -int(maxlenratio)
    return max(1, int(maxlenratio * frames))


def _note_length(best_by_length: Dict[int, float], hyp: _Ended) -> None:
    """Keep the best ended score per yseq length, and overall under key -1."""
    score = float(hyp.score)
    for key in (hyp.yseq_length, -1):
        if key not in best_by_length or score > best_by_length[key]:
            best_by_length[key] = score


def _end_detected(best_by_length: Dict[int, float], i: int) -> bool:
    """ESPnet's end_detect from the best score per length: at step i, the best hypotheses
    of yseq lengths i, i - 1, i - 2 all ended more than 10 (log) below the best so far."""
    if -1 not in best_by_length:
        return False
    best = best_by_length[-1]
    return all(
        (i - m) in best_by_length and best_by_length[i - m] - best < END_DETECT_D
        for m in range(END_DETECT_M)
    )
