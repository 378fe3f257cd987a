"""The one training base class of the CNN detectors, and pretrained-weight helpers that never download.

:class:`CNNDetector`: a subclass implements :meth:`~CNNDetector.build_model` (an ``nn.Module`` with
``num_outputs`` logits) and :meth:`~CNNDetector.preprocess` (images in ``[0, 1]`` to network input);
optionally :meth:`~CNNDetector.init_weights` (pretrained weights) and
:meth:`~CNNDetector.augment_batch` (training-time image augmentation). The base owns the rest: seed, device
(``auto`` = CUDA if present), optimiser and per-epoch exponential learning-rate decay, early stopping
on the validation split with the best ``state_dict`` kept, a progress bar, ``inference_mode`` and
softmax/sigmoid → ``P(fake)`` for scoring, a differentiable ``logits`` (the torch path of white-box
attacks), and pickle-free save/load (``params.json`` + ``model.pt`` loaded with ``weights_only=True``).

Under torchrun (:mod:`stigbench.core.distributed`) every rank trains on its contiguous slice of each
global batch of ``batch_size`` (the single-process batches, in the same order) through
DistributedDataParallel; BatchNorm statistics stay per rank and rank 0's are given to every rank
before each validation, which every rank then runs in full, so that early stopping decides the same
everywhere. Augmentation draws for the whole global batch, as a single process would.

Training hyper-parameters are constructor keyword arguments like any other (scikit-learn
convention): a subclass lists its own and those whose default it changes, and passes the rest on
through ``**train``; :meth:`CNNDetector.get_params` reports both, so a saved detector is rebuilt
exactly. A subclass always lists ``seed``, ``device`` and ``precision``: the runner hands a run's
settings only to constructors that declare them.
"""

from __future__ import annotations

import copy
import inspect
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stigbench.core import distributed
from stigbench.core.contracts import ImageSetLike
from stigbench.core.device import PRECISIONS, autocast, resolve_device, resolve_precision, torch_rng
from stigbench.core.estimator import Estimator
from stigbench.core.imageset import progress_bar, random_access_array, to_float
from stigbench.core.io import read_json, write_json
from stigbench.detection.base import _check_labels, check_choice
from stigbench.measures.metrics import auc as auc_score

MODEL_FILE = "model.pt"
FIT_FILE = "fit_info.json"
OPTIMIZERS = ("adam", "adamw", "sgd")
MONITORS = ("val_loss", "val_auc")
# Training images are held in memory as uint8 up to this size; larger sets are decoded once into a
# memory-mapped scratch file (in TMPDIR), so memory stays flat in the training set's size.
IN_MEMORY_LIMIT = 256 * 1024**2


