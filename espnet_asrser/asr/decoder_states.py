"""Per-token decoder states ("ASR features") from any ESPnet attention decoder.

A decoder qualifies when its ``forward`` takes ``return_hs=True`` and returns
``((logits, hs), lengths)`` and it has an ``output_layer`` whose input is ``hs`` — true of
ESPnet's ``TransformerDecoder`` family and of our :class:`~espnet_asrser.asr.a2w_decoder.A2WDecoder`.

For a transcript w_1..w_L the feature sequence has L + 1 vectors: the states of the steps
that emit w_1..w_L and <eos>. Teacher forcing on ``<sos> w_1..w_L`` gives exactly these, and
so does ESPnet's ``BeamSearch(return_hs=True)`` for a hypothesis that ended with <eos>. An
empty transcript therefore still yields one vector, so the SER branch never sees an empty
sequence.
"""

import inspect
from typing import Tuple

import torch

from espnet.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos


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
    ``ignore_id``, <sos>/<eos> excluded) and their lengths.

    Works for any decoder through its teacher-forcing ``forward`` on the growing prefix, so
    it costs O(L^2) decoder steps for recurrent decoders: an option for training-time
    features, not the inference path (that is ESPnet's beam search).
    """
    batch = encoder_out.size(0)
    prefix = encoder_out.new_full((batch, 1), sos, dtype=torch.long)
    finished = torch.zeros(batch, dtype=torch.bool, device=encoder_out.device)
    lengths = torch.zeros(batch, dtype=torch.long, device=encoder_out.device)
    for _ in range(max_steps):
        prefix_lens = torch.full_like(lengths, prefix.size(1))
        logits, _ = decoder(encoder_out, encoder_out_lens, prefix, prefix_lens)
        best = logits[:, -1].argmax(dim=-1)
        finished |= best == eos
        if bool(finished.all()):
            break
        best = best.masked_fill(finished, eos)
        prefix = torch.cat([prefix, best[:, None]], dim=1)
        lengths += (~finished).long()
    tokens = prefix[:, 1:]
    valid = torch.arange(tokens.size(1), device=tokens.device)[None, :] < lengths[:, None]
    return tokens.masked_fill(~valid, ignore_id), lengths
