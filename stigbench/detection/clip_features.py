"""A frozen CLIP image encoder from a local file, its test-time preprocessing, and an on-disk cache
of the features of whole image sets (used by ``detectors/univfd.py``).

**Encoder.** ``open_clip.create_model(arch, pretrained=None)`` builds the architecture and only its
visual tower is kept: the keys ``visual.*`` of the user's file are loaded into ``model.visual``
strictly (every one used, none missing, shapes equal; :func:`stigbench.detection.released.load_strict`),
every other key (the text tower, ``logit_scale``) is ignored, since only ``encode_image`` is needed.
``encode_image(x)`` (not normalised) is ``model.visual(x)``. open_clip is imported inside the
functions: stigbench works without it (``pip install "stigbench[clip]"`` adds it). Nothing is
downloaded: a schema (``hf-hub:``, ``local-dir:``) is refused as ``arch``, and no base tower
weights are requested.

**Files accepted**: an open_clip state dict (e.g. ``open_clip_pytorch_model.bin`` or
``open_clip_model.safetensors`` of the Hugging Face repository ``timm/vit_large_patch14_clip_224.openai``):
``.safetensors`` (read by ``safetensors.torch.load_file``) or ``.pt``/``.pth``/``.bin`` (read by
``torch.load(..., map_location="cpu", weights_only=True)``, :func:`~stigbench.detection.released.read_checkpoint`),
bare or wrapped as ``{"state_dict": ...}``, with or without a leading ``module.`` on every key.

**OpenAI's own** ``ViT-L-14.pt`` is a TorchScript archive (a zip holding ``constants.pkl`` and the
model's compiled ``code/``). Established with torch 2.14 on an archive written by ``torch.jit.save``:
``torch.load(weights_only=True)`` refuses it ("Cannot use weights_only=True with TorchScript archives"),
and its ``data.pkl`` rebuilds objects of the archive's own ``__torch__.*`` classes, which only
``torch.jit.load`` (running the archive's TorchScript) can create. Such a file is therefore refused,
with the conversion to run where the file is trusted (:data:`CONVERT_HINT`).

**Activation.** OpenAI's CLIP (the one UnivFD uses) was trained with QuickGELU, ``x·σ(1.702x)``;
open_clip's ``ViT-L-14`` config uses ``nn.GELU`` and its ``ViT-L-14-quickgelu`` config QuickGELU.
Both have the same keys, so nothing in the file tells them apart: OpenAI weights need a
``-quickgelu`` architecture to compute OpenAI's features.

**Feature cache.** CLIP is the expensive part of a CLIP detector, and the same images are encoded
by several configurations and on reruns. :func:`cached_features` keys a set's features by the
SHA-256 of its 8-bit pixels (read batch by batch, a cheap first pass), the encoder file's SHA-256,
the architecture, the preprocessing and where and how it ran (device type, batch size, torch
version), so that a hit returns exactly the numbers a fresh extraction gives here; stored as ``.npy``
under ``cache_dir()/univfd-features``, written atomically, read with ``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import json
import logging
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stigbench.core.contracts import ImageSetLike
from stigbench.core.imageset import to_float, to_uint8
from stigbench.core.io import atomic_write, cache_dir

#: CLIP's normalisation (OpenAI's ``clip.py``; UnivFD's ``validate.py`` ``MEAN["clip"]``/``STD["clip"]``).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: What happens to an image smaller than the encoder's input (see :func:`clip_input`).
SMALL = ("pad", "resize")
#: Bump when :func:`clip_input` or the encoding changes, to orphan cached features.
PREPROCESS_VERSION = 1
CACHE_FOLDER = "univfd-features"
INSTALL_HINT = 'open_clip is not installed: pip install "stigbench[clip]" (open_clip_torch>=2.20)'
CONVERT_HINT = ("convert it once, where you trust the file: python -c \"import torch, open_clip; "
                "m = open_clip.load_openai_model('ViT-L-14.pt', device='cpu'); "
                "torch.save(m.state_dict(), 'ViT-L-14.state.pt')\" and give ViT-L-14.state.pt "
                "(with arch ViT-L-14-quickgelu, OpenAI's activation)")
_SHOWN = 5


def open_clip_module() -> Any:
    """The ``open_clip`` module, or a ``ValueError`` saying how to install it."""
    try:
        import open_clip
    except ImportError as exc:
        raise ValueError(INSTALL_HINT) from exc
    return open_clip


def check_arch(arch: str) -> None:
    """``ValueError`` unless ``arch`` is one of open_clip's built-in configurations."""
    models = open_clip_module().list_models()
    if arch not in models:
        close = difflib.get_close_matches(str(arch), models, n=5, cutoff=0.6) or [m for m in models if "L-14" in m][:6]
        raise ValueError(f"arch {arch!r} is not an open_clip model config (open_clip.list_models() has {len(models)}, "
                         f"e.g. {close}); schemas such as hf-hub: are not accepted (nothing is downloaded)")


