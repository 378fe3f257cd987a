"""``freqnet``: high-frequency representations and frequency-space convolutions in a light ResNet.

Tan, Zhao, Wei, Gu, Liu, Wei, "Frequency-Aware Deepfake Detection: Improving Generalizability
through Frequency Space Learning" (FreqNet), AAAI 2024 (arXiv 2403.07240). The network is made to
look at high frequencies only, of the image and of its intermediate features, and to learn in the
frequency domain as well as the spatial one. Its pieces (all FFTs orthonormal, in fp32):

* **high-frequency representation of the image and of features** (:func:`high_pass_spatial`): 2-D FFT
  over (H, W), the centred low-frequency block ``|k_y| < H/4, |k_x| < W/4`` (``scale=4``) set to 0,
  inverse FFT, real part, ReLU. A constant image (only the DC term) becomes exactly 0.
* **channel high-pass** (:func:`high_pass_channels`): the same along the channel axis of a feature map
  (1-D FFT over C, the central ``C/2`` channel frequencies set to 0).
* **frequency convolutional layer** (:class:`FrequencyConv`): 2-D FFT of the features, one 1×1
  convolution on the amplitude spectrum and one on the phase spectrum, recombined
  (``A′·e^{iφ′}``), inverse FFT, real part, ReLU.

Network (the paper's, ``size="paper"``, width ``w = 64``; ImageNet-normalised RGB in):
high-pass(image) → 1×1 conv 3→w → ReLU → channel high-pass → FCL(w);
high-pass → 1×1 conv w→w stride 2 → ReLU → channel high-pass → FCL(w); max-pool 3×3 stride 2;
ResNet-50 ``layer1`` (3 bottlenecks, w→4w); 1×1 conv 4w→4w → ReLU → FCL(4w);
high-pass → 1×1 conv 4w→4w stride 2 → ReLU → FCL(4w); ResNet-50 ``layer2`` (4 bottlenecks, stride 2,
4w→8w); global average pool → linear → one logit (binary cross-entropy); 1.85 M parameters.

Differences from the paper:

* ``size="small"`` (the default) is the same layout at ``w = 8`` with one bottleneck per ResNet stage
  (14 k parameters instead of 1.85 M), so that it trains on the demo set (576 training images of 64²) in well
  under a minute on two CPU cores; ``size="paper"`` is the paper's size.
* ``fcl="amplitude-phase"`` (default) convolves amplitude and phase as the paper describes; the
  authors' released code convolves the real and imaginary parts instead: ``fcl="real-imag"``. Since
  the convolutions are 1×1 (pointwise in frequency), the code's ``fftshift`` around them is left out:
  it changes nothing. Where the amplitude is 0 the phase is taken as 0 (with zero gradient).
* The spatial 1×1 convolutions start from He initialisation like the ResNet convolutions (the code
  draws them from ``N(0, 1)``).
* Training: Adam, lr 1e-3 (paper 2e-4), at most 20 epochs with early stopping on the validation loss
  as the other CNN detectors here (paper: ProGAN 4 classes, batch 32, lr decayed ×0.9 every 10 epochs),
  no augmentation, input at native resolution (the paper crops 224²).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from stigbench.detection.base import check_choice
from stigbench.detection.cnn import CNNDetector
from stigbench.detection.registry import register_detector
from stigbench.detectors.npr import imagenet_normalise, init_resnet, resnet_stage

PAPER = ("Tan et al., Frequency-Aware Deepfake Detection: Improving Generalizability through Frequency "
         "Space Learning (FreqNet), AAAI 2024, arXiv 2403.07240")
# size -> (width w, bottlenecks in layer1, bottlenecks in layer2)
SIZES = {"small": (8, 1, 1), "paper": (64, 3, 4)}
FCL_MODES = ("amplitude-phase", "real-imag")


def _centre_band(n: int, scale: int) -> slice:
    """Indices of the centred low band ``[n/2 - n/scale, n/2 + n/scale)`` of an ``fftshift``-ed axis."""
    return slice(n // 2 - n // scale, n // 2 + n // scale)


def _real_part_filter(mask: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """``(M(k) + M(−k)) / 2`` for a mask in FFT order: for a real signal, the real part of
    ``ifft(fft(x)·M)`` equals ``ifft(fft(x)·that)``, whose spectrum is Hermitian, so it can go
    through ``rfft``/``irfft`` (half the work) with the same result."""
    flipped = mask
    for d in dims:
        flipped = torch.roll(torch.flip(flipped, dims=(d,)), shifts=1, dims=d)
    return (mask + flipped) / 2


def _low_band_mask(shape: tuple[int, ...], scale: int, device: torch.device) -> torch.Tensor:
    """1 everywhere but the centred low-frequency block of ``fftshift`` order, in FFT order (DC at 0)."""
    mask = torch.ones(shape, device=device)
    mask[tuple(_centre_band(n, scale) for n in shape)] = 0.0
    return torch.fft.ifftshift(mask)


def high_pass_spatial(x: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """ReLU of the real part of ``x`` without its low spatial frequencies (``(N, C, H, W)``, fp32 out).

    The same as ``relu(ifft2(ifftshift(fftshift(fft2(x)) · block mask)).real)``, computed with real FFTs.
    """
    h, w = x.shape[-2:]
    filt = _real_part_filter(_low_band_mask((h, w), scale, x.device), (0, 1))[:, : w // 2 + 1]
    spec = torch.fft.rfft2(x.float(), norm="ortho") * filt
    return torch.relu(torch.fft.irfft2(spec, s=(h, w), norm="ortho"))


def high_pass_channels(x: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """ReLU of the real part of ``x`` without its low frequencies along the channel axis (dim 1)."""
    c = x.shape[1]
    filt = _real_part_filter(_low_band_mask((c,), scale, x.device), (0,))[: c // 2 + 1]
    spec = torch.fft.rfft(x.float(), dim=1, norm="ortho") * filt.reshape(1, -1, 1, 1)
    return torch.relu(torch.fft.irfft(spec, n=c, dim=1, norm="ortho"))


def _polar(spec: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Amplitude and phase of a complex tensor, with finite gradients at 0 (phase 0 there)."""
    re, im = spec.real, spec.imag
    power = re * re + im * im
    small = power < eps
    amp = torch.where(small, torch.zeros_like(power), torch.sqrt(torch.where(small, torch.ones_like(power), power)))
    phase = torch.where(small, torch.zeros_like(power),
                        torch.atan2(torch.where(small, torch.zeros_like(im), im),
                                    torch.where(small, torch.ones_like(re), re)))
    return amp, phase


