"""Authors' released detector checkpoints, loaded in the authors' own file formats, strictly.

Pure loaders: a path in, a ``torch.nn.Module`` in ``eval`` mode out (on the CPU), with no download, no
unsafe unpickling (``torch.load(..., weights_only=True)`` only) and no silent partial load. ``detectors/wang2020.py`` and
``detectors/npr.py`` use them with ``checkpoint=PATH``.

**CNNDetection** (Wang et al., "CNN-generated images are surprisingly easy to spot... for now",
CVPR 2020; ``PeterWang512/CNNDetection``). Layout, from ``networks/base_model.py``
(``BaseModel.save_networks``): ``torch.save({"model": model.state_dict(), "optimizer": ...,
"total_steps": ...})``; ``demo.py`` and ``demo_dir.py`` load ``state_dict["model"]`` into
``resnet50(num_classes=1)``. The network (``networks/trainer.py``) is a torchvision-layout ResNet-50
whose ``fc`` is ``nn.Linear(2048, 1)`` (the training run loads torchvision's ImageNet weights into it
and replaces ``fc``), so torchvision's key names apply. ``P(fake) = sigmoid(logit)``. Test
preprocessing (``demo.py``, ``demo_dir.py``): ``ToTensor`` then ImageNet ``Normalize(mean=[0.485,
0.456, 0.406], std=[0.229, 0.224, 0.225])`` at the image's own size, no resize; ``demo_dir.py``
centre-crops only when ``--crop`` is given (the ``demo_dirs_crop224.sh`` variant uses 224).
:func:`load_cnndetection` accepts that dict (the tensors under ``"model"``; every other top-level
key, e.g. ``optimizer``/``total_steps``, is ignored) or a bare state dict with exactly the model's
keys.

**NPR** (Tan et al., "Rethinking the Up-Sampling Operations in CNN-based Generative Network for
Generalizable Deepfake Detection", CVPR 2024; ``chuangchuangtan/NPR-DeepfakeDetection``). Layout, from
``networks/base_model.py`` (``save_networks`` writes ``torch.save(self.model.state_dict())``) and
``test.py`` (which loads that file as it is, with ``strict=True``, into ``resnet50(num_classes=1)``):
a bare state dict, no ``"model"`` wrapper. The network
(``networks/resnet.py``, ``ResNet``) is ResNet-50 cut after ``layer2``: ``conv1`` (3×3, stride 2,
64 channels, no bias), ``bn1``, ReLU, ``maxpool`` (3×3, stride 2, padding 1), ``layer1`` (3
bottlenecks, 64) and ``layer2`` (4 bottlenecks, 128, stride 2), global average pooling and
``fc1 = nn.Linear(512, 1)``; no ``layer3``/``layer4``/``fc`` keys exist. Its forward takes the
ImageNet-normalised image ``x``, forms the neighbouring-pixel residual
``NPR = x − up2(down½(x))`` (both ``F.interpolate`` ``mode="nearest"``,
``recompute_scale_factor=True``) and feeds ``NPR · 2/3`` to ``conv1``; the factor multiplies the
residual, not the image. ``H`` and ``W`` must be even (for odd sizes the two tensors differ in shape
and the authors' code fails; :class:`ReleasedNPR` raises ``ValueError``). Test preprocessing
(``test.py`` ``DetectionTests`` with ``data/datasets.py`` ``binary_dataset`` and the defaults of
``options/base_options.py``): ``Resize((256, 256))`` (torchvision's default bilinear) for
ForenSynths, DiffusionForensics and UniversalFakeDetect, no resize for GANGen-Detection, never a crop,
then ``ToTensor`` and the same ImageNet ``Normalize``. :func:`load_npr` accepts the bare state dict
only (a ``{"model": ...}`` file is refused, with a hint).

Strictness, both formats: every key of the file is used, none of the network's is missing, every shape
and dtype kind (floating vs integer) matches; otherwise ``ValueError`` names the file, the counts and
the first missing/unexpected keys. One tolerance: checkpoints written before PyTorch 0.4.1 have no
BatchNorm ``num_batches_tracked`` counters; when *all* of them are absent (and nothing else), they keep
their initial value, since they play no part in an ``eval`` forward.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck

from stigbench.core.io import sha256_file

__all__ = ["ReleasedNPR", "as_state_dict", "checked_release", "file_fingerprint", "load_cnndetection", "load_npr", "load_strict",
           "npr_sequential_state", "read_checkpoint",
           "require_unchanged"]

_SHOWN = 5  # keys named in an error message, per kind
_COUNTER = "num_batches_tracked"


def file_fingerprint(path: str | Path) -> dict[str, object]:
    """``{"path": resolved path, "sha256": hex digest, "bytes": size}`` (:func:`~stigbench.core.io.sha256_file`)."""
    resolved = Path(path).resolve()
    return {"path": str(resolved), "sha256": sha256_file(resolved), "bytes": resolved.stat().st_size}


def require_unchanged(path: str | Path, what: str, then: str | None, now: str, where: Path) -> None:
    """``ValueError`` when the file ``path`` (``what``: "the released checkpoint", "the CLIP weights")
    now has SHA-256 ``now`` but had ``then`` when the detector saved in ``where`` was fitted: its
    scores would no longer be the run's. No recorded hash (``then`` empty): nothing to compare."""
    if then and now != then:
        raise ValueError(f"{where}: {what} {path} changed since this detector was saved (SHA-256 then {then[:12]}, "
                         f"now {now[:12]}); its scores would not be the run's: restore the file or score with the "
                         "new one directly")


