"""One SER branch: a BiLSTM over a feature sequence, pooled by structured self-attention.

The paper (Feng et al. 2020, §2.1 and §5.3) runs the same branch on two inputs: 40-dim
log-mel frames (acoustic branch) and 320-dim ASR decoder states, one per word (ASR-feature
branch). Each is a 2-layer BiLSTM with 256 cells per direction and dropout 0.2, followed by
8-head self-attention, giving an 8 x 512 = 4096-dim vector.

Deviation from the authors: their code masked neither the BiLSTM (padded frames entered the
recurrence, and the backward direction started from the padding) nor the attention softmax.
Here the BiLSTM never reads padding before a valid frame (:mod:`espnet_asrser.ser.masked_blstm`,
equivalent to packed sequences but several times faster on CPU) and the attention masks it,
so an utterance's output does not depend on how much padding its batch adds.

A sequence of length 0 (e.g. an empty ASR hypothesis) pools to the zero vector with all-zero
attention weights.
"""

from typing import Tuple

import torch

from espnet_asrser.ser.attention import StructuredSelfAttention
from espnet_asrser.ser.masked_blstm import MaskedBLSTM


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
        self.blstm = MaskedBLSTM(input_size, hidden_size, num_layers, dropout)
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
        if lengths.numel() > 0 and (int(lengths.min()) < 0 or int(lengths.max()) > frames):
            raise ValueError(f"lengths must lie in [0, {frames}], got {lengths.tolist()}")
        return self.attention(self.blstm(xs, lengths), lengths)