class FrequencyConv(nn.Module):
    """FFT → 1×1 convolutions on (amplitude, phase) or (real, imaginary) → inverse FFT → real → ReLU."""

    def __init__(self, channels: int, mode: str = "amplitude-phase") -> None:
        super().__init__()
        check_choice("fcl", mode, FCL_MODES)
        self.mode = mode
        self.conv_a = nn.Conv2d(channels, channels, 1, bias=False)  # amplitude (or real part)
        self.conv_b = nn.Conv2d(channels, channels, 1, bias=False)  # phase (or imaginary part)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Amplitude (or real part) stays even and phase (or imaginary part) odd in k under a 1×1
        # convolution without bias, so the output spectrum stays Hermitian: real FFTs give the real part.
        h, w = x.shape[-2:]
        spec = torch.fft.rfft2(x.float(), norm="ortho")
        if self.mode == "real-imag":
            out = torch.complex(self.conv_a(spec.real).float(), self.conv_b(spec.imag).float())
        else:
            amp, phase = _polar(spec)
            amp, phase = self.conv_a(amp).float(), self.conv_b(phase).float()
            # A'·e^{iφ'}; torch.polar would reject the negative amplitudes a convolution can give.
            out = torch.complex(amp * torch.cos(phase), amp * torch.sin(phase))
        return torch.relu(torch.fft.irfft2(out, s=(h, w), norm="ortho"))


class FreqNetModel(nn.Module):
    """FreqNet's network at width ``width`` with ``blocks`` bottlenecks per ResNet stage."""

    def __init__(self, width: int = 16, blocks: tuple[int, int] = (1, 1), fcl: str = "amplitude-phase",
                 num_outputs: int = 1, scale: int = 4) -> None:
        super().__init__()
        w, w4 = width, width * Bottleneck.expansion
        self.scale = scale
        self.conv1 = nn.Conv2d(3, w, 1)
        self.fcl1 = FrequencyConv(w, fcl)
        self.conv2 = nn.Conv2d(w, w, 1, stride=2)
        self.fcl2 = FrequencyConv(w, fcl)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = resnet_stage(w, w, blocks[0])
        self.conv3 = nn.Conv2d(w4, w4, 1)
        self.fcl3 = FrequencyConv(w4, fcl)
        self.conv4 = nn.Conv2d(w4, w4, 1, stride=2)
        self.fcl4 = FrequencyConv(w4, fcl)
        self.layer2 = resnet_stage(w4, 2 * w, blocks[1], stride=2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w4, num_outputs))
        init_resnet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale
        x = torch.relu(self.conv1(high_pass_spatial(x, s)))
        x = self.fcl1(high_pass_channels(x, s))
        x = torch.relu(self.conv2(high_pass_spatial(x, s)))
        x = self.fcl2(high_pass_channels(x, s))
        x = self.layer1(self.pool(x))
        x = self.fcl3(torch.relu(self.conv3(x)))
        x = self.fcl4(torch.relu(self.conv4(high_pass_spatial(x, s))))
        return self.head(self.layer2(x))


@register_detector("freqnet", family="cnn", domain="spectrum", paper=PAPER, default=False,
                   description="FFT high-pass of image and features + amplitude/phase convolutions in a light ResNet")
class FreqNet(CNNDetector):
    def __init__(self, size: str = "small", fcl: str = "amplitude-phase", *, epochs: int = 20,
                 batch_size: int = 32, lr: float = 1e-3, num_outputs: int = 1, precision: str = "fp32",
                 seed: int = 0, device: str = "auto", **train) -> None:
        check_choice("size", size, tuple(SIZES))
        check_choice("fcl", fcl, FCL_MODES)
        super().__init__(epochs=epochs, batch_size=batch_size, lr=lr, num_outputs=num_outputs,
                         precision=precision, seed=seed, device=device, **train)
        self.size = size
        self.fcl = fcl

    def build_model(self, image_size: int) -> nn.Module:
        width, blocks1, blocks2 = SIZES[self.size]
        return FreqNetModel(width, (blocks1, blocks2), self.fcl, self.num_outputs)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return imagenet_normalise(images.float())
