"""``univfd``: a linear classifier on the image embedding of a frozen CLIP ViT-L/14.

Ojha, Li, Lee, "Towards Universal Fake Image Detectors that Generalize Across Generative Models",
CVPR 2023 (``WisconsinAIVision/UniversalFakeDetect``). The paper's claim: a feature space not trained
to tell real from fake (CLIP's) separates them by a *linear* probe, and that probe generalises to
generators it never saw. Their model (``models/clip_models.py``) is ``fc = nn.Linear(768, 1)`` on
``clip.encode_image(x)`` (OpenAI ViT-L/14, not normalised), ``P(fake) = sigmoid(fc(...))``, trained
with Adam and binary cross-entropy while CLIP stays frozen.

Encoder: an open_clip visual tower loaded from a local file, ``clip=PATH`` (formats, the refusal of
OpenAI's TorchScript ``ViT-L-14.pt`` and the feature cache: :mod:`stigbench.detection.clip_features`).
``arch`` defaults to ``ViT-L-14-quickgelu``: OpenAI's weights were trained with QuickGELU, and
open_clip's plain ``ViT-L-14`` would run them with GELU, other features than the paper's. The
encoder runs in fp32, as theirs (``clip.load(name, device="cpu")`` casts to fp32 before ``.cuda()``).

Preprocessing, as their test code (``validate.py``): ``CenterCrop(224)`` (224 = the encoder's input
size), ``ToTensor``, ``Normalize`` with CLIP's mean/std; no resize. Larger images are centre-cropped.
Images smaller than 224² (the benchmark's are 32-128 px), ``small``:

* ``"pad"`` (default): what ``CenterCrop`` does to them, a black border (the odd pixel bottom/right),
  i.e. the authors' code unchanged. CLIP then sees a small image in a black frame, far from the
  224² crops of 256² images the released probe was trained on.
* ``"resize"``: bicubic up-sampling of the shorter side to 224, then the crop; CLIP sees a full
  frame, but resampling smooths the very traces (up-sampling artefacts) a detector may read, so
  neither option tests the paper's claim at its own resolution.

**Trained by the run** (default): the paper's linear probe, fitted as ``StandardScaler`` + L2
``LogisticRegression(C=c)`` by L-BFGS instead of Adam + BCE (same model class, a linear function of
the embedding; a deterministic convex fit without epochs or learning rate).

**As released** (``checkpoint=PATH``, score-only): their ``pretrained_weights/fc_weights.pth``, which
``validate.py`` loads with ``model.fc.load_state_dict``: a bare state dict ``{"weight": (1, 768),
"bias": (1,)}``, read strictly. It becomes a ``LogisticRegression`` with those coefficients, so
scores (``sigmoid(w·f + b)``), logits and save/load are those of the trained probe. The authors call
an image fake at ``P(fake) > 0.5``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from stigbench.core.contracts import ImageSetLike
from stigbench.core.device import resolve_device
from stigbench.core.io import read_json, write_json
from stigbench.detection.base import LogisticFeatureDetector, _check_labels, check_choice
from stigbench.detection.clip_features import SMALL, ClipEncoder, cached_features, check_arch, clip_input, load_encoder
from stigbench.detection.registry import register_detector

PAPER = ("Ojha, Li, Lee, Towards Universal Fake Image Detectors that Generalize Across Generative Models "
         "(UnivFD), CVPR 2023")
FIT_FILE = "fit_info.json"


def load_fc_head(path: str | Path, width: int) -> Any:
    """The released ``fc`` (``{"weight": (1, width), "bias": (1,)}``) as a fitted ``LogisticRegression``
    scoring ``sigmoid(w·f + b)``, checked strictly (``ValueError`` naming the keys or shapes)."""
    from sklearn.linear_model import LogisticRegression

    from stigbench.detection.released import as_state_dict, read_checkpoint

    path = Path(path)
    state = as_state_dict(read_checkpoint(path), path, "the file")
    missing, unexpected = sorted({"weight", "bias"} - set(state)), sorted(set(state) - {"weight", "bias"})
    if missing or unexpected:
        raise ValueError(f"{path} is not UnivFD's fc_weights.pth (nn.Linear({width}, 1) state dict): missing keys "
                         f"{missing}, unexpected keys {unexpected[:5]}")
    shapes = {k: tuple(state[k].shape) for k in ("weight", "bias")}
    if shapes != {"weight": (1, width), "bias": (1,)}:
        raise ValueError(f"{path}: weight {shapes['weight']} and bias {shapes['bias']} do not fit the encoder's "
                         f"{width}-d embedding (expected weight (1, {width}), bias (1,))")
    head = LogisticRegression()
    head.coef_ = state["weight"].detach().double().numpy().copy()
    head.intercept_ = state["bias"].detach().double().numpy().copy()
    head.classes_ = np.array([0, 1])
    head.n_features_in_ = width
    return head


@register_detector("univfd", family="other", domain="rgb", paper=PAPER, default=False,
                   description="linear probe on frozen CLIP ViT-L/14 embeddings (clip=PATH; released fc optional)")
class UnivFD(LogisticFeatureDetector):
    file_params = ("clip", "checkpoint")
    authors_threshold = 0.5

    def __init__(self, clip: str | None = None, arch: str = "ViT-L-14-quickgelu", checkpoint: str | None = None,
                 small: str = "pad", c: float = 1.0, seed: int = 0, batch_size: int = 32, device: str = "auto") -> None:
        super().__init__(c=c, seed=seed)
        self.clip = clip
        self.arch = arch
        self.checkpoint = checkpoint
        self.small = small
        self.batch_size = batch_size
        self.device = device

    def released_checkpoint(self) -> str | None:
        return self.checkpoint or None

    def encoder(self) -> ClipEncoder:
        """The frozen encoder on this detector's device (read once per process, see ``load_encoder``)."""
        if not self.clip:
            raise ValueError(f"univfd needs CLIP weights: clip=PATH (a run: --set univfd.clip=PATH), an open_clip "
                             f"state dict for arch {self.arch!r} (e.g. open_clip_model.safetensors of "
                             "timm/vit_large_patch14_clip_224.openai)")
        return load_encoder(self.clip, self.arch, resolve_device(self.device))

    def check_params(self) -> None:
        """Fail before any image is read: open_clip missing, no or a bad CLIP file, unknown arch, bad fc file."""
        check_choice("small", self.small, SMALL)
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        check_arch(self.arch)
        try:
            encoder = self.encoder()
            if self.checkpoint:
                load_fc_head(self.checkpoint, encoder.width)
        except FileNotFoundError as exc:  # a plan error like any other bad value
            raise ValueError(str(exc)) from exc

    def make_estimator(self) -> Any:
        if self.released_checkpoint():
            from sklearn.linear_model import LogisticRegression

            return LogisticRegression()  # its coefficients come from the file (load_fc_head)
        # Standardised embeddings: the L2 penalty weighs every dimension alike whatever its scale (CLIP's
        # differ widely) and L-BFGS is well conditioned; the probe stays a linear function of the embedding.
        return super().make_estimator()

    def torch_features(self, images: torch.Tensor) -> torch.Tensor:
        """``encode_image`` of the preprocessed images, ``(N, D)`` ``float32``, differentiable in ``images``."""
        encoder = self.encoder()
        x = clip_input(images.to(next(encoder.visual.parameters()).device, torch.float32), encoder.image_size,
                       self.small)
        return encoder.visual(x)

    def extract(self, image_set: ImageSetLike, progress: str | None = None) -> np.ndarray:
        """:meth:`FeatureDetector.extract`, through the on-disk cache of whole image sets."""
        encoder = self.encoder()
        device = next(encoder.visual.parameters()).device
        key = {"clip_sha256": encoder.fingerprint["sha256"], "arch": self.arch, "small": self.small,
               "device": device.type, "batch_size": self.batch_size}
        compute = super().extract
        return cached_features(image_set, key, lambda: compute(image_set, progress), self.batch_size)

    def _fit_info(self, **info: Any) -> dict[str, Any]:
        encoder = self.encoder()
        return {**info, "clip": encoder.fingerprint, "arch": self.arch, "small": self.small,
                "image_size": encoder.image_size, "embedding": encoder.width}

    def load_release(self) -> UnivFD:
        """Score-only: the released head (:meth:`released_checkpoint`) as the fitted estimator; no image
        is read and nothing is fitted (:class:`~stigbench.core.contracts.ReleasedDetector`)."""
        from stigbench.detection.released import file_fingerprint

        if not self.checkpoint:
            raise ValueError("univfd has no released head to load (set checkpoint=PATH, their fc_weights.pth)")
        self.estimator_ = load_fc_head(self.checkpoint, self.encoder().width)
        self.fit_info_ = self._fit_info(trained_on="released", checkpoint=file_fingerprint(self.checkpoint),
                                        authors_threshold=self.authors_threshold, n_train=0)
        return self

    def fit(self, train_set: ImageSetLike, labels: np.ndarray, val_set: ImageSetLike | None = None,
            val_labels: np.ndarray | None = None) -> UnivFD:
        if self.released_checkpoint():
            _check_labels(labels, len(train_set))
            return self.load_release()
        super().fit(train_set, labels, val_set, val_labels)
        self.fit_info_ = self._fit_info(n_train=len(train_set))
        return self

    def save(self, path: str | Path) -> None:
        """The estimator (skops) and ``fit_info.json``, which names the CLIP and released files with their SHA-256."""
        super().save(path)
        write_json(Path(path) / FIT_FILE, self.fit_info_)

    @classmethod
    def load(cls, path: str | Path) -> UnivFD:
        """Rebuild a saved detector; its CLIP file (and released fc) must still have the recorded SHA-256."""
        from stigbench.detection.released import checked_release, require_unchanged

        folder = Path(path)
        obj = super().load(folder)
        info = read_json(folder / FIT_FILE)
        if obj.released_checkpoint():
            checked_release(obj.checkpoint, info.get("checkpoint", {}), folder)
        # the encoder's fingerprint: hashed once per process with the encoder, not again here
        require_unchanged(obj.clip, "the CLIP weights", str(info.get("clip", {}).get("sha256")),
                          obj.encoder().fingerprint["sha256"], folder)
        obj.fit_info_ = info
        return obj
