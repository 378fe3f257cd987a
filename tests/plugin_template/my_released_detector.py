"""``my-released``: a template plug-in for a model you trained yourself and released as a weights file.

What it shows: a ``CNNDetector`` subclass that a run can *score with a file* instead of training
(score-only, like ``wang2020``/``npr`` with ``checkpoint=``). The base class owns the rest: scoring
(``P(fake) = sigmoid(logit)``), the torch path of white-box attacks, precision, device and save/load
(a score-only detector saves no weights; it reloads the file, whose SHA-256 must not have changed).

Choice made here: without ``checkpoint`` the detector trains like any CNN detector, on the same
network (``build_model``), so one file gives both the network trained by the run and your released
weights, side by side: ``--detectors my-released,my-released@released --set
my-released@released.checkpoint=weights.pt``.

Run it (never trained: ``trained_on`` is ``released <sha256[:12]>`` in every table)::

    python bench.py run --detector-plugin path/to/my_released_detector.py --detectors my-released,durall \\
        --set my-released.checkpoint=weights.pt

Score a folder at the authors' threshold (0.5)::

    python bench.py detect --detector-plugin path/to/my_released_detector.py --detector my-released \\
        --set checkpoint=weights.pt --input DIR

``weights.pt`` is ``torch.save(tiny_net().state_dict(), "weights.pt")`` after your own training.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from stigbench import CNNDetector, register_detector
from stigbench.detection.released import as_state_dict, load_strict, read_checkpoint


def tiny_net() -> nn.Sequential:
    """Your architecture: three strided 3×3 convolutions on RGB, global average pooling, one logit."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 1),
    )


@register_detector("my-released", family="cnn", domain="rgb", paper="your paper here (example plug-in)",
                   default=False, description="template plug-in: a small CNN scored from your own weights file")
class MyReleased(CNNDetector):
    file_params = ("checkpoint",)  # made absolute by the plan, SHA-256 in the fit key: a changed file is a new fit
    authors_threshold = 0.5  # the P(fake) threshold your own test code uses; reported beside the run's

    def __init__(self, checkpoint: str | None = None, *, epochs: int = 10, num_outputs: int = 1,
                 precision: str = "fp32", seed: int = 0, device: str = "auto", **train) -> None:
        super().__init__(epochs=epochs, num_outputs=num_outputs, precision=precision, seed=seed, device=device,
                         **train)
        self.checkpoint = checkpoint

    # released_checkpoint() comes from the base: the ``checkpoint`` of file_params. A path: fit() loads it
    # and trains nothing; None: the run trains the network.

    def check_params(self) -> None:
        if self.checkpoint and self.num_outputs != 1:
            raise ValueError(f"checkpoint= holds a one-logit network: leave num_outputs=1 (got {self.num_outputs})")
        super().check_params()  # the plan calls this: it loads the file once, so a bad one fails before any image

    def load_released(self, path: Path) -> nn.Module:
        """Your file: a plain state dict of :func:`tiny_net`, loaded strictly (no key missing or unused, a
        file that is no checkpoint named as such; ``torch.load(weights_only=True)`` underneath)."""
        return load_strict(tiny_net(), as_state_dict(read_checkpoint(path), path, "the file"), path)

    def build_model(self, image_size: int) -> nn.Module:
        net = tiny_net()  # the released architecture, randomly initialised, when the run trains it
        if self.num_outputs != 1:
            net[-1] = nn.Linear(32, self.num_outputs)
        return net

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() * 2.0 - 1.0  # whatever your own test code fed the network: here [0, 1] -> [-1, 1]
