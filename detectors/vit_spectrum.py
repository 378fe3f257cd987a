"""``vit-spectrum``: a vision transformer on log-magnitude spectra.

Lee, Jung, Seo, "Spectrum Translation for Refinement of Image Generation (STIG) Based on Contrastive
Learning and Spectral Filter Profile", AAAI 2024 (arXiv 2403.05093): its second detector, an
ImageNet ViT-B/16 (Dosovitskiy et al., ICLR 2021) trained on the same input as ``spectrum-cnn``
(:func:`stigbench.measures.spectrum.spectrum_image`, ``[-1, 1]``, 3 channels).

CPU-sized by default: ``vit_tiny_patch16_224`` (width 192, 12 blocks) at the benchmark's image size,
with patches of ``image_size // 8`` pixels (8 at 64², so 64 tokens; ViT-B/16 at 224² has 196), two
logits, AdamW. Even so it is the slowest detector on a CPU (about 10 minutes on the 64² demo set on
two shared cores); ``depth=4`` builds four blocks instead of twelve and trains several times faster.
Random initialisation unless ``weights=PATH`` is given or ``pretrained="auto"`` finds the weights in
timm's local cache (position embeddings and patch projection are then resampled by timm's checkpoint
filter); nothing is downloaded. ``backbone="vit_base_patch16_224", patch_size=16`` is the paper's
network.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from stigbench.detection.cnn import CNNDetector, start_weights
from stigbench.detection.registry import register_detector
from stigbench.measures.spectrum import spectrum_image

PAPER = ("Lee, Jung, Seo, STIG, AAAI 2024, arXiv 2403.05093 (its ViT spectrum detector); "
         "ViT: Dosovitskiy et al., ICLR 2021")


@register_detector("vit-spectrum", family="cnn", domain="spectrum", paper=PAPER, default=False,
                   description="timm ViT (tiny, patch S/8) on log-magnitude spectra")
class ViTSpectrum(CNNDetector):
    def __init__(self, backbone: str = "vit_tiny_patch16_224", patch_size: int | None = None, depth: int | None = None,
                 pretrained: str = "none", weights: str | None = None, *, epochs: int = 20,
                 optimizer: str = "adamw", lr: float = 5e-4, weight_decay: float = 0.05, lr_decay: float = 0.9,
                 precision: str = "fp32", seed: int = 0, device: str = "auto", **train) -> None:
        super().__init__(epochs=epochs, optimizer=optimizer, lr=lr, weight_decay=weight_decay, lr_decay=lr_decay,
                         precision=precision, seed=seed, device=device, **train)
        self.backbone = backbone
        self.patch_size = patch_size
        self.depth = depth
        self.pretrained = pretrained
        self.weights = weights

    def _create_kwargs(self, image_size: int) -> dict[str, Any]:
        patch = self.patch_size or max(4, image_size // 8)
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch}")
        kwargs = {"img_size": image_size, "patch_size": patch, "num_classes": self.num_outputs}
        return kwargs if self.depth is None else {**kwargs, "depth": self.depth}

    def build_model(self, image_size: int) -> nn.Module:
        import timm

        return timm.create_model(self.backbone, pretrained=False, **self._create_kwargs(image_size))

    def init_weights(self, model: nn.Module, image_size: int) -> dict[str, Any]:
        return start_weights(model, self.backbone, pretrained=self.pretrained, weights=self.weights,
                             **self._create_kwargs(image_size))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return spectrum_image(images).float()
