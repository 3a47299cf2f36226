"""A stacked BiLSTM that ignores padding without packed sequences.

Packing is the usual way to keep padding out of a BiLSTM, but on CPU the backward pass of a
packed ``torch.nn.LSTM`` is 30-80x slower than the padded one (torch 2.11, measured with
``benchmarks/bench_train_step.py``). This module gives the same outputs as packing on every
valid frame at the padded speed:

* the forward direction reads the padded batch as it is: a valid frame only depends on the
  frames before it, and padding comes after;
* the backward direction reads each sequence reversed *within its own length*
  (``[x_{L-1} ... x_0, pad ...]``), so it too meets the padding only after the valid frames,
  and its outputs are reversed back the same way.

Values at padded positions are unspecified; callers mask them (the attention pooling does).
"""

import torch


def reverse_within_lengths(xs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each ``xs[b, :lengths[b]]`` in place of itself; padding stays where it is."""
    frames = xs.size(1)
    steps = torch.arange(frames, device=xs.device).expand(xs.size(0), frames)
    source = lengths.to(xs.device)[:, None] - 1 - steps
    source = torch.where(source >= 0, source, steps)
    return xs.gather(1, source[..., None].expand_as(xs))


class MaskedBLSTM(torch.nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.forward_lstms = torch.nn.ModuleList(
            torch.nn.LSTM(size, hidden_size, batch_first=True) for size in sizes
        )
        self.backward_lstms = torch.nn.ModuleList(
            torch.nn.LSTM(size, hidden_size, batch_first=True) for size in sizes
        )
        self.dropout = torch.nn.Dropout(dropout)
        self.input_size = input_size
        self.hidden_size = hidden_size

    def forward(self, xs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) padded input -> (B, T, 2 * hidden), valid frames as with packing."""
        if xs.size(1) == 0:  # torch's LSTM rejects empty sequences
            return xs.new_zeros(xs.size(0), 0, 2 * self.hidden_size)
        for layer, (forward, backward) in enumerate(zip(self.forward_lstms, self.backward_lstms)):
            if layer > 0:
                xs = self.dropout(xs)  # between layers, as torch.nn.LSTM(dropout=...)
            ahead, _ = forward(xs)
            behind, _ = backward(reverse_within_lengths(xs, lengths))
            xs = torch.cat([ahead, reverse_within_lengths(behind, lengths)], dim=-1)
        return xs
