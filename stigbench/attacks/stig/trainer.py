"""Training loop of STIG (Lee, Jung, Seo, AAAI 2024, arXiv 2403.05093).

Per iteration, with A a batch of fakes and B a batch of reals drawn *independently* (unpaired; the
pools may differ in size): one update of the discriminators D and D_s, then one of G and the PatchNCE
heads H:

* D / D_s: LSGAN, real spectra / profiles -> 1, refined fakes -> 0 (mean of the two terms each);
* G / H: ``w_gan * LSGAN(D(G(M_A)) -> 1) + w_psd * LSGAN(D_s(P(x^_A)) -> 1)
  + w_nce * [NCE(M_A, G(M_A)) + NCE(M_B, G(M_B))] + w_ssim_identity * (1 - SSIM(x_B, x^_B))
  + w_ssim_content * (1 - SSIM(x_A, x^_A)) + w_lf * [LF(G(M_A), M_A) + LF(G(M_B), M_B)]``.

A step reads as these losses (the shape of CUT's ``compute_D_loss`` / ``compute_G_loss``): one forward
pass (:meth:`StigTrainer.forward`), the discriminators' losses (:meth:`~StigTrainer.d_losses`) and G's
named terms (:meth:`~StigTrainer.g_terms`), weighted by the fields :data:`G_TERMS` names
(:meth:`~StigTrainer.g_loss`); ``train_log.csv``, ``fit_info.json`` and the progress bar read the same
names (:data:`LOSS_NAMES`).

Each image is transformed once; G runs once on A and B together and its encoder features of that pass
are the PatchNCE keys; the encoder runs once more on G's outputs for the queries; the refined fakes are
transformed once for their profile. Adam with a learning rate that is constant for the first
``constant_lr_fraction`` of the iterations and then decays linearly to 0 (counted in iterations, so it is
right for any batch size).

Options beyond the paper (off in the ``paper`` preset): ``d_input="image"`` shows D the spectrum of the
rebuilt image instead of G's raw output; ``profile_scale="none"`` gives D_s the profile without the
per-image min-max scaling; ``ema > 0`` keeps a moving average of G's weights, updated after every G step,
and that average is the refiner; ``symmetric`` makes G's output Hermitian-symmetric and ``periodic``
refines the periodic component of each image (see :mod:`.translator`); ``w_mean`` adds
``w_mean * MM(x^_A, x_B)``, moment matching of the rebuilt fakes' normalised spectra (and, with
``match_luma``, of their luma spectrum) to the reals', which stops pushing once they agree
(:class:`~.losses.MeanMatchingLoss`); ``w_spec_identity`` adds ``w_spec_identity * |G(M_B) - M_B|``, an
identity term on the reals' spectra at every frequency, so that what G changes depends on the input
looking fake. A held-out selection set chooses the refiner that is kept (:mod:`.selection`).

Every random draw (batch order per pool and epoch, PatchNCE locations per iteration) is a function of
``(seed, iteration)``, so a run resumed from a checkpoint continues exactly as if uninterrupted.

Under torchrun (:mod:`stigbench.core.distributed`) every rank takes its contiguous slice of the same
global batch, G, D, D_s and H are wrapped in DistributedDataParallel, the moment-matching statistics
are summed over ranks (so they are the global batch's), and only rank 0 evaluates the selection set
and writes the log (whose losses are then those of rank 0's slice) and checkpoints; every rank
resumes from rank 0's checkpoint.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stigbench.core import distributed
from stigbench.core.contracts import ImageSetLike
from stigbench.core.device import autocast, torch_rng
from stigbench.core.imageset import (
    ImageSet,
    progress_bar,
    random_access_array,
    to_float,
)
from stigbench.core.io import atomic_write

from .losses import (
    SSIM,
    LowFrequencyLoss,
    LSGANLoss,
    MeanMatchingLoss,
    PatchNCELoss,
    gather_patches,
    sample_locations,
)
from .networks import (
    PatchProjector,
    ProfileDiscriminator,
    SpectrumDiscriminator,
    UNetPlusPlus,
)
from .presets import StigPreset
from .selection import COLUMNS as SELECT_COLUMNS
from .selection import CRITERION, MIN_SELECTION, IndexedSet, Selection, carve
from .translator import Moments, SpectrumTranslator, spectral_profile

log = logging.getLogger("stigbench")

CHECKPOINT = "checkpoint.pt"
TRAIN_LOG = "train_log.csv"
#: G's loss terms, each with the StigPreset field that weighs it; ``G = Σ weight · term``. PatchNCE and
#: the low-frequency loss act on fakes and reals under one weight, as in the paper's formula (the pair is
#: added before it is weighted).
G_TERMS: dict[str, str] = {
    "gan": "w_gan",  # LSGAN on D's verdict on the refined spectrum
    "psd": "w_psd",  # LSGAN on D_s's verdict on the refined profile
    "mean": "w_mean",  # moment matching of refined-fake and real spectra (losses.MeanMatchingLoss)
    "nce_fake": "w_nce", "nce_real": "w_nce",  # PatchNCE, fakes and reals
    "ssim_identity": "w_ssim_identity",  # 1 - SSIM(real, refined real)
    "spec_identity": "w_spec_identity",  # L1 between a real's spectrum and G's output for it
    "ssim_content": "w_ssim_content",  # 1 - SSIM(fake, refined fake)
    "lf_fake": "w_lf", "lf_real": "w_lf",  # low-frequency loss, fakes and reals
}
#: Every logged loss: the discriminators', G's total, then G's terms.
LOSS_NAMES = ("D", "D_s", "G", *G_TERMS)
# The running losses the progress bar shows (those whose weight is > 0): the adversarial game at a glance.
_BAR_TERMS = ("gan", "psd", "mean", "nce_fake", "lf_fake")
LOG_FIELDS = ("iteration", "lr", "seconds", *LOSS_NAMES, *SELECT_COLUMNS)
# A pool of 8-bit images (an ImageSet) is held as uint8 in memory up to this size, beyond it in a
# memory-mapped scratch file; any other image set is held as float32 up to this size, beyond it read
# image by image. Either way memory stays flat in the training set's size.
_CACHE_BYTES = 256 << 20


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


def _seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (seed, stream, counter)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]) >> 1


def build_translator(config: StigPreset, size: int) -> SpectrumTranslator:
    """G (UNet++) with the spectrum normalisation of ``config``, for ``size x size`` images."""
    g = UNetPlusPlus(levels=config.levels, width=config.width, norm=config.norm, upsample=config.upsample,
                     identity_init=config.identity_init, padding=config.padding)
    return SpectrumTranslator(g, config.spectrum_norm, size, symmetric=config.symmetric, periodic=config.periodic)


def total_iterations(config: StigPreset, n_fake: int) -> int:
    """``iterations``, or ``ceil(epochs * n_fake / batch_size)`` when the preset counts epochs, but at
    least ``min_iterations``."""
    if config.iterations is not None:
        return int(config.iterations)
    return max(1, int(config.min_iterations), math.ceil(config.epochs * n_fake / config.batch_size))


class _Pool:
    """An image set sampled in epochs of seeded random permutations (stateless in the iteration)."""

    def __init__(self, images: ImageSetLike, seed: int, stream: int) -> None:
        self.set, self.n, self.seed, self.stream = images, len(images), seed, stream
        if self.n == 0:
            raise ValueError("cannot train STIG on an empty image set")
        size = images[0].shape[-1]
        self.array: np.ndarray | None = None
        self.cache: torch.Tensor | None = None
        if isinstance(images, ImageSet):
            self.array = random_access_array(images, _CACHE_BYTES)
        elif self.n * 3 * size * size * 4 <= _CACHE_BYTES:
            self.cache = torch.cat(list(images.batches(256)))
        self._perm: tuple[int, torch.Tensor] | None = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(_seed(self.seed, self.stream, epoch))
            self._perm = (epoch, torch.randperm(self.n, generator=g))
        return self._perm[1]

    def batch(self, iteration: int, batch_size: int, part: tuple[int, int] | None = None) -> torch.Tensor:
        """Global batch ``iteration`` of ``batch_size`` images, or its slice ``part`` (a rank's share)."""
        start, stop = part if part is not None else (0, batch_size)
        ks = range(iteration * batch_size + start, iteration * batch_size + stop)
        idx = [int(self._permutation(k // self.n)[k % self.n]) for k in ks]
        if self.array is not None:
            return to_float(self.array[idx])
        if self.cache is not None:
            return self.cache[idx]
        return torch.stack([self.set[i] for i in idx])

    def batches(self, batch_size: int):
        if self.array is not None:
            return (to_float(self.array[start:start + batch_size]) for start in range(0, self.n, batch_size))
        if self.cache is not None:
            return iter(self.cache.split(batch_size))
        return self.set.batches(batch_size)


def _carve_selection(config: StigPreset, fake_set: ImageSetLike, real_set: ImageSetLike
                     ) -> tuple[ImageSetLike, Selection | None, str]:
    """``(training fakes, selection or None, why)``: the selection fakes are carved out of the given
    (training) fakes, so the refiner never trains on them; every real trains and is the reference
    (see :mod:`.selection`)."""
    if config.select_fraction == 0:
        return fake_set, None, "selection off (select_fraction = 0): the last refiner is kept"
    fk, fs = carve(len(fake_set), config.select_fraction, config.seed, 4)
    if len(fs) < MIN_SELECTION:
        why = (f"too few fakes for a selection set: {config.select_fraction:.0%} of {len(fake_set)} fakes is {len(fs)}, "
               f"at least {MIN_SELECTION} are needed; trained on every fake and kept the last refiner")
        log.warning("stig: %s", why)
        return fake_set, None, why
    selection = Selection(IndexedSet(fake_set, fs), real_set, config.refine_batch_size, seed=config.seed)
    # An ImageSet's own subset keeps it one, so its pool can hold it as 8-bit (same floats either way).
    train = fake_set.subset(fk) if isinstance(fake_set, ImageSet) else IndexedSet(fake_set, fk)
    return train, selection, ""


@dataclass(frozen=True)
class _Forward:
    """One iteration's forward pass (fakes first, then reals, ``B`` each on this rank): normalised
    spectra ``z`` and G's output ``zh`` (``zh_a``: its fake half), the rebuilt images (``xh_a`` fakes,
    ``xh_b`` reals), G's encoder features of that pass (the PatchNCE keys), what D judges as refined
    and both discriminators' profiles."""

    B: int
    xa: torch.Tensor
    xb: torch.Tensor
    smooth: torch.Tensor | None
    z: torch.Tensor
    zh: torch.Tensor
    zh_a: torch.Tensor
    xh_a: torch.Tensor
    xh_b: torch.Tensor
    feats_k: list[torch.Tensor]
    image_z: torch.Tensor
    d_fake: torch.Tensor
    prof_real: torch.Tensor
    prof_fake: torch.Tensor


class StigTrainer:
    """Owns the networks, optimisers and schedule of one STIG training run.

    Args:
        config: resolved hyper-parameters.
        fake_set, real_set: unpaired training images (same size, any counts).
        device, precision: resolved (see :mod:`stigbench.core.device`); spectra and losses stay float32.
        log_dir: where ``train_log.csv`` and ``checkpoint.pt`` go (``None``: nothing is written).
        progress: show a tqdm bar with the running losses.
    """

    def __init__(self, config: StigPreset, fake_set: ImageSetLike, real_set: ImageSetLike, *,
                 device: torch.device, precision: str, log_dir: str | Path | None = None,
                 progress: bool = True) -> None:
        self.config, self.device, self.precision = config, device, precision
        self.log_dir = Path(log_dir) if log_dir is not None else None
        # Under torchrun every rank trains; rank 0 alone selects, logs and checkpoints.
        self.world = distributed.active()
        self.leader = self.world is None or self.world.is_leader
        distributed.check_global_batch(config.batch_size, "STIG's batch size")
        self.part = distributed.shard(config.batch_size)
        self.loss_weight = distributed.loss_weight(config.batch_size)
        self.progress = progress and self.leader
        size = fake_set[0].shape[-1]
        if real_set[0].shape[-1] != size:
            raise ValueError(f"fakes are {size}² but reals {real_set[0].shape[-1]}²")
        if size < 32:
            # D's fourth stride-2 stage would reach 1x1, where InstanceNorm has nothing to normalise.
            raise ValueError(f"STIG needs images of at least 32x32 (the spectrum PatchGAN), got {size}x{size}")
        self.size = size
        train_fakes, self.selection, self.selection_reason = _carve_selection(config, fake_set, real_set)
        self.fakes = _Pool(train_fakes, config.seed, 1)
        self.reals = _Pool(real_set, config.seed, 2)
        self.total = total_iterations(config, self.fakes.n)
        self.select_every = max(1, math.ceil(self.total / config.select_evals))
        # The best refiner so far by the selection criterion: (iteration, value, state_dict on the CPU),
        # and the criterion of the unrefined selection fakes (iteration 0), which says whether to trust it.
        self.best: tuple[int, float, dict[str, torch.Tensor]] | None = None
        self.signal: float | None = None

        c = config
        self.nce_layers = list(c.nce_layers)
        with torch_rng(c.seed):  # initialisation is a function of the seed only
            self.translator = build_translator(c, size)
            self.G.check_size(size, size)
            self.D = SpectrumDiscriminator(c.d_width)
            self.D_s = ProfileDiscriminator(size // 2 + 1)
            self.H = PatchProjector([self.G.widths[i] for i in self.nce_layers], c.nce_dim)
        # With match_luma the luma spectrum is a fourth channel: most detectors read the grey image, whose
        # magnitude also depends on how the colour channels' phases line up, which per-channel matching
        # does not see.
        self.mean_match = MeanMatchingLoss((3 + c.match_luma, size, size), moments=c.match_moments)
        # Exponential moving average of G's weights (Karras et al., "Progressive Growing of GANs", ICLR
        # 2018): the refiner that is kept. A GAN's iterates circle around the equilibrium instead of
        # settling on it; their average lands closer to it than wherever the last step happened to stop.
        self.ema = copy.deepcopy(self.translator).requires_grad_(False) if c.ema > 0 else None
        for net in self.nets.values():
            net.to(device)
        # The module each backward's one DDP forward goes through (the modules themselves without torchrun).
        self.ddp = {name: distributed.wrap(getattr(self, name)) for name in ("G", "D", "D_s", "H")}
        self.lsgan, self.nce = LSGANLoss(), PatchNCELoss(c.nce_temperature)
        self.ssim, self.lf = SSIM().to(device), LowFrequencyLoss(c.lf_sigma)

        # The fused kernel is the same Adam, 4x faster on CPU for the paper's 26 M parameters.
        adam = {"lr": c.lr, "betas": (c.beta1, c.beta2), "fused": device.type in ("cpu", "cuda")}
        self.opt_G = torch.optim.Adam([*self.G.parameters(), *self.H.parameters()], **adam)
        self.opt_D = torch.optim.Adam([*self.D.parameters(), *self.D_s.parameters()], **adam)
        n_const = round(c.constant_lr_fraction * self.total)

        def factor(it: int) -> float:  # LR multiplier for the step taken at iteration `it` (0-based)
            return 1.0 if it < n_const else max(0.0, (self.total - it) / max(1, self.total - n_const))

        self.sched_G = torch.optim.lr_scheduler.LambdaLR(self.opt_G, factor)
        self.sched_D = torch.optim.lr_scheduler.LambdaLR(self.opt_D, factor)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

        self.iteration = 0
        self.train_seconds = 0.0
        self.history: list[dict[str, float]] = []
        self._stats_ready = False

    # -- bookkeeping -------------------------------------------------------------------------------
    @property
    def G(self) -> UNetPlusPlus:
        return self.translator.generator

    @property
    def nets(self) -> dict[str, nn.Module]:
        nets = {"translator": self.translator, "D": self.D, "D_s": self.D_s, "H": self.H, "mean_match": self.mean_match}
        if self.ema is not None:
            nets["ema"] = self.ema
        return nets

    @property
    def refiner(self) -> SpectrumTranslator:
        """The translator to refine with: the weight average when ``ema`` is on, else G as trained."""
        return self.ema if self.ema is not None else self.translator

    def _fingerprint(self) -> str:
        """What a checkpoint must agree on to be resumed (not bookkeeping such as checkpoint_every)."""
        config = {k: v for k, v in self.config.params().items() if k not in ("checkpoint_every", "refine_batch_size")}
        return json.dumps({"config": config, "size": self.size, "total": self.total,
                           "n_fake": self.fakes.n, "n_real": self.reals.n}, sort_keys=True)

    def state_dict(self) -> dict:
        state = {name: net.state_dict() for name, net in self.nets.items()}
        state.update(
            fingerprint=self._fingerprint(), iteration=self.iteration, train_seconds=self.train_seconds,
            opt_G=self.opt_G.state_dict(), opt_D=self.opt_D.state_dict(),
            sched_G=self.sched_G.state_dict(), sched_D=self.sched_D.state_dict(),
            scaler=self.scaler.state_dict(), rng_cpu=torch.get_rng_state(),
        )
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        if self.best is not None:
            state["best"] = {"iteration": self.best[0], "value": self.best[1], "translator": self.best[2]}
        if self.signal is not None:
            state["selection_signal"] = self.signal
        return state

    def load_state_dict(self, state: dict) -> None:
        if state["fingerprint"] != self._fingerprint():
            raise ValueError(
                "the checkpoint belongs to a run with other hyper-parameters or data "
                f"(checkpoint: {state['fingerprint']}; this run: {self._fingerprint()}); use a fresh log_dir"
            )
        for name, net in self.nets.items():
            net.load_state_dict(state[name])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.sched_G.load_state_dict(state["sched_G"])
        self.sched_D.load_state_dict(state["sched_D"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"].cpu())
        if "rng_cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng_cuda"]])
        self.iteration = int(state["iteration"])
        self.train_seconds = float(state["train_seconds"])
        best = state.get("best")
        self.best = None if best is None else (int(best["iteration"]), float(best["value"]), best["translator"])
        signal = state.get("selection_signal")
        self.signal = None if signal is None else float(signal)
        self._stats_ready = True

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the whole training state atomically (temp file, then ``os.replace``)."""
        state = self.state_dict()
        return atomic_write(path, lambda p: torch.save(state, p))

    def load_checkpoint(self, path: str | Path) -> None:
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))

    def resume(self) -> bool:
        """Load ``log_dir/checkpoint.pt`` and the log rows up to it, if there is one."""
        if self.log_dir is None or not (self.log_dir / CHECKPOINT).is_file():
            return False
        self.load_checkpoint(self.log_dir / CHECKPOINT)
        log_path = self.log_dir / TRAIN_LOG
        if log_path.is_file():
            with log_path.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["iteration"]) <= self.iteration]
            # The iteration-0 row holds only the selection criteria (no step was taken yet).
            self.history = [{k: float(r[k]) for k in LOSS_NAMES} for r in rows if r[LOSS_NAMES[0]] != ""]
            if self.leader:
                self._rewrite_log(rows)  # drop rows written after the checkpoint
        return True

    def _rewrite_log(self, rows: Sequence[dict]) -> None:
        def write(p: Path) -> None:
            with p.open("w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=LOG_FIELDS, restval="")
                w.writeheader()
                w.writerows(rows)

        atomic_write(self.log_dir / TRAIN_LOG, write)

    def final_losses(self, last: int = 50) -> dict[str, float]:
        """Mean of each loss over the last ``last`` logged steps."""
        rows = self.history[-last:]
        return {k: float(np.mean([r[k] for r in rows])) for k in LOSS_NAMES} if rows else {}

    # -- training ----------------------------------------------------------------------------------
    def _prepare(self) -> None:
        """Statistics of the spectrum normalisation (reals), of D_s's input (reals and fakes, the
        standardisation a detector would fit on its training set) and, with ``match_luma``, of the
        reals' luma spectrum: one pass, one FFT per image (two with the luma)."""
        if self._stats_ready:
            return
        spec, prof, luma = self.translator.real_stats_moments(), Moments((0,)), Moments((0,))
        with_luma = self.config.w_mean > 0 and self.config.match_luma
        for pool in (self.reals, self.fakes):
            for batch in pool.batches(256):
                batch = batch.to(self.device)
                lm, _, smooth = self.translator.analyse(batch)
                if pool is self.reals and self.translator.needs_real_stats:
                    spec.add(lm)
                if pool is self.reals and with_luma:
                    luma.add(self.translator.spectrum_of(batch, smooth, luma=True))
                prof.add(spectral_profile(lm, self.config.rings, self.config.profile_scale))
        if self.translator.needs_real_stats:
            self.translator.set_real_stats(*spec.result())
        if with_luma:
            mean, std = luma.result()
            self.mean_match.shift[3:].copy_(mean)
            self.mean_match.scale[3:].copy_(std)
        if self.ema is not None:
            self.ema.load_state_dict(self.translator.state_dict())  # same start, same statistics
        self.D_s.set_stats(*prof.result())
        self._stats_ready = True

    def forward(self) -> _Forward:
        """This iteration's batches through G once: what the D loss and G's terms both read."""
        c, it = self.config, self.iteration
        B = self.part[1] - self.part[0]  # this rank's share of the global batch (all of it without torchrun)
        xa = self.fakes.batch(it, c.batch_size, self.part).to(self.device, non_blocking=True)
        xb = self.reals.batch(it, c.batch_size, self.part).to(self.device, non_blocking=True)
        lm, phase, smooth = self.translator.analyse(torch.cat([xa, xb]))  # one FFT per input image
        z, stats = self.translator.normalise(lm)
        prof_real = spectral_profile(lm[B:], c.rings, c.profile_scale)
        with autocast(self.device, self.precision):
            zh, feats_k = self.ddp["G"](z, self.nce_layers)  # fakes and reals in one pass; its features are the keys
        zh = self.translator.finish(zh.float())
        xh = self.translator.reconstruct(zh, stats, phase, smooth)
        # One view per half, made once: autograd sums the gradients reaching a tensor in the order its
        # uses were created, and this order is the one every earlier version computed (same bits).
        zh_a, xh_a, xh_b = zh[:B], xh[:B], xh[B:]
        lm_hat_a = self.translator.spectrum_of(xh_a, None if smooth is None else smooth[:B])
        prof_fake = spectral_profile(lm_hat_a, c.rings, c.profile_scale)  # from the rebuilt image: grads reach G
        image_z = self.translator.normalise(lm_hat_a)[0]  # the spectrum of the image the attack outputs
        # What D judges as the refined spectrum: G's raw output (paper) or the spectrum of the image the
        # attack actually outputs. G's raw output need not be the magnitude of any real image (no
        # Hermitian symmetry; clamping to [0, 1] changes it), which D can learn to spot instead of
        # comparing with the reals.
        d_fake = zh_a if c.d_input == "generator" else image_z
        return _Forward(B=B, xa=xa, xb=xb, smooth=smooth, z=z, zh=zh, zh_a=zh_a, xh_a=xh_a, xh_b=xh_b,
                        feats_k=feats_k, image_z=image_z, d_fake=d_fake, prof_real=prof_real, prof_fake=prof_fake)

    def d_losses(self, f: _Forward) -> dict[str, torch.Tensor]:
        """LSGAN losses of D (spectra) and D_s (profiles): reals -> 1, refined fakes -> 0."""
        with autocast(self.device, self.precision):
            return {"D": 0.5 * (self.lsgan(self.D(f.z[f.B:]), True) + self.lsgan(self.ddp["D"](f.d_fake.detach()), False)),
                    "D_s": 0.5 * (self.lsgan(self.D_s(f.prof_real), True)
                                  + self.lsgan(self.ddp["D_s"](f.prof_fake.detach()), False))}

    def g_terms(self, f: _Forward) -> dict[str, torch.Tensor]:
        """G's loss terms (:data:`G_TERMS`), unweighted, against the discriminators as they are now."""
        c, B = self.config, f.B
        with autocast(self.device, self.precision):
            terms = {"gan": self.lsgan(self.D(f.d_fake), True), "psd": self.lsgan(self.D_s(f.prof_fake), True),
                     "mean": self._moment_matching(f)}
            feats_q = self.G.encode(f.zh, self.nce_layers)
            g = torch.Generator().manual_seed(_seed(c.seed, 3, self.iteration))
            nce_a, nce_b = [], []
            for k, (fq, fk) in enumerate(zip(feats_q, f.feats_k)):
                loc = sample_locations(fq.shape[-2], fq.shape[-1], c.nce_patches, g, self.device)
                q = (self.ddp["H"] if k == 0 else self.H)(k, gather_patches(fq, loc))
                with torch.no_grad():  # keys are targets: detached (CUT)
                    key = self.H(k, gather_patches(fk, loc))
                nce_a.append(self.nce(q[:B], key[:B]))
                nce_b.append(self.nce(q[B:], key[B:]))
        terms["nce_fake"], terms["nce_real"] = torch.stack(nce_a).mean(), torch.stack(nce_b).mean()
        terms["ssim_identity"] = 1 - self.ssim(f.xb, f.xh_b)
        # Identity on the reals' spectra at every frequency (Taigman et al., ICLR 2017; Zhu et al., ICCV
        # 2017): a real must come out as it went in, so whatever G changes it must make conditional on
        # the input looking fake, not apply to every image (which makes refined reals "more real").
        terms["spec_identity"] = (f.zh[B:] - f.z[B:]).abs().mean()
        terms["ssim_content"] = 1 - self.ssim(f.xa, f.xh_a)
        terms["lf_fake"], terms["lf_real"] = self.lf(f.zh_a, f.z[:B]), self.lf(f.zh[B:], f.z[B:])
        return {name: terms[name] for name in G_TERMS}

    def _moment_matching(self, f: _Forward) -> torch.Tensor:
        if self.config.w_mean == 0:  # off (the paper): no statistics to track
            return torch.zeros((), device=self.device)
        if not self.config.match_luma:
            return self.mean_match(f.image_z, f.z[f.B:])
        smooth = f.smooth
        s_a, s_b = (None, None) if smooth is None else (smooth[:f.B], smooth[f.B:])
        spectrum = self.translator.spectrum_of
        return self.mean_match(torch.cat([f.image_z, spectrum(f.xh_a, s_a, luma=True)], 1),
                               torch.cat([f.z[f.B:], spectrum(f.xb, s_b, luma=True)], 1))

    def g_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """``Σ weight · term`` over :data:`G_TERMS`; terms that share a weight are added before it applies."""
        c = self.config
        groups: dict[str, torch.Tensor] = {}
        for name, weight in G_TERMS.items():
            groups[weight] = terms[name] if weight not in groups else groups[weight] + terms[name]
        total: torch.Tensor | None = None
        for weight, value in groups.items():
            total = getattr(c, weight) * value if total is None else total + getattr(c, weight) * value
        assert total is not None
        if self.loss_weight != 1.0:
            # Uneven torchrun slices: weight the per-image terms; the moment matching is the global batch's.
            total = (total - c.w_mean * terms["mean"]) * self.loss_weight + c.w_mean * terms["mean"]
        return total

    def step(self) -> dict[str, float]:
        """One D/D_s update and one G/H update; returns the losses by name (:data:`LOSS_NAMES`)."""
        for net in self.nets.values():
            net.train()
        f = self.forward()

        self.D.requires_grad_(True)
        self.D_s.requires_grad_(True)
        d = self.d_losses(f)
        loss_d = d["D"] + d["D_s"]
        self.opt_D.zero_grad(set_to_none=True)
        self.scaler.scale(loss_d if self.loss_weight == 1.0 else loss_d * self.loss_weight).backward()
        self.scaler.step(self.opt_D)

        self.D.requires_grad_(False)
        self.D_s.requires_grad_(False)
        terms = self.g_terms(f)
        loss_g = self.g_loss(terms)
        self.opt_G.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_G)
        self.scaler.update()
        self._update_average()
        self.sched_G.step()
        self.sched_D.step()
        self.iteration += 1

        losses = {**d, "G": loss_g, **terms}
        values = torch.stack([losses[k] for k in LOSS_NAMES]).detach().float().cpu().tolist()  # one device sync
        return dict(zip(LOSS_NAMES, values))

    def _update_average(self) -> None:
        if self.ema is None:
            return
        with torch.no_grad():
            for avg, p in zip(self.ema.parameters(), self.translator.parameters()):
                avg.lerp_(p, 1.0 - self.config.ema)
            # Buffers are statistics, not weights (BatchNorm's running moments with norm="batch"):
            # the average keeps G's current ones rather than the ones it started with.
            for avg, b in zip(self.ema.buffers(), self.translator.buffers()):
                avg.copy_(b)

    def evaluate_selection(self) -> dict[str, float]:
        """Refine the selection fakes with the current refiner and measure the criteria; remember the
        refiner if it is the best so far (ties keep the earlier one: fewer updates, the same distance)."""
        if self.selection is None or not self.leader:
            return {}
        refiner = self.refiner.eval()
        ac = autocast(self.device, self.precision)

        def refine(batch: torch.Tensor) -> torch.Tensor:
            with ac:
                return refiner(batch.to(self.device)).float()

        values = self.selection.evaluate(refine)
        value = values[CRITERION]
        if self.iteration == 0:
            self.signal = value
        if self.best is None or value < self.best[1]:
            state = {k: v.detach().cpu().clone() for k, v in refiner.state_dict().items()}
            self.best = (self.iteration, value, state)
        return values

    def _due(self) -> bool:
        return self.selection is not None and (self.iteration % self.select_every == 0 or self.iteration == self.total)

    @property
    def selects(self) -> bool:
        """Whether the kept refiner is the selection's best: there is a selection set and it sees the
        fingerprint of the unrefined fakes above its noise floor (:mod:`.selection`)."""
        return self.selection is not None and self.signal is not None and self.selection.sees(self.signal)

    def kept_refiner(self) -> SpectrumTranslator:
        """The refiner to keep: the best on the selection set when the selection can see, else the last one."""
        if not self.selects or self.best is None:
            return self.refiner.eval()
        kept = build_translator(self.config, self.size).to(self.device)
        kept.load_state_dict(self.best[2])
        return kept.eval()

    def selection_info(self) -> dict:
        """What ``fit_info.json`` records about the selection (see :mod:`.selection`)."""
        sel, best = self.selection, self.best
        info = {"criterion": CRITERION, "every": self.select_every if sel is not None else None,
                "n_fake": sel.n_fake if sel is not None else 0, "n_real": sel.n_real if sel is not None else 0,
                "signal": _round(self.signal), "noise_floor": _round(sel.floor if sel is not None else None),
                "noise_floor_median": _round(sel.floor_median if sel is not None else None),
                "best_iteration": best[0] if best is not None else None,
                "best_value": _round(best[1] if best is not None else None),
                "kept": "best" if self.selects else "last", "reason": self.selection_reason}
        if sel is not None and not info["reason"]:
            if self.selects:
                info["reason"] = (f"kept the refiner with the lowest {CRITERION} on {sel.n_fake} held-out fakes "
                                  f"(unrefined: {self.signal:.4g}, above the noise floor {sel.floor:.4g})")
            elif sel.floor is None:
                info["reason"] = (f"too few reals ({sel.n_real}) to draw the criterion's noise floor for "
                                  f"{sel.n_fake} selection fakes; kept the last refiner")
            elif self.signal is not None:
                info["reason"] = (f"the selection set cannot see these fakes: {CRITERION} of the {sel.n_fake} unrefined "
                                  f"selection fakes ({self.signal:.4g}) is within the noise floor of reals against "
                                  f"reals ({sel.floor:.4g}); kept the last refiner of the full budget")
        return info

    def train(self, steps: int | None = None) -> None:
        """Run ``steps`` more iterations (default: to the end), logging and checkpointing into ``log_dir``."""
        self._prepare()
        end = self.total if steps is None else min(self.total, self.iteration + steps)
        writer = fh = None
        if self.log_dir is not None and self.leader:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / TRAIN_LOG
            new = not log_path.is_file() or self.iteration == 0
            fh = log_path.open("w" if new else "a", newline="")
            writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS, restval="")
            if new:
                writer.writeheader()
        if self.iteration == 0 and self.best is None and self.selection is not None:
            # The starting point is a candidate: a run that never gets closer keeps it.
            initial = self.evaluate_selection()
            if writer is not None:
                writer.writerow({"iteration": 0, "lr": self.opt_G.param_groups[0]["lr"], "seconds": 0.0, **initial})
        # progress_bar also honours the run's --quiet (stigbench.core.imageset.set_progress).
        bar = progress_bar(self.total, "stig" if self.progress else None, unit="it", initial=self.iteration)
        try:
            while self.iteration < end:
                lr = self.opt_G.param_groups[0]["lr"]
                t0 = time.perf_counter()
                losses = self.step()
                self.train_seconds += time.perf_counter() - t0
                self.history.append(losses)
                selected = self.evaluate_selection() if self._due() else {}
                if writer is not None:
                    writer.writerow({"iteration": self.iteration, "lr": lr, "seconds": round(self.train_seconds, 3),
                                     **losses, **selected})
                bar.update(1)
                if self.iteration % 10 == 0 or self.iteration == end:
                    # Only the terms that move G (a loss at weight 0 would read as if it mattered).
                    shown = [k for k in _BAR_TERMS if getattr(self.config, G_TERMS[k]) > 0]
                    post = {k: f"{losses[k]:.3g}" for k in ("D", *shown)}
                    if self.best is not None:
                        post["best"] = f"{self.best[1]:.4f}@{self.best[0]}"
                    bar.set_postfix(post)
                if fh is not None and (self.iteration % self.config.checkpoint_every == 0
                                       or self.iteration == self.total):
                    fh.flush()
                    self.save_checkpoint(self.log_dir / CHECKPOINT)
        finally:
            bar.close()
            if fh is not None:
                fh.close()
