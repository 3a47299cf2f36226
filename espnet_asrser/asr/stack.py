"""Non-overlapping frame stacking, the paper's only down-sampling of the ASR input.

Every ``stack`` consecutive frames are concatenated: 40-dim log-mel at 100 Hz becomes
120-dim at 33.3 Hz for ``stack=3``. A trailing partial group is zero-padded into one more
output frame rather than dropped, so no speech at the end of an utterance is lost; output
lengths are ``ceil(length / stack)`` for every input length (>= 1 frame for length >= 1).

ESPnet's ``RNNEncoder(subsample=...)`` instead *skips* frames, which discards 2/3 of the
input; that is why this is a pre-encoder of its own.
"""

from typing import Tuple

import torch
from typeguard import typechecked

from espnet2.asr.preencoder.abs_preencoder import AbsPreEncoder


class StackPreEncoder(AbsPreEncoder):
    """Concatenate ``stack`` consecutive frames without overlap."""

    @typechecked
    def __init__(self, input_size: int, stack: int = 3):
        super().__init__()
        if stack < 1:
            raise ValueError(f"stack must be >= 1, got {stack}")
        self.input_size = input_size
        self.stack = stack

    def output_size(self) -> int:
        return self.input_size * self.stack

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        batch, frames, dim = input.shape
        out_frames = -(-frames // self.stack)
        pad = out_frames * self.stack - frames
        if pad:
            input = torch.nn.functional.pad(input, (0, 0, 0, pad))
        output = input.reshape(batch, out_frames, dim * self.stack)
        output_lengths = torch.div(
            input_lengths + self.stack - 1, self.stack, rounding_mode="floor"
        )
        # Frames past an utterance's end may hold another utterance's padding values
        # (not always zero for dumped features); zero them so that the stacked last frame
        # of every utterance is the same whatever it is batched with.
        mask = torch.arange(frames + pad, device=input.device)[None, :] < input_lengths[:, None]
        output = output * mask.reshape(batch, out_frames, self.stack, 1).expand(
            -1, -1, -1, dim
        ).reshape(batch, out_frames, dim * self.stack).to(output.dtype)
        return output, output_lengths
