"""Reference networks and writers of files in the authors' released formats, shared by the tests of
released detectors. Written from the papers and the releases' key names; they share no code with stigbench."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50


def randomise(module: nn.Module, seed: int) -> nn.Module:
    """Random weights of a sensible scale and BatchNorm statistics with a positive variance."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / math.sqrt(fan_in))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return module.eval()


# -- an NPR reference written from the paper and the release's names, sharing no code with stigbench --
class RefBottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int) -> None:
        super().__init__()
        cout = 4 * mid
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class RefNPR(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = nn.Sequential(RefBottleneck(64, 64, 1), *[RefBottleneck(256, 64, 1) for _ in range(2)])
        self.layer2 = nn.Sequential(RefBottleneck(256, 128, 2), *[RefBottleneck(512, 128, 1) for _ in range(3)])
        self.fc1 = nn.Linear(512, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Nearest down by 2 then up by 2 copies the top-left pixel of every 2×2 cell over the cell.
        coarse = x[..., ::2, ::2].repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
        y = self.conv1((x - coarse) * 2 / 3)
        y = F.max_pool2d(F.relu(self.bn1(y)), kernel_size=3, stride=2, padding=1)
        y = self.layer2(self.layer1(y))
        return self.fc1(y.mean(dim=(-2, -1)))


def cnndetection_reference(seed: int = 1) -> nn.Module:
    """A torchvision ResNet-50 with one logit and random weights: what CNNDetection released."""
    return randomise(resnet50(weights=None, num_classes=1), seed)


def write_cnndetection(path: Path, model: nn.Module) -> Path:
    """``model`` saved as CNNDetection saved its checkpoints (``{"model": ..., "total_steps": ...}``)."""
    torch.save({"model": model.state_dict(), "total_steps": 1234}, path)
    return path


def write_npr(path: Path, model: nn.Module) -> Path:
    """``model`` saved as NPR saved its checkpoints: the bare state dict."""
    torch.save(model.state_dict(), path)
    return path


IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)


def reference_p_fake(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``sigmoid(model(ImageNet-normalised images))`` as both authors' test code computes P(fake)."""
    with torch.no_grad():
        return torch.sigmoid(model((images - IMAGENET_MEAN) / IMAGENET_STD)).reshape(-1).double()