class CNNDetector(Estimator):
    """Base class of torch detectors trained end to end on (preprocessed) images.

    Args:
        epochs: maximum number of passes over the training set.
        batch_size: images per optimisation step (and per scoring batch).
        optimizer: ``adam``, ``adamw`` or ``sgd`` (momentum ``momentum``).
        lr: initial learning rate.
        lr_decay: multiplicative decay of the learning rate after every epoch (``1`` = constant).
        momentum: SGD momentum (ignored by Adam/AdamW).
        weight_decay: L2 penalty (decoupled for AdamW).
        patience: stop after this many epochs without improving the monitored validation metric
            (``None``: run all epochs, still keeping the best epoch's weights).
        monitor: ``val_loss`` or ``val_auc`` (ties broken by the loss).
        num_outputs: ``2`` = two logits + cross-entropy (softmax column 1 is ``P(fake)``), ``1`` = one
            logit + binary cross-entropy (sigmoid).
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (see :func:`stigbench.core.device.resolve_precision`);
            spectra are computed in fp32 either way.
        seed: seeds weight initialisation, shuffling and augmentation.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``...
    """

    #: Trains with every torchrun rank (:mod:`stigbench.core.distributed`).
    data_parallel = True
    #: Constructor parameters naming files the detector reads (:class:`~stigbench.core.contracts.ReleasedDetector`).
    file_params: tuple[str, ...] = ()
    #: ``P(fake)`` threshold of the authors' test code, for a released checkpoint (``None``: no release format).
    authors_threshold: float | None = None

    def __init__(self, *, epochs: int = 20, batch_size: int = 32, optimizer: str = "adam", lr: float = 1e-3,
                 lr_decay: float = 1.0, momentum: float = 0.9, weight_decay: float = 0.0,
                 patience: int | None = 5, monitor: str = "val_loss", num_outputs: int = 2,
                 precision: str = "fp32", seed: int = 0, device: str = "auto") -> None:
        check_choice("precision", precision, PRECISIONS)
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.lr_decay = lr_decay
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.patience = patience
        self.monitor = monitor
        self.num_outputs = num_outputs
        self.precision = precision
        self.seed = seed
        self.device = device

    # -- hyper-parameters -------------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        own = super()._param_names()
        if not any(p.kind == p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values()):
            return own
        # Training parameters that a subclass passes on through **train are its parameters too.
        base = [n for n in inspect.signature(CNNDetector.__init__).parameters if n != "self"]
        return own + [n for n in base if n not in own]

    # -- what a subclass provides -----------------------------------------------------------------
    def build_model(self, image_size: int) -> nn.Module:  # pragma: no cover - abstract
        """The network for ``image_size``² inputs, with ``self.num_outputs`` logits, randomly initialised."""
        raise NotImplementedError

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Images ``(N, 3, H, W)`` in ``[0, 1]`` to network input (pure, no randomness)."""
        raise NotImplementedError

    def init_weights(self, model: nn.Module, image_size: int) -> dict[str, Any]:
        """Load starting weights into ``model`` before training; returns what was done for ``fit_info_``.

        The default is the random initialisation of :meth:`build_model`.
        """
        return {"pretrained": False, "weights_source": "random init"}

    def augment_batch(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Training-time augmentation of a float batch in ``[0, 1]`` (default: none)."""
        return images

    def released_checkpoint(self) -> str | None:
        """The authors' released checkpoint this configuration scores with instead of training, else
        ``None``: the run trains it. By default the ``checkpoint`` parameter of a subclass that lists it
        in :attr:`file_params` (and implements :meth:`load_released`)."""
        return (getattr(self, "checkpoint", None) or None) if "checkpoint" in self.file_params else None

    def load_released(self, path: Path) -> nn.Module:  # pragma: no cover - abstract
        """The network of the released file at ``path`` in the authors' format, loaded strictly
        (:mod:`stigbench.detection.released`), in eval mode on the CPU; :meth:`preprocess` feeds it."""
        raise NotImplementedError(f"{type(self).__name__} loads no released checkpoint")

    def check_params(self) -> None:
        """Fail before any image is read: bad training settings, or (score-only) a released file
        that is missing, of the wrong format or whose keys or shapes do not fit the network."""
        self._check_params()
        path = self.released_checkpoint()
        if path:
            try:
                self.load_released(Path(path))
            except ValueError:
                raise
            except Exception as exc:  # a plan error like any other bad value, whatever the loader raised
                detail = str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
                raise ValueError(f"checkpoint: {detail}") from exc

    def make_optimizer(self, params: Any) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")

    # -- training ---------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.num_outputs not in (1, 2):
            raise ValueError(f"num_outputs must be 1 or 2, got {self.num_outputs}")
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {MONITORS}, got {self.monitor!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        distributed.check_global_batch(self.batch_size, f"{type(self).__name__}'s batch_size")

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.num_outputs == 1:
            return nn.functional.binary_cross_entropy_with_logits(logits.reshape(-1), labels.float())
        return nn.functional.cross_entropy(logits, labels)

    def _proba(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.num_outputs == 1:
            return torch.sigmoid(logits.reshape(-1))
        return torch.softmax(logits, dim=1)[:, 1]

    def fit(self, train_set: ImageSetLike, labels: np.ndarray, val_set: ImageSetLike | None = None,
            val_labels: np.ndarray | None = None) -> CNNDetector:
        self._check_params()
        labels = _check_labels(labels, len(train_set))
        if self.released_checkpoint():
            self.load_release()
            self.image_size_ = self.fit_info_["image_size"] = int(train_set[0].shape[-1])
            return self
        t0 = time.perf_counter()
        device = resolve_device(self.device)
        precision = resolve_precision(self.precision, device)
        images = _Images(train_set)
        size = int(images.size)
        use_val = val_set is not None and val_labels is not None and len(np.unique(val_labels)) == 2
        # Everything random (initialisation, shuffling, dropout) draws from this seed, and the caller's
        # global RNG state is left as it was.
        with torch_rng(self.seed):
            model = self.build_model(size)
            start = self.init_weights(model, size)
            model.to(device)
            history, best_epoch = self._train(model, images, labels, val_set if use_val else None,
                                              np.asarray(val_labels) if use_val else None, device, precision)
        model.eval()
        self.model_ = model
        self.image_size_ = size
        best = next((h for h in history if h["epoch"] == best_epoch), history[-1])
        self.fit_info_ = {
            "epochs_run": len(history), "best_epoch": best_epoch, "monitor": self.monitor if use_val else "none",
            "best_val_loss": best.get("val_loss"), "best_val_auc": best.get("val_auc"),
            "seconds": round(time.perf_counter() - t0, 2), "device": str(device), "precision": precision,
            "n_train": len(labels), "image_size": size, **start, "history": history,
        }
        if distributed.active() is not None:
            self.fit_info_["world_size"] = distributed.active().world_size
        return self

    def load_release(self) -> CNNDetector:
        """Score-only: load the released file (:meth:`released_checkpoint`) as the fitted network; no
        image is read and nothing is trained. ``image_size_`` is ``None`` until ``fit`` names the run's."""
        from stigbench.detection.released import file_fingerprint

        path = self.released_checkpoint()
        if not path:
            raise ValueError(f"{type(self).__name__} has no released checkpoint to load (set checkpoint=PATH)")
        t0 = time.perf_counter()
        path = Path(path)
        device = resolve_device(self.device)
        fingerprint = file_fingerprint(path)
        self.model_ = self.load_released(path).to(device).eval()
        self.image_size_ = None
        self.fit_info_ = {
            "trained_on": "released", "checkpoint": fingerprint, "authors_threshold": self.authors_threshold,
            "weights_source": f"released checkpoint {fingerprint['path']}", "pretrained": True, "epochs_run": 0,
            "seconds": round(time.perf_counter() - t0, 2), "device": str(device),
            "precision": resolve_precision(self.precision, device), "n_train": 0, "image_size": None,
        }
        return self

    def _train(self, model: nn.Module, images: _Images, labels: np.ndarray, val_set: ImageSetLike | None,
               val_labels: np.ndarray | None, device: torch.device,
               precision: str) -> tuple[list[dict[str, float]], int]:
        """The epoch loop; leaves the best epoch's weights in ``model``. Returns (history, best epoch)."""
        opt = self.make_optimizer(model.parameters())
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=self.lr_decay)
        # fp16 needs loss scaling against gradient underflow; bf16 and fp32 do not.
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        gen = torch.Generator().manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        y_all = torch.from_numpy(labels)
        n = len(labels)
        net = distributed.wrap(model)  # the model itself without torchrun
        augments = type(self).augment_batch is not CNNDetector.augment_batch
        history: list[dict[str, float]] = []
        best_key: tuple[float, float] | None = None
        best_state: dict[str, torch.Tensor] | None = None
        best_epoch, stale = 0, 0
        leader = distributed.active() is None or distributed.active().is_leader
        bar = progress_bar(self.epochs, f"{type(self).__name__}: training" if leader else None, unit="epoch")
        try:
            for epoch in range(1, self.epochs + 1):
                model.train()
                total = 0.0
                for idx in torch.randperm(n, generator=gen).split(self.batch_size):
                    # This rank's slice (a rank left without images in a short last batch computes one
                    # image at weight 0: every rank must take part in each gradient average).
                    lo, hi = distributed.shard(len(idx))
                    mine = slice(lo, hi) if hi > lo else slice(0, 1)
                    if augments:  # draws for the global batch, as one process would
                        x = self.augment_batch(images.get(idx.numpy()), rng)[mine]  # on the CPU, in [0, 1]
                    else:
                        x = images.get(idx[mine].numpy())
                    x = self.preprocess(x.to(device))
                    with autocast(device, precision):
                        logits = net(x)
                    loss = self._loss(logits, y_all[idx[mine]].to(device))
                    weight = distributed.loss_weight(len(idx))
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(loss if weight == 1.0 else loss * weight).backward()
                    scaler.step(opt)
                    scaler.update()
                    total += loss.item() * (hi - lo)
                sched.step()
                record = {"epoch": epoch, "train_loss": distributed.all_sum(total) / n}
                if val_set is not None and val_labels is not None:
                    distributed.broadcast_module(model)
                    v_loss, v_auc = self._evaluate(model, val_set, val_labels, device, precision)
                    record.update(val_loss=v_loss, val_auc=v_auc)
                    key = (v_auc, -v_loss) if self.monitor == "val_auc" else (-v_loss, v_auc)
                    if best_key is None or key > best_key:
                        best_key, best_epoch, stale = key, epoch, 0
                        best_state = copy.deepcopy(model.state_dict())
                    else:
                        stale += 1
                history.append(record)
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k != "epoch"})
                if best_state is not None and self.patience is not None and stale >= self.patience:
                    break
        finally:
            bar.close()
        if best_state is None:  # no validation split: the last epoch
            return history, len(history)
        model.load_state_dict(best_state)
        return history, best_epoch

    def _predict(self, model: nn.Module, image_set: ImageSetLike, device: torch.device,
                 precision: str) -> tuple[np.ndarray, np.ndarray]:
        """``(P(fake), logits)`` for every image, in eval mode and ``inference_mode``."""
        was_training = model.training
        model.eval()
        probs, logits_all = [], []
        try:
            with torch.inference_mode():
                for batch in image_set.batches(self.batch_size):
                    x = self.preprocess(batch.to(device))
                    with autocast(device, precision):
                        logits = model(x)
                    logits = logits.float()
                    probs.append(self._proba(logits).cpu())
                    logits_all.append(logits.cpu())
        finally:
            model.train(was_training)
        return torch.cat(probs).double().numpy(), torch.cat(logits_all).numpy()

    def _evaluate(self, model: nn.Module, val_set: ImageSetLike, val_labels: np.ndarray, device: torch.device,
                  precision: str) -> tuple[float, float]:
        proba, logits = self._predict(model, val_set, device, precision)
        loss = float(self._loss(torch.from_numpy(logits), torch.from_numpy(val_labels.astype(np.int64))))
        if not math.isfinite(loss) or not np.isfinite(proba).all():
            return float("inf"), 0.5
        return loss, auc_score(val_labels, proba)

    # -- scoring ----------------------------------------------------------------------------------
    def score(self, image_set: ImageSetLike) -> np.ndarray:
        self._check_fitted("model_")
        device = next(self.model_.parameters()).device
        proba, _ = self._predict(self.model_, image_set, device, resolve_precision(self.precision, device))
        return np.clip(proba, 0.0, 1.0)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """``(N,)`` fp32 logits of ``P(fake)``, differentiable in ``images`` (the torch path of
        :class:`~stigbench.core.contracts.DifferentiableDetector`, for white-box attacks).

        The fitted network in eval mode (the training flag is restored afterwards; BatchNorm statistics
        are not touched) on :meth:`preprocess`, computed as :meth:`score` computes it — the same
        precision (``auto`` is bf16 on a CPU with AMX: the white-box attacker attacks the model as it
        is deployed, and an fp32 path would differ from the scores by bf16's rounding, 2e-2 measured on
        demo-gan) — but without ``inference_mode``, so that gradients flow back to ``images``. One
        logit is returned as is; two become ``l₁ − l₀``, since ``softmax(l)₁ = sigmoid(l₁ − l₀)``.
        """
        self._check_fitted("model_")
        model = self.model_
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            x = self.preprocess(images.to(device))
            with autocast(device, resolve_precision(self.precision, device)):
                out = model(x)
            out = out.float()
        finally:
            model.train(was_training)
        if self.num_outputs == 1:
            return out.reshape(-1)
        return out[:, 1] - out[:, 0]

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """``params.json``, ``fit_info.json`` and the weights (``model.pt``); a score-only detector's
        weights stay in the released file, which ``fit_info.json`` names with its SHA-256."""
        self._check_fitted("model_")
        folder = self.save_params(path)
        if not self.released_checkpoint():
            state = {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}
            torch.save(state, folder / MODEL_FILE)
        info = {k: v for k, v in getattr(self, "fit_info_", {}).items()}
        write_json(folder / FIT_FILE, {**info, "image_size": self.image_size_})

    @classmethod
    def load(cls, path: str | Path) -> CNNDetector:
        """Rebuild a saved detector; a score-only one reloads its released file, which must still have
        the SHA-256 recorded when it was saved."""
        folder = Path(path)
        obj = cls.from_params(folder)
        info = read_json(folder / FIT_FILE)
        device = resolve_device(obj.device)
        released = obj.released_checkpoint()
        if released:
            from stigbench.detection.released import checked_release

            model = obj.load_released(checked_release(released, info.get("checkpoint", {}), folder))
        else:
            model = obj.build_model(int(info["image_size"]))  # architecture only; weights come from the file
            state = torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        model.to(device).eval()
        obj.model_, obj.image_size_, obj.fit_info_ = model, int(info["image_size"]), info
        return obj


