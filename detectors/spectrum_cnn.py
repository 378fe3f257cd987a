"""``spectrum-cnn``: the STIG paper's small CNN on log-magnitude spectra.

Lee, Jung, Seo, "Spectrum Translation for Refinement of Image Generation (STIG) Based on Contrastive
Learning and Spectral Filter Profile", AAAI 2024 (arXiv 2403.05093): the detector of its
evaluation. Input: :func:`stigbench.measures.spectrum.spectrum_image`, i.e. ``log1p|fftshift(fft2(x))|``
min-max scaled per image to ``[-1, 1]``, 3 channels. Network: conv3×3 3→3, ReLU, conv3×3 3→8,
ReLU, avg-pool 2, conv3×3 8→16, ReLU, avg-pool 2, conv3×3 16→32, ReLU, flatten, linear → 2 logits
(padding 1, so the linear layer sees ``32·(S/4)²`` features).

The paper trains with SGD (momentum 0.9), lr 2e-4 decayed ×0.95 per epoch, 20 epochs, batch 32,
cross-entropy: that is ``spectrum-cnn-paper``. On a few hundred 64² images that recipe hardly moves
from chance in 20 epochs (about 200 small SGD steps), so ``spectrum-cnn`` keeps the network and the
loss and trains with Adam, lr 1e-3 (same decay and epochs), keeping the epoch with the best
validation loss.
"""

from __future__ import annotations

import torch
from torch import nn

from stigbench.detection.cnn import CNNDetector
from stigbench.detection.registry import register_detector
from stigbench.measures.spectrum import spectrum_image

PAPER = "Lee, Jung, Seo, STIG, AAAI 2024, arXiv 2403.05093 (its spectrum CNN detector)"


def spectrum_cnn(image_size: int, num_outputs: int = 2) -> nn.Sequential:
    """The STIG paper's detector network for ``image_size``² spectra."""
    side = image_size // 4
    return nn.Sequential(
        nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(),
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * side * side, num_outputs),
    )


@register_detector("spectrum-cnn", family="cnn", domain="spectrum", paper=PAPER,
                   description="STIG's small CNN on log-magnitude spectra (Adam 1e-3)")
class SpectrumCNN(CNNDetector):
    def __init__(self, *, epochs: int = 20, batch_size: int = 32, optimizer: str = "adam", lr: float = 1e-3,
                 lr_decay: float = 0.95, precision: str = "fp32", seed: int = 0, device: str = "auto",
                 **train) -> None:
        super().__init__(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, lr_decay=lr_decay,
                         precision=precision, seed=seed, device=device, **train)

    def build_model(self, image_size: int) -> nn.Module:
        return spectrum_cnn(image_size, self.num_outputs)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return spectrum_image(images).float()


@register_detector("spectrum-cnn-paper", family="cnn", domain="spectrum", paper=PAPER, default=False,
                   description="the same CNN with the paper's recipe: SGD 2e-4, x0.95/epoch, 20 epochs")
class SpectrumCNNPaper(SpectrumCNN):
    def __init__(self, *, epochs: int = 20, batch_size: int = 32, optimizer: str = "sgd", lr: float = 2e-4,
                 lr_decay: float = 0.95, patience: int | None = None, precision: str = "fp32", seed: int = 0,
                 device: str = "auto", **train) -> None:
        super().__init__(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, lr_decay=lr_decay,
                         patience=patience, precision=precision, seed=seed, device=device, **train)