def _is_torchscript(path: Path) -> bool:
    """True for a ``torch.jit.save`` archive (torch's own test: a ``constants.pkl`` record)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1] == "constants.pkl" for name in archive.namelist())


def read_visual_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``visual.*`` tensors of an open_clip state-dict file, without the ``visual.`` prefix."""
    from stigbench.detection.released import as_state_dict, read_checkpoint

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            loaded: object = load_file(str(path))
        except Exception as exc:  # safetensors' own error type; a truncated or foreign file
            raise ValueError(f"{path} could not be read as safetensors: {type(exc).__name__}: {exc}") from exc
    elif _is_torchscript(path):
        raise ValueError(f"{path} is a TorchScript archive (OpenAI's original CLIP format), which stigbench does not "
                         f"load: it accepts open_clip state dicts (.safetensors, or .pt/.pth/.bin readable by "
                         f"torch.load(weights_only=True)); {CONVERT_HINT}")
    else:
        loaded = read_checkpoint(path)
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    state = as_state_dict(loaded, path, "the file")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    visual = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    if not visual:
        raise ValueError(f"{path} has no 'visual.*' keys, so it is not an open_clip CLIP state dict (e.g. a "
                         f"timm-layout model.safetensors; use open_clip_model.safetensors or "
                         f"open_clip_pytorch_model.bin); its first keys: {list(state)[:_SHOWN]}")
    return visual


@contextlib.contextmanager
def _quiet_open_clip() -> Iterator[None]:
    """Hide open_clip's 'initialized randomly' warning: the weights are loaded right after."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class ClipEncoder:
    """A frozen visual tower in eval mode, with what identifies it."""

    visual: nn.Module
    fingerprint: dict[str, Any]  # file_fingerprint of the weights file
    arch: str
    image_size: int  # square input side (224 for ViT-L-14)
    width: int  # embedding dimension (768 for ViT-L-14)


@functools.lru_cache(maxsize=2)
def _load(path: str, stat: tuple[int, int, int], arch: str) -> ClipEncoder:
    from stigbench.detection.released import load_strict, file_fingerprint

    open_clip = open_clip_module()
    check_arch(arch)
    state = read_visual_state(path)
    with _quiet_open_clip():
        model = open_clip.create_model(arch, pretrained=None, pretrained_image=False, pretrained_text=False)
    visual = load_strict(model.visual, state, Path(path)).requires_grad_(False)
    side = visual.image_size
    side = side if isinstance(side, int) else side[0]
    return ClipEncoder(visual, file_fingerprint(path), arch, int(side), int(visual.output_dim))


@functools.lru_cache(maxsize=2)
def _on_device(path: str, stat: tuple[int, int, int], arch: str, device: str) -> ClipEncoder:
    cpu = _load(path, stat, arch)
    if torch.device(device).type == "cpu":
        return cpu
    # A copy: module.to() moves in place, and the CPU encoder may serve another detector.
    import copy

    return ClipEncoder(copy.deepcopy(cpu.visual).to(device), cpu.fingerprint, arch, cpu.image_size, cpu.width)


def load_encoder(path: str | Path, arch: str, device: torch.device | str = "cpu") -> ClipEncoder:
    """The encoder of ``path`` for ``arch`` on ``device``, read once per process for each (file,
    size, modification time, arch): a plan's check, the fit and the scoring share it."""
    resolved = Path(path).resolve()
    if not resolved.is_file():
        raise FileNotFoundError(f"CLIP weights file not found: {path}")
    st = resolved.stat()
    # The inode too: a file replaced within the clock's resolution keeps size and mtime, not its inode.
    return _on_device(str(resolved), (st.st_size, st.st_mtime_ns, st.st_ino), arch, str(torch.device(device)))