class _Images:
    """Random access to a training set by index, as ``uint8``: in memory when small, else memory-mapped
    from a scratch file decoded once (:func:`~stigbench.core.imageset.random_access_array`)."""

    def __init__(self, image_set: ImageSetLike) -> None:
        self.array = random_access_array(image_set, IN_MEMORY_LIMIT)
        self.size = self.array.shape[-1]

    def get(self, indices: np.ndarray) -> torch.Tensor:
        return to_float(self.array[indices])


# -- pretrained weights: from a package, a user's file, or a local cache; never downloaded -----------
def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A ``state_dict`` from a ``.pt``/``.pth``/``.bin`` (``weights_only=True``) or ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state_dict of tensors")
    return dict(state)


def load_matching(model: nn.Module, state: Mapping[str, torch.Tensor],
                  skip_prefixes: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load ``state`` into ``model`` by name, or position by position when the names differ.

    Tensors whose target key starts with one of ``skip_prefixes`` (e.g. a replaced classifier head)
    are left as initialised. Position-wise mapping (e.g. a checkpoint of another implementation of the
    same architecture) requires the same number of tensors in the same order, every shape equal.
    Returns ``{"mapping": "by name" | "by position", "loaded": n, "skipped": [...]}``; raises
    ``ValueError`` when the checkpoint does not fit.
    """
    target = model.state_dict()
    keys = [k for k in target if not k.startswith(skip_prefixes)]
    if set(keys) <= set(state):
        pairs = [(k, k) for k in keys]
        mapping = "by name"
    else:
        src = list(state)
        if len(src) != len(target):
            raise ValueError(f"checkpoint has {len(src)} tensors, the model {len(target)}; cannot map by position")
        pairs = [(t, s) for t, s in zip(target, src) if not t.startswith(skip_prefixes)]
        mapping = "by position"
    bad = [(t, s, tuple(state[s].shape), tuple(target[t].shape)) for t, s in pairs if state[s].shape != target[t].shape]
    if bad:
        raise ValueError(f"shape mismatch mapping the checkpoint {mapping}: {bad[:3]}")
    new = dict(target)
    new.update({t: state[s].to(target[t].dtype) for t, s in pairs})
    model.load_state_dict(new)
    return {"mapping": mapping, "loaded": len(pairs), "skipped": [k for k in target if k.startswith(skip_prefixes)]}


def timm_cached_file(name: str) -> Path | None:
    """A weights file for timm model ``name`` already on this machine (Hugging Face or torch hub cache).

    Looks only: ``huggingface_hub.try_to_load_from_cache`` and the torch hub ``checkpoints`` folder; no
    network access.
    """
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # unknown name or no pretrained tag
        return None
    if cfg is None:
        return None
    hf_id = getattr(cfg, "hf_hub_id", None)
    if hf_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
                found = try_to_load_from_cache(hf_id, filename)
                if isinstance(found, str) and os.path.isfile(found):
                    return Path(found)
        except ImportError:  # pragma: no cover - timm depends on huggingface_hub
            pass
    url = getattr(cfg, "url", None)
    if url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
        if candidate.is_file() and candidate.suffix in (".pth", ".pt", ".bin", ".safetensors"):
            return candidate
    return None


def classifier_prefix(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefix of a timm model's classifier head (e.g. ``("classifier.",)``, ``("head.",)``)."""
    name = getattr(model, "pretrained_cfg", {}).get("classifier") if hasattr(model, "pretrained_cfg") else None
    names = name if isinstance(name, (list, tuple)) else [name] if name else []
    return tuple(f"{n}." for n in names)


def _load_into(model: nn.Module, arch: str, state: Mapping[str, torch.Tensor],
               create_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Load a backbone checkpoint into ``model`` (a timm ``arch``), keeping its new classifier head.

    First by name or position (:func:`load_matching`); when shapes differ (e.g. a ViT at another image
    or patch size), through timm's own checkpoint filter, handed the state dict in memory so that
    timm never looks for a download.
    """
    try:
        return load_matching(model, state, classifier_prefix(model))
    except ValueError as direct:
        import timm

        try:
            # pretrained=True only routes the in-memory state dict through timm's filter: timm's
            # _resolve_pretrained_source gives a passed "state_dict" priority over any URL or hub id.
            ref = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"state_dict": dict(state)},
                                    **create_kwargs)
        except Exception as exc:
            raise ValueError(f"checkpoint does not fit {arch}: {direct}; timm's filter: {exc}") from exc
        model.load_state_dict(ref.state_dict())
        return {"mapping": "timm checkpoint filter", "loaded": len(ref.state_dict()), "skipped": []}


def start_weights(model: nn.Module, arch: str, *, pretrained: str = "auto", weights: str | None = None,
                  package: Any = None, **create_kwargs: Any) -> dict[str, Any]:
    """Give a freshly built timm ``model`` its starting weights and say where they came from.

    Sources, in order: ``weights`` (a file the user names); with ``pretrained="auto"`` or
    ``"required"``, ``package()`` (a callable returning ``(state_dict, description)`` or ``None``, for
    weights shipped in a Python package) and then timm's local caches (:func:`timm_cached_file`).
    Nothing is downloaded. ``auto`` falls back to the random initialisation, ``required`` raises,
    ``none`` keeps it. ``create_kwargs`` are the ``timm.create_model`` arguments ``model`` was built
    with (``num_classes``, ``img_size``...). Returns the ``fit_info_`` entries.
    """
    if pretrained not in ("auto", "required", "none"):
        raise ValueError(f"pretrained must be 'auto', 'required' or 'none', got {pretrained!r}")
    if weights:
        info = _load_into(model, arch, load_state_file(weights), create_kwargs)
        return {"pretrained": True, "weights_source": f"file {weights}", **info}
    if pretrained == "none":
        return {"pretrained": False, "weights_source": "random init"}
    shipped = package() if package is not None else None
    if shipped is not None:
        state, where = shipped
        return {"pretrained": True, "weights_source": where, **_load_into(model, arch, state, create_kwargs)}
    cached = timm_cached_file(arch)
    if cached is not None:
        info = _load_into(model, arch, load_state_file(cached), create_kwargs)
        return {"pretrained": True, "weights_source": f"timm cache {cached}", **info}
    if pretrained == "required":
        raise FileNotFoundError(f"no local pretrained weights for {arch}: pass weights=PATH, install a package "
                                "that ships them, or put them in timm's cache (nothing is downloaded)")
    return {"pretrained": False, "weights_source": f"random init (no local weights for {arch})"}
