"""Emotion classifier head: pooled branch vector(s) -> emotion logits.

Feng et al. 2020 concatenate the acoustic and ASR-feature branch outputs (2 x 4096) and
classify with FC 2048 -> ReLU -> FC 4 -> softmax. The softmax is left to the loss
(cross-entropy on logits is more stable) and to inference.
"""

import torch


class EmotionClassifier(torch.nn.Module):
    """Two-layer MLP producing unnormalised emotion scores.

    Args:
        input_size: dimension of the (concatenated) pooled vector.
        num_classes: number of emotion classes.
        hidden_size: units of the hidden layer.
        dropout: dropout on the hidden activations (the paper uses none).
    """

    def __init__(
        self, input_size: int, num_classes: int, hidden_size: int = 2048, dropout: float = 0.0
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"an emotion classifier needs at least 2 classes, got {num_classes}")
        self.num_classes = num_classes
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(input_size, hidden_size),
            torch.nn.ReLU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden_size, num_classes),
        )

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        """Map (B, input_size) pooled vectors to (B, num_classes) logits."""
        return self.layers(xs)