def clip_input(images: torch.Tensor, size: int, small: str = "pad") -> torch.Tensor:
    """Images ``(N, 3, H, W)`` in ``[0, 1]`` to CLIP's input ``(N, 3, size, size)``, differentiably.

    UnivFD's test transform is ``CenterCrop(size)``, ``ToTensor``, ``Normalize(CLIP mean/std)``. A
    larger image is centre-cropped (torchvision's offsets: ``round((H - size) / 2)``). A smaller one:
    ``small="pad"`` does what ``CenterCrop`` does to it, zero (black) padding, the odd pixel at the
    bottom/right; ``small="resize"`` first scales the shorter side to ``size`` (bicubic, clamped to
    ``[0, 1]`` as an 8-bit image would be), then crops.
    """
    from torchvision.transforms.functional import center_crop

    if small not in SMALL:
        raise ValueError(f"small must be one of {SMALL}, got {small!r}")
    h, w = images.shape[-2:]
    if small == "resize" and min(h, w) < size:
        # torchvision's Resize(size): shorter side to size, the other int(size * long / short).
        new = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
        images = nn.functional.interpolate(images, size=new, mode="bicubic", align_corners=False).clamp(0.0, 1.0)
    images = center_crop(images, [size, size])
    mean = torch.tensor(CLIP_MEAN, dtype=images.dtype, device=images.device).reshape(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=images.dtype, device=images.device).reshape(1, 3, 1, 1)
    return (images - mean) / std


def pixel_digest(image_set: ImageSetLike, batch_size: int) -> str:
    """SHA-256 of a set's images as 8-bit pixels (with their shapes); images off the 8-bit grid are
    hashed as ``float32``, so that two sets that round alike never share features."""
    digest = hashlib.sha256()
    for batch in image_set.batches(batch_size):
        pixels = to_uint8(batch)
        exact = torch.equal(to_float(pixels), batch.float())
        digest.update(f"{'u8' if exact else 'f32'} {tuple(batch.shape)}\n".encode())
        digest.update(pixels.tobytes() if exact else batch.float().numpy().tobytes())
    return digest.hexdigest()


def cached_features(image_set: ImageSetLike, key: Mapping[str, Any], compute: Callable[[], np.ndarray],
                    batch_size: int) -> np.ndarray:
    """``compute()`` (the features of every image of ``image_set``, ``(N, D)``), stored on disk under
    ``key`` plus the set's pixels (:func:`pixel_digest`) and returned from there on the next call."""
    full = {**key, "images": pixel_digest(image_set, batch_size), "n": len(image_set),
            "preprocess_version": PREPROCESS_VERSION, "torch": torch.__version__}
    name = hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()
    path = cache_dir() / CACHE_FOLDER / f"{name}.npy"
    if path.is_file():
        try:
            feats = np.load(path, allow_pickle=False)
            if feats.ndim == 2 and len(feats) == len(image_set) and feats.dtype == np.float64:
                return feats
        except (OSError, ValueError):  # unreadable: recomputed and overwritten below
            pass
    feats = np.asarray(compute(), dtype=np.float64)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a handle: np.save would append ".npy" to the temporary name
            np.save(handle, feats, allow_pickle=False)

    with contextlib.suppress(OSError):  # a read-only cache costs time, never a result
        atomic_write(path, write)
    return feats
