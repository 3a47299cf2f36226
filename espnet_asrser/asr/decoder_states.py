"""Per-token decoder states ("ASR features") from any ESPnet attention decoder.

A decoder qualifies when its ``forward`` takes ``return_hs=True`` and returns
``((logits, hs), lengths)`` and it has an ``output_layer`` whose input is ``hs`` — true of
ESPnet's ``TransformerDecoder`` family and of our :class:`~espnet_asrser.asr.a2w_decoder.A2WDecoder`.

For a transcript w_1..w_L the feature sequence has L + 1 vectors: the states of the steps
that emit w_1..w_L and <eos>. Teacher forcing on ``<sos> w_1..w_L`` gives exactly these, and
so does ESPnet's ``BeamSearch(return_hs=True)`` for a hypothesis that ended with <eos>. An
empty transcript therefore still yields one vector, so the SER branch never sees an empty
sequence.

:func:`greedy_tokens` gives a model's own greedy transcript, whose teacher-forced states are
the ``greedy`` ASR features. It costs O(L) decoder steps for a decoder that has a
``greedy_search`` method (our A2W decoder) and for ESPnet's ``TransformerDecoder`` (through
its key/value cache), and O(L^2) for any other decoder (:func:`greedy_tokens_reference`,
which re-runs teacher forcing on the growing prefix and is what the fast paths are tested
against).
"""

import inspect
from typing import Callable, Tuple

import torch

from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos
from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder


def check_decoder_has_states(decoder: torch.nn.Module) -> None:
    """Raise a clear error for decoders that cannot provide ASR features."""
    has_flag = "return_hs" in inspect.signature(decoder.forward).parameters
    output_layer = getattr(decoder, "output_layer", None)
    if not has_flag or not isinstance(output_layer, torch.nn.Linear):
        raise TypeError(
            f"{type(decoder).__name__} cannot provide ASR features: the SER model needs an "
            "attention decoder whose forward() accepts return_hs=True and whose "
            "output_layer is a Linear over the hidden states (e.g. 'a2w' or 'transformer')"
        )


def decoder_state_size(decoder: torch.nn.Module) -> int:
    """Dimension of the ASR features of ``decoder``."""
    check_decoder_has_states(decoder)
    return decoder.output_layer.in_features


