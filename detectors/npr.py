"""``npr``: neighbouring-pixel relationships (NPR) fed to a truncated ResNet, trained from scratch.

Tan, Liu, Zhao, Wei, Gu, Liu, Wei, "Rethinking the Up-Sampling Operations in CNN-based Generative
Network for Generalizable Deepfake Detection", CVPR 2024 (arXiv 2312.10461). Up-sampling layers make
the pixels of each 2×2 block of a generated image depend on one another; NPR exposes that local
structure by subtracting from the image its nearest-neighbour ×0.5 down- then ×2 up-sampled copy:

    NPR(x) = x − up₂(down₂(x)),   down₂(x)[i, j] = x[2i, 2j],   up₂(y)[i, j] = y[⌊i/2⌋, ⌊j/2⌋]

so every 2×2 block of NPR holds the differences of its pixels to the block's top-left pixel (that
pixel itself is 0), and NPR is identically zero on an image made of constant 2×2 blocks.

Network (the paper's, ``size="paper"``): NPR of the ImageNet-normalised image, scaled by 2/3 →
conv3×3 stride 2 (3→64) → BN → ReLU → max-pool 3×3 stride 2 → ResNet-50 ``layer1`` (3 bottlenecks,
64→256) → ``layer2`` (4 bottlenecks, stride 2, 256→512) → global average pool → linear → one logit
(binary cross-entropy), trained from random initialisation with Adam, lr 2e-4, batch 32. ResNet-50's
``layer3``/``layer4`` are dropped.

Differences from the paper:

* ``size="small"`` (the default) keeps the same layout (stride-2 3×3 stem, max-pool, two bottleneck
  stages, average pool, one logit) at a quarter of the width and one bottleneck per stage (stem 16
  channels, stages 16→64 and 32→128; 30 k parameters instead of 1.44 M), so that it trains on the
  demo set (576 training images of 64²) in well under a minute on two CPU cores. ``size="paper"`` is
  the paper's network.
* Training: Adam with lr 1e-3 (paper 2e-4) for at most 20 epochs (paper ≈ 50 epochs on 4 ProGAN classes
  with lr ×0.9 every 10 epochs) with early stopping on the validation loss, as the other CNN detectors
  here; ``size="paper"`` keeps lr 1e-3 too (set ``lr=2e-4`` for the paper's value). No augmentation
  (the paper also trains without blur/JPEG).
* Input at native resolution (the paper's 224² crops would need ≥ 224² images); images whose side is
  odd are handled by the same nearest-neighbour rule (the last row/column's block is cut off).

**As released** (``checkpoint=PATH``, score-only, with ``size="paper"``): the authors' file (a bare
state dict with the names ``conv1``, ``bn1``, ``layer1``, ``layer2``, ``fc1``) is read strictly by
:func:`stigbench.detection.released.load_npr` and its tensors given to this network under its own
names (``conv1`` → ``0``, ``bn1`` → ``1``, ``layer1`` → ``4``, ``layer2`` → ``5``, ``fc1`` → ``8``), so
runs saved before keep loading. ``P(fake) = sigmoid(logit)``; the authors' test code calls an image
fake at ``P(fake) > 0.5``, reported beside the run's threshold. Preprocessing: ImageNet mean/std and
the residual ×2/3 as above; their ``test.py`` resizes most test sets to 256² (bilinear) and never
crops, whereas here the harness crops (or, with ``--resize``, resizes) to the dataset's ``--size`` and
the network sees that: no resampling, which would blur the very 2×2 structure NPR reads. Odd sides,
which the authors' code cannot take, use the rule above.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from stigbench.detection.base import check_choice
from stigbench.detection.cnn import CNNDetector
from stigbench.detection.registry import register_detector

PAPER = ("Tan et al., Rethinking the Up-Sampling Operations in CNN-based Generative Network for "
         "Generalizable Deepfake Detection (NPR), CVPR 2024, arXiv 2312.10461")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# size -> (stem width, bottlenecks in layer1, bottlenecks in layer2); stage widths are width and 2*width,
# bottleneck expansion 4 (ResNet-50: 64, 3, 4 -> 256 and 512 channels out).
SIZES = {"small": (16, 1, 1), "paper": (64, 3, 4)}


def imagenet_normalise(images: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` per channel with ImageNet statistics, as both papers' data loaders do."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).reshape(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).reshape(1, 3, 1, 1)
    return (images - mean) / std


def npr_residual(images: torch.Tensor) -> torch.Tensor:
    """``x − up₂(down₂(x))`` with nearest-neighbour resampling, for ``(..., H, W)`` tensors (any H, W).

    Equal to ``x − interpolate(interpolate(x, scale_factor=0.5, mode="nearest"), scale_factor=2,
    mode="nearest")`` for even sides.
    """
    h, w = images.shape[-2:]
    coarse = images[..., ::2, ::2]
    up = coarse.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)[..., :h, :w]
    return images - up


def resnet_stage(inplanes: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """A ResNet-50 stage: ``blocks`` bottlenecks of width ``planes`` (output ``4·planes``), the first with
    ``stride`` and a 1×1 projection shortcut when the shape changes (torchvision's ``_make_layer``)."""
    out = planes * Bottleneck.expansion
    down = None
    if stride != 1 or inplanes != out:
        down = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
    layers = [Bottleneck(inplanes, planes, stride, down)]
    layers += [Bottleneck(out, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def init_resnet(model: nn.Module) -> nn.Module:
    """He (fan-out) initialisation of the convolutions, unit/zero batch-norm, as torchvision's ResNet."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def npr_net(size: str = "small", num_outputs: int = 1) -> nn.Sequential:
    """The NPR classifier (input: the NPR map) at ``size`` ``small`` or ``paper`` (see the module docstring)."""
    check_choice("size", size, tuple(SIZES))
    width, blocks1, blocks2 = SIZES[size]
    return init_resnet(nn.Sequential(
        nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
        resnet_stage(width, width, blocks1),
        resnet_stage(width * Bottleneck.expansion, 2 * width, blocks2, stride=2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(2 * width * Bottleneck.expansion, num_outputs),
    ))


@register_detector("npr", family="cnn", domain="rgb", paper=PAPER, default=False,
                   description="NPR residual (x minus its nearest x0.5-down-x2-up copy) into a truncated ResNet")
class NPR(CNNDetector):
    file_params = ("checkpoint",)
    authors_threshold = 0.5

    def __init__(self, size: str = "small", checkpoint: str | None = None, *, epochs: int = 20, batch_size: int = 32, lr: float = 1e-3,
                 num_outputs: int = 1, precision: str = "fp32", seed: int = 0, device: str = "auto",
                 **train) -> None:
        check_choice("size", size, tuple(SIZES))
        super().__init__(epochs=epochs, batch_size=batch_size, lr=lr, num_outputs=num_outputs,
                         precision=precision, seed=seed, device=device, **train)
        self.size = size
        self.checkpoint = checkpoint

    def check_params(self) -> None:
        if self.checkpoint and (self.size != "paper" or self.num_outputs != 1):
            raise ValueError("checkpoint= loads the released NPR network: set size=paper (and num_outputs=1) with it "
                             f"(got size={self.size!r}, num_outputs={self.num_outputs})")
        super().check_params()

    def load_released(self, path: Path) -> nn.Module:
        from stigbench.detection.released import load_npr, npr_sequential_state

        net = npr_net("paper", 1)
        net.load_state_dict(npr_sequential_state(load_npr(path).state_dict()))
        return net.eval()

    def build_model(self, image_size: int) -> nn.Module:
        return npr_net(self.size, self.num_outputs)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        # The paper scales the NPR map by 2/3 before the first convolution.
        return npr_residual(imagenet_normalise(images.float())) * (2.0 / 3.0)
