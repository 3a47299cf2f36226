"""Location-aware attention (Chorowski et al., 2015) as used by the paper's A2W decoder.

    f_l     = F * a_{l-1}                                   (convolution over the last alignment)
    e_{l,t} = z^T tanh(Z s_{l-1} + V h_t + U f_{l,t} + b)
    a_l     = softmax_t(e_l)        (padding frames masked)
    g_l     = sum_t a_{l,t} h_t

``V h_t + b`` does not depend on the decoding step, so callers compute it once per utterance
with :meth:`project_encoder` and pass it to every step.
"""

from typing import Tuple

import torch


class LocationAwareAttention(torch.nn.Module):
    def __init__(
        self,
        encoder_size: int,
        decoder_size: int,
        attention_size: int = 320,
        conv_channels: int = 10,
        conv_kernel: int = 100,
    ):
        super().__init__()
        self.encoder_proj = torch.nn.Linear(encoder_size, attention_size)  # V, b
        self.decoder_proj = torch.nn.Linear(decoder_size, attention_size, bias=False)  # Z
        self.location_conv = torch.nn.Conv1d(
            1, conv_channels, conv_kernel, padding=conv_kernel // 2, bias=False
        )  # F
        self.location_proj = torch.nn.Linear(conv_channels, attention_size, bias=False)  # U
        self.energy = torch.nn.Linear(attention_size, 1, bias=False)  # z

    def project_encoder(self, encoder_out: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, attention_size): the step-independent term V h_t + b."""
        return self.encoder_proj(encoder_out)

    @staticmethod
    def initial_weights(mask: torch.Tensor) -> torch.Tensor:
        """Uniform alignment over the valid frames, the usual a_0."""
        mask = mask.to(torch.get_default_dtype())
        return mask / mask.sum(dim=1, keepdim=True).clamp(min=1.0)

    def forward(
        self,
        encoder_out: torch.Tensor,
        encoder_proj: torch.Tensor,
        mask: torch.Tensor,
        decoder_state: torch.Tensor,
        prev_weights: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One attention step.

        Args:
            encoder_out: (B, T, D) encoder states h.
            encoder_proj: (B, T, A) output of :meth:`project_encoder`.
            mask: (B, T) bool, True on valid frames.
            decoder_state: (B, H) previous decoder state s_{l-1}.
            prev_weights: (B, T) previous alignment a_{l-1}.

        Returns:
            context g_l (B, D) and alignment a_l (B, T).
        """
        frames = encoder_out.size(1)
        location = self.location_conv(prev_weights.unsqueeze(1))[:, :, :frames]
        # The (B, T, A) sum is the step's largest tensor (memory-bound: B is batch x beam
        # when decoding): summed and squashed in place, in the order (Vh + b + Zs) + Uf.
        hidden = encoder_proj + self.decoder_proj(decoder_state).unsqueeze(1)
        hidden += self.location_proj(location.transpose(1, 2))
        energy = self.energy(hidden.tanh_()).squeeze(-1)
        energy = energy.masked_fill(~mask, torch.finfo(energy.dtype).min)
        weights = torch.softmax(energy, dim=-1)
        context = torch.bmm(weights.unsqueeze(1), encoder_out).squeeze(1)
        return context, weights