def checked_release(path: str | Path, recorded: Mapping[str, object], where: Path) -> Path:
    """``path`` when the released file there still has the SHA-256 ``recorded`` (its :func:`file_fingerprint`
    when the detector saved in ``where`` was fitted); else ``FileNotFoundError``/``ValueError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{where}: the released checkpoint {path} it scores with is gone "
                                f"(recorded SHA-256 {recorded.get('sha256', '?')})")
    require_unchanged(path, "the released checkpoint", str(recorded.get("sha256") or ""),
                      sha256_file(path), where)
    return path


def read_checkpoint(path: str | Path) -> object:
    """``torch.load(weights_only=True)``; a file it refuses is reported, never unpickled unsafely."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with path.open("rb") as handle:
        head = handle.read(4)
    # torch.save writes a zip archive (``PK\x03\x04``) or, before PyTorch 1.6, a pickle (``\x80`` =
    # protocol ≥ 2); anything else is not a checkpoint, whatever the unpickler's complaint says.
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        raise ValueError(f"{path} is not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # The refusal names the offending global (e.g. ``argparse.Namespace``) in one of its lines.
        detail = next((line.strip() for line in str(error).splitlines() if "GLOBAL" in line or "Unsupported" in line),
                      str(error).splitlines()[0] if str(error) else type(error).__name__)
        raise ValueError(
            f"{path} was refused by torch.load(weights_only=True): it holds objects other than tensors and "
            f"plain containers, or its pickle is corrupt ({detail}); stigbench does not unpickle such files"
        ) from error
    except Exception as error:  # a truncated archive, a corrupt pickle, ...
        raise ValueError(
            f"{path} could not be read as a PyTorch checkpoint: {type(error).__name__}: {error}"
        ) from error


def as_state_dict(value: object, path: Path, where: str) -> dict[str, torch.Tensor]:
    """``value`` (what ``where`` in file ``path`` holds) as a state dict of named tensors, else ``ValueError``."""
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"{path}: {where} is not a state dict (got {type(value).__name__})")
    odd = [str(k) for k, v in value.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if odd:
        raise ValueError(f"{path}: {where} has {len(odd)} entries that are not named tensors, e.g. {odd[:_SHOWN]}")
    return dict(value)


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> nn.Module:
    """Load ``state`` into ``model`` requiring the same keys, shapes and dtype kinds; return it in eval mode."""
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    counters = [k for k in target if k.endswith(_COUNTER)]
    if counters and sorted(missing) == sorted(counters):  # a pre-0.4.1 file: see the module docstring
        missing = []
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match {type(model).__name__}: {len(missing)} missing keys "
            f"{missing[:_SHOWN]}, {len(unexpected)} unexpected keys {unexpected[:_SHOWN]}"
        )
    bad = [
        f"{k}: file {tuple(v.shape)} {v.dtype}, network {tuple(target[k].shape)} {target[k].dtype}"
        for k, v in state.items()
        if v.shape != target[k].shape or v.is_floating_point() != target[k].is_floating_point()
    ]
    if bad:
        raise ValueError(f"{path}: {len(bad)} tensors do not fit {type(model).__name__}, e.g. {bad[:_SHOWN]}")
    model.load_state_dict(state, strict=len(state) == len(target))
    return model.eval()


