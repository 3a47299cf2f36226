"""The paper's A2W encoder: a stack of BiLSTM layers over the stacked log-mel frames.

Same recurrence as ESPnet's ``RNNEncoder(use_projection=False, subsample=None)``, with two
differences: no final Linear+tanh projection (the paper feeds the BiLSTM outputs, 2 x 320,
to the attention), and no packed sequences, whose backward pass is 30-80x slower on CPU
(see :mod:`espnet_asrser.ser.masked_blstm`, which gives identical outputs on valid frames).
"""

from typing import Optional, Tuple

import torch
from typeguard import typechecked

from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet_asrser.ser.masked_blstm import MaskedBLSTM


class BLSTMEncoder(AbsEncoder):
    @typechecked
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 320,
        num_layers: int = 5,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.blstm = MaskedBLSTM(input_size, hidden_size, num_layers, dropout)
        self.dropout = torch.nn.Dropout(dropout)
        self._output_size = 2 * hidden_size

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        if prev_states is not None:
            raise ValueError("BLSTMEncoder is not a streaming encoder (prev_states given)")
        out = self.dropout(self.blstm(xs_pad, ilens))
        # Zero the padding so that nothing downstream can read another utterance's values.
        mask = torch.arange(out.size(1), device=out.device)[None, :] < ilens[:, None]
        return out.masked_fill(~mask[..., None], 0.0), ilens, None