def teacher_forced_states(
    decoder: torch.nn.Module,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    ys_pad: torch.Tensor,
    ys_lens: torch.Tensor,
    sos: int,
    eos: int,
    ignore_id: int,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decode the reference once; return logits, ys_out targets, states and their lengths."""
    ys_in_pad, ys_out_pad = add_sos_eos(ys_pad, sos, eos, ignore_id)
    ys_in_lens = ys_lens + 1
    (logits, hs), _ = decoder(
        encoder_out, encoder_out_lens, ys_in_pad, ys_in_lens, return_hs=True
    )
    return logits, ys_out_pad, hs, ys_in_lens


@torch.no_grad()
def greedy_tokens(
    decoder: torch.nn.Module,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    sos: int,
    eos: int,
    ignore_id: int,
    max_steps: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Batched greedy decoding of every utterance; returns (B, L) tokens (padded with
    ``ignore_id``, <sos>/<eos> excluded) and their lengths. An utterance that has not
    emitted <eos> after ``max_steps`` steps keeps its ``max_steps`` tokens.

    An option for training-time features, not the inference path (that is ESPnet's beam
    search). The decoder's own incremental path is used where there is one:

    * a decoder with a ``greedy_search(encoder_out, encoder_out_lens, sos, eos, ignore_id,
      max_steps)`` method is trusted to honour this contract (:class:`A2WDecoder
      <espnet_asrser.asr.a2w_decoder.A2WDecoder>`);
    * ESPnet's ``TransformerDecoder`` runs ``forward_one_step`` with its cache;
    * any other decoder runs :func:`greedy_tokens_reference`, O(L^2).

    For both incremental paths the tokens are those of :func:`greedy_tokens_reference` in
    eval mode (tested on random weights). Their logits agree only up to rounding (the matrix
    products have other shapes), so an exact tie between two words could in principle break
    the other way; in training mode the dropout draws differ anyway.
    """
    if hasattr(decoder, "greedy_search"):
        return decoder.greedy_search(
            encoder_out, encoder_out_lens, sos, eos, ignore_id, max_steps
        )
    if isinstance(decoder, TransformerDecoder):
        return _transformer_greedy_tokens(
            decoder, encoder_out, encoder_out_lens, sos, eos, ignore_id, max_steps
        )
    return greedy_tokens_reference(
        decoder, encoder_out, encoder_out_lens, sos, eos, ignore_id, max_steps
    )


def greedy_loop(
    next_logits: Callable[[torch.Tensor], torch.Tensor],
    encoder_out: torch.Tensor,
    sos: int,
    eos: int,
    ignore_id: int,
    max_steps: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The bookkeeping of greedy decoding for an incremental decoder.

    ``next_logits(prefix)`` gets the (B, l) prefix that starts with <sos>, once for each l
    in order, and returns the (B, V) logits of the next token. Finished utterances are fed
    <eos> until every utterance has emitted it or ``max_steps`` is reached; the result is
    that of :func:`greedy_tokens`.
    """
    batch = encoder_out.size(0)
    prefix = encoder_out.new_full((batch, 1), sos, dtype=torch.long)
    finished = torch.zeros(batch, dtype=torch.bool, device=encoder_out.device)
    lengths = torch.zeros(batch, dtype=torch.long, device=encoder_out.device)
    for _ in range(max_steps):
        best = next_logits(prefix).argmax(dim=-1)
        finished |= best == eos
        if bool(finished.all()):
            break
        best = best.masked_fill(finished, eos)
        prefix = torch.cat([prefix, best[:, None]], dim=1)
        lengths += (~finished).long()
    tokens = prefix[:, 1:]
    valid = torch.arange(tokens.size(1), device=tokens.device)[None, :] < lengths[:, None]
    return tokens.masked_fill(~valid, ignore_id), lengths


def _transformer_greedy_tokens(
    decoder: TransformerDecoder,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    sos: int,
    eos: int,
    ignore_id: int,
    max_steps: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`greedy_tokens` through ESPnet's ``forward_one_step``: each layer caches its
    outputs, so a step computes one new position. The memory mask is that of ``forward``.

    In training mode the dropout masks of earlier positions are kept from the step that
    computed them, where the reference redraws them at every step.
    """
    memory_mask = (~make_pad_mask(encoder_out_lens, maxlen=encoder_out.size(1)))[:, None, :]
    memory_mask = memory_mask.to(encoder_out.device)
    cache = None

    def next_logits(prefix: torch.Tensor) -> torch.Tensor:
        nonlocal cache
        tgt_mask = subsequent_mask(prefix.size(1), device=prefix.device).unsqueeze(0)
        logp, cache = decoder.forward_one_step(
            prefix, tgt_mask, encoder_out, memory_mask, cache=cache
        )
        return logp

    return greedy_loop(next_logits, encoder_out, sos, eos, ignore_id, max_steps)


@torch.no_grad()
def greedy_tokens_reference(
    decoder: torch.nn.Module,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    sos: int,
    eos: int,
    ignore_id: int,
    max_steps: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`greedy_tokens` for any decoder, through its teacher-forcing ``forward`` on
    the growing prefix: O(L^2) decoder steps. The fallback for decoders without an
    incremental path, and the reference the incremental paths must match token for token.
    """

    def next_logits(prefix: torch.Tensor) -> torch.Tensor:
        prefix_lens = torch.full(
            (prefix.size(0),), prefix.size(1), dtype=torch.long, device=prefix.device
        )
        logits, _ = decoder(encoder_out, encoder_out_lens, prefix, prefix_lens)
        return logits[:, -1]

    return greedy_loop(next_logits, encoder_out, sos, eos, ignore_id, max_steps)
