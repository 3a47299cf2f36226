"""Structured multi-head self-attention pooling (Lin et al., 2017), as used by Feng et al. 2020.

Each head i scores every frame with a small MLP and pools the sequence with the resulting
weights::

    a_i    = softmax_t( w2_i . tanh(W1 h_t) )       (one distribution over time per head)
    head_i = sum_t a_{i,t} h_t
    M      = concat(head_1, ..., head_n)            (B, heads * input_size)

W1 is shared by all heads; each head owns one row of w2. The paper uses 512 attention units
and 8 heads on top of a BiLSTM with 2 x 256 outputs, so M has 4096 dimensions per branch.

Unlike the authors' code, padding is masked: frames at t >= length get exactly zero weight,
so appending padding to an utterance does not change its pooled vector. An utterance of
length 0 has no frame to attend to; its weights are all zero and its pooled vector is the
zero vector (no NaN, and no gradient flows through it).
"""

from typing import Tuple

import torch


class StructuredSelfAttention(torch.nn.Module):
    """Pool a padded batch of sequences into one fixed-size vector per sequence.

    Args:
        input_size: dimension D of each frame h_t.
        attention_size: hidden units of the scoring MLP (rows of W1).
        heads: number of attention distributions (rows of w2).
    """

    def __init__(self, input_size: int, attention_size: int = 512, heads: int = 8):
        super().__init__()
        if input_size <= 0 or attention_size <= 0 or heads <= 0:
            raise ValueError(
                "input_size, attention_size and heads must be positive, got "
                f"{input_size}, {attention_size}, {heads}"
            )
        self.input_size = input_size
        self.heads = heads
        self.w1 = torch.nn.Linear(input_size, attention_size)
        # A per-head bias would add the same constant to every frame's score, which the
        # softmax over time cancels: it could never change the weights.
        self.w2 = torch.nn.Linear(attention_size, heads, bias=False)

    def output_size(self) -> int:
        return self.heads * self.input_size

    def forward(
        self, xs: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Attend over the valid frames of each sequence.

        Args:
            xs: (B, T, D) padded frames; values beyond each length are ignored.
            lengths: (B,) number of valid frames per sequence, 0 <= length <= T.

        Returns:
            pooled: (B, heads * D), the concatenated weighted sums (zero for length 0).
            weights: (B, heads, T); each row sums to 1 over the valid frames, is exactly 0
                on padding, and is all zero for a sequence of length 0.
        """
        if xs.dim() != 3 or xs.size(2) != self.input_size:
            raise ValueError(
                f"expected xs of shape (B, T, {self.input_size}), got {tuple(xs.shape)}"
            )
        if lengths.shape != (xs.size(0),):
            raise ValueError(
                f"expected lengths of shape ({xs.size(0)},), got {tuple(lengths.shape)}"
            )
        batch, frames, _ = xs.shape
        if batch > 0 and (int(lengths.min()) < 0 or int(lengths.max()) > frames):
            raise ValueError(
                f"lengths must lie in [0, {frames}], got {lengths.tolist()}"
            )

        valid = torch.arange(frames, device=xs.device) < lengths.to(xs.device)[:, None]
        valid = valid[:, None, :]  # (B, 1, T), broadcast over heads

        scores = self.w2(torch.tanh(self.w1(xs))).transpose(1, 2)  # (B, heads, T)
        # The most negative finite value rather than -inf: a row with no valid frame then
        # gives a finite (uniform) softmax instead of NaN, and the masked_fill below zeroes
        # it. For rows with a valid frame, exp(finfo.min - max) underflows to exactly 0.
        scores = scores.masked_fill(~valid, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1).masked_fill(~valid, 0.0)

        pooled = torch.bmm(weights, xs)  # (B, heads, D)
        return pooled.reshape(batch, self.heads * self.input_size), weights
