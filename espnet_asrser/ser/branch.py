"""One SER branch: a BiLSTM over a feature sequence, pooled by structured self-attention.

The paper (Feng et al. 2020, §2.1 and §5.3) runs the same branch on two inputs: 40-dim
log-mel frames (acoustic branch) and 320-dim ASR decoder states, one per word (ASR-feature
branch). Each is a 2-layer BiLSTM with 256 cells per direction and dropout 0.2, followed by
8-head self-attention, giving an 8 x 512 = 4096-dim vector.

Deviation from the authors: their code masked neither the BiLSTM (padded frames entered the
recurrence, and the backward direction started from the padding) nor the attention softmax.
Here the BiLSTM runs on packed sequences and the attention masks padding, so an utterance's
output does not depend on how much padding its batch adds.

A sequence of length 0 (e.g. an empty ASR hypothesis) pools to the zero vector with all-zero
attention weights. ``pack_padded_sequence`` rejects length 0, so such a sequence is packed
as one zeroed frame; the attention mask then discards that frame's BiLSTM output.
"""

from typing import Tuple

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from espnet_asrser.ser.attention import StructuredSelfAttention


class BLSTMAttentionBranch(torch.nn.Module):
    """BiLSTM + structured self-attention: (B, T, D) sequences -> (B, heads * 2 * hidden).

    Args:
        input_size: feature dimension D of the input frames or tokens.
        hidden_size: LSTM cells per direction.
        num_layers: stacked BiLSTM layers.
        dropout: dropout between BiLSTM layers (not applied after the last one).
        attention_size: hidden units of the attention scoring MLP.
        heads: attention heads.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 256,
        num_layers: int = 2,
        dropout: float = 0.2,
        attention_size: int = 512,
        heads: int = 8,
    ):
        super().__init__()
        self.blstm = torch.nn.LSTM(
            input_size,
            hidden_size,
            num_layers=num_layers,
            # torch warns when inter-layer dropout is set on a single layer, where it is a no-op.
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=True,
            batch_first=True,
        )
        self.attention = StructuredSelfAttention(2 * hidden_size, attention_size, heads)

    def output_size(self) -> int:
        return self.attention.output_size()

    def forward(
        self, xs: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encode and pool a padded batch.

        Args:
            xs: (B, T, D) padded input; values beyond each length are ignored.
            lengths: (B,) valid lengths, 0 <= length <= T.

        Returns:
            pooled: (B, heads * 2 * hidden_size), zero for sequences of length 0.
            weights: (B, heads, T) attention weights, 0 on padding.
        """
        if lengths.shape != (xs.size(0),):
            raise ValueError(
                f"expected lengths of shape ({xs.size(0)},), got {tuple(lengths.shape)}"
            )
        frames = xs.size(1)
        # pack_padded_sequence wants lengths on the CPU.
        pack_lengths = lengths.detach().to("cpu", torch.int64)
        if pack_lengths.numel() > 0 and (
            int(pack_lengths.min()) < 0 or int(pack_lengths.max()) > frames
        ):
            raise ValueError(f"lengths must lie in [0, {frames}], got {lengths.tolist()}")

        empty = pack_lengths == 0
        if bool(empty.any()):
            # Give each empty sequence one zero frame so that it can be packed.
            if frames == 0:
                xs = xs.new_zeros(xs.size(0), 1, xs.size(2))
            else:
                xs = xs.masked_fill(empty.to(xs.device)[:, None, None], 0.0)
            pack_lengths = pack_lengths.clamp(min=1)

        packed = pack_padded_sequence(xs, pack_lengths, batch_first=True, enforce_sorted=False)
        hs, _ = self.blstm(packed)
        hs, _ = pad_packed_sequence(hs, batch_first=True, total_length=max(frames, 1))
        # Back to T frames (drops the placeholder frame when T was 0), so that the attention
        # weights line up with the caller's input.
        hs = hs[:, :frames]
        return self.attention(hs, lengths)