def load_cnndetection(path: str | Path) -> nn.Module:
    """Wang et al. (CVPR 2020): torchvision ResNet-50 with one logit, ``P(fake) = sigmoid(logit)``.

    Accepts ``{"model": state_dict, ...}`` (the release; other top-level keys ignored) or a bare
    state dict with exactly the network's keys. Input: ImageNet-normalised RGB (see module docstring).
    """
    from torchvision.models import resnet50

    path = Path(path)
    loaded = read_checkpoint(path)
    if isinstance(loaded, Mapping) and "model" in loaded:
        state = as_state_dict(loaded["model"], path, "the 'model' entry")
    else:
        state = as_state_dict(loaded, path, "the file")
    return load_strict(resnet50(weights=None, num_classes=1), state, path)


class ReleasedNPR(nn.Module):
    """Tan et al. (CVPR 2024): residual ``x − up2(down½(x))``, ×2/3, ResNet-50 up to ``layer2``, ``fc1``.

    ``forward`` takes ImageNet-normalised RGB of even height and width and returns one logit per
    image, ``(N, 1)``; ``P(fake) = sigmoid(logit)``. State-dict keys are the release's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._stage(64, planes=64, blocks=3, stride=1)
        self.layer2 = self._stage(64 * Bottleneck.expansion, planes=128, blocks=4, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc1 = nn.Linear(128 * Bottleneck.expansion, 1)

    @staticmethod
    def _stage(inplanes: int, *, planes: int, blocks: int, stride: int) -> nn.Sequential:
        width = planes * Bottleneck.expansion
        # torchvision's ResNet adds a projection to the first block whenever shape or stride changes.
        downsample = nn.Sequential(nn.Conv2d(inplanes, width, kernel_size=1, stride=stride, bias=False),
                                   nn.BatchNorm2d(width))
        layers = [Bottleneck(inplanes, planes, stride=stride, downsample=downsample)]
        layers += [Bottleneck(width, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    @staticmethod
    def residual(x: torch.Tensor) -> torch.Tensor:
        """``x − up2(down½(x))`` with nearest neighbours: each pixel minus the top-left one of its 2×2 cell."""
        if x.shape[-2] % 2 or x.shape[-1] % 2:
            raise ValueError(f"NPR needs an even height and width, got {tuple(x.shape[-2:])}")
        down = F.interpolate(x, scale_factor=0.5, mode="nearest", recompute_scale_factor=True)
        return x - F.interpolate(down, scale_factor=2.0, mode="nearest", recompute_scale_factor=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.residual(x) * (2.0 / 3.0)))))
        x = self.layer2(self.layer1(x))
        return self.fc1(torch.flatten(self.avgpool(x), 1))


def load_npr(path: str | Path) -> ReleasedNPR:
    """Tan et al. (CVPR 2024): the released bare state dict into :class:`ReleasedNPR`, strictly."""
    path = Path(path)
    loaded = read_checkpoint(path)
    if isinstance(loaded, Mapping) and "model" in loaded and not isinstance(loaded["model"], torch.Tensor):
        raise ValueError(f"{path} wraps its tensors under 'model'; NPR releases are bare state dicts "
                         "(networks/base_model.py save_networks), so this is not an NPR release")
    return load_strict(ReleasedNPR(), as_state_dict(loaded, path, "the file"), path)


#: Where the release's modules sit in ``detectors/npr.py``'s ``nn.Sequential`` (``npr_net("paper")``).
NPR_RELEASE_TO_SEQUENTIAL = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "fc1": "8"}


def npr_sequential_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A :class:`ReleasedNPR` state dict under the names of stigbench's NPR network (same tensors)."""
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head not in NPR_RELEASE_TO_SEQUENTIAL:
            raise ValueError(f"{key!r} is not a key of the NPR release")
        out[f"{NPR_RELEASE_TO_SEQUENTIAL[head]}.{rest}"] = value
    return out
