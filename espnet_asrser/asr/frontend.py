"""Log-mel filterbank frontend shared by feature dumping, training and inference.

The recipe dumps 40-dim log-mel features once so that training epochs do not
recompute them, while :class:`~espnet_asrser.bin.asrser_inference.Speech2Emotion` takes raw
waveforms. Both paths must see the *same* function, so this frontend accepts either:

* a waveform batch ``(B, T)``: computes log-mel features (ESPnet's STFT + mel filterbank);
* a feature batch ``(B, T, n_mels)``: returned unchanged (features dumped by this class).

Defaults follow the paper: 25 ms Hann window, 10 ms shift, 40 mel channels at 16 kHz.
"""

from typing import Optional, Tuple

import torch
from typeguard import typechecked

from espnet2.asr.frontend.default import DefaultFrontend


class LogMelFrontend(DefaultFrontend):
    """ESPnet's default frontend with paper defaults and a pass-through for dumped features."""

    @typechecked
    def __init__(
        self,
        fs: int = 16000,
        n_fft: int = 512,
        win_length: Optional[int] = 400,
        hop_length: int = 160,
        n_mels: int = 40,
        fmin: Optional[int] = None,
        fmax: Optional[int] = None,
    ):
        super().__init__(
            fs=fs,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            n_mels=n_mels,
            fmin=fmin,
            fmax=fmax,
            frontend_conf=None,
        )
        self.fs = fs
        self.frontend_type = "logmel"

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if input.dim() == 3:
            if input.size(-1) != self.n_mels:
                raise ValueError(
                    f"LogMelFrontend(n_mels={self.n_mels}) got precomputed features of "
                    f"dimension {input.size(-1)}: the dump and the model config disagree"
                )
            return input, input_lengths
        if input.dim() != 2:
            raise ValueError(
                f"LogMelFrontend expects (batch, samples) waveforms or (batch, frames, "
                f"{self.n_mels}) features, got shape {tuple(input.shape)}"
            )
        if bool((input_lengths == input.size(1)).all()):
            return super().forward(input, input_lengths)
        # The centred STFT reflect-pads at the end of the *padded* tensor, so the last
        # frames of a shorter utterance would see zeros instead of its own samples and
        # depend on what it is batched with. Computing each utterance on its own samples
        # keeps features batch-independent; the STFT is cheap next to the LSTMs.
        feats, lengths = zip(
            *(
                super(LogMelFrontend, self).forward(x[None, :n], n[None])
                for x, n in zip(input, input_lengths)
            )
        )
        feats = torch.nn.utils.rnn.pad_sequence([f[0] for f in feats], batch_first=True)
        return feats, torch.cat(lengths)
