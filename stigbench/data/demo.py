"""The embedded ``demo`` dataset: a small, synthetic real/fake set built offline in seconds.

Why it exists: the benchmark must run end to end on a fresh machine with no download. So the demo
dataset is *built*, deterministically for a seed, from material that ships with the dependencies.

**Reals** need natural-image statistics, above all a power spectrum close to ``1/f^2``, because that
is what frequency detectors and STIG compare fakes against.

* About a third are native-resolution, non-overlapping crops of the lossless RGB photographs shipped
  inside the scikit-image wheel (``astronaut``, ``chelsea``, ``coffee``, ``ihc``; licences in
  :data:`PHOTOS`). They are read from the package folder with Pillow, never through
  ``skimage.data``'s fetcher, so nothing can be downloaded. The JPEG samples are left out on purpose:
  their 8x8 block artefacts would put grid peaks into the *real* spectra.
* The rest are dead-leaves images (Lee, Mumford & Huang, "Occlusion models for natural images: a
  statistical study of a scale-invariant dead leaves model", IJCV 2001): opaque discs with radii
  distributed as ``r^-3`` occlude each other, which makes the image scale invariant with a ``1/f^2``
  power spectrum. Disc colours are drawn from the photos' pixels; rendering at 4x supersampling
  followed by a box downsample anti-aliases the edges like a camera's pixel integration, and faint
  Gaussian sensor noise is added before 8-bit quantisation.

**Fakes** come from a small convolutional autoencoder trained here on those reals. Its decoder
up-samples with stride-2 transposed convolutions, which leave the checkerboard artefacts of Odena et
al. ("Deconvolution and checkerboard artifacts", Distill 2016) — in the spectrum, periodic peaks on
the ``N/8`` grid, strongest at ``N/2`` (Nyquist) — and a high-frequency deficit, the two anomalies
Durall et al. ("Watch your up-convolution", CVPR 2020) describe for GANs. Fakes decode *new* latents
(convex mixes of the codes of two reals plus noise), so they are generated, not reconstructions.

This is a stand-in for a real GAN or diffusion dataset, and the manifest says so.
Its fakes are far easier to tell apart (LFD 0.9) than real generators' (0.015-0.10):
:mod:`stigbench.data.demo_families` builds ``demo-gan`` and ``demo-diffusion`` from the same pictures,
calibrated to that regime.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version as _package_version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from stigbench.core.io import sha256_file
from stigbench.data.demo_training import train_steps

# Bump whenever the images a given (seed, size, n_real, n_fake) produce change.
DEMO_VERSION: str = "3"  # 2: one-thread generator training; 3: photo quadrants as groups

DATASET_ID = "stigbench-demo"
GROUP_PATTERN = r"^(?P<group>.+)_\d+$"
_MANIFEST = "manifest.json"

# Dead leaves. Radii in output pixels; r_min of 1 px keeps the 1/f^2 law up to mid frequencies at a moderate disc
# count, and enough discs are drawn that on average each point is covered _LEAVES_COVER times, so the
# background shows through at about e^-5 < 1 % of the pixels.
_SUPERSAMPLE = 4
_R_MIN = 1.0
_LEAVES_COVER = 5.0
_NOISE_SIGMA = 0.004  # ~1 grey level: faint sensor noise, like a clean camera image

# Generator training: small enough for a few seconds on two CPU cores, long enough to give blurry
# but recognisable decodings while the transposed convolutions still print their fingerprint.
_WIDTH = 16
_TRAIN_STEPS = 300
_BATCH = 32
_LR = 2e-3
_MIX = (0.25, 0.75)  # mixing weight range of the two codes a fake's latent blends
_LATENT_NOISE = 0.05  # latent noise, relative to the std of the training codes
_CHUNK = 256  # images per forward pass when encoding/decoding, keeps memory flat


@dataclass(frozen=True)
class Photo:
    """A lossless photograph shipped inside the scikit-image wheel and its licence."""

    name: str
    file: str
    credit: str
    licence: str


PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", "astronaut.png", "Eileen Collins; NASA Great Images database", "public domain"),
    Photo("chelsea", "chelsea.png", "Stefan van der Walt", "CC0"),
    Photo("coffee", "coffee.png", "Rachel Michetti (Pikolo Espresso Bar)", "CC0"),
    Photo("ihc", "ihc.png", "Center for Microscopy And Molecular Imaging (CMMI)", "no known copyright restrictions"),
)


def build_demo(root: Path, *, seed: int = 0, size: int = 64, n_real: int = 480, n_fake: int = 480,
               progress: bool = True) -> dict[str, Any]:
    """Write ``root/real/*.png`` and ``root/fake/*.png`` (8-bit RGB, ``size x size``) and return the
    manifest, which is also written to ``root/manifest.json``.

    File stems are ``<group>_<k>`` (:data:`GROUP_PATTERN`): the crops of one quadrant of a photo share
    the group ``<photo>-q<0..3>``,
    every dead-leaves image and every fake is its own group. If ``root`` already holds a build with the
    same version, seed, size and counts, nothing is done and its manifest is returned. The build goes
    into a sibling temporary folder that is moved onto ``root`` in one step, so an interrupted build
    never leaves half a dataset; an older demo build in ``root`` is replaced, any other non-empty
    folder is left alone (:class:`FileExistsError`).
    """
    _check_args(seed, size, n_real, n_fake)
    # What determines the images; a build whose manifest agrees on all of it is reused.
    wanted = {"dataset": DATASET_ID, "version": DEMO_VERSION, "seed": seed, "size": size,
              "n_real": n_real, "n_fake": n_fake}
    return build_atomically(Path(root), wanted, {"real": n_real, "fake": n_fake},
                            lambda out: _build_into(out, wanted, progress))


def build_atomically(root: Path, wanted: dict[str, Any], counts: dict[str, int],
                     build_into: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Reuse, or build into a temporary sibling and move onto ``root`` in one step.

    ``wanted`` is what determines the images (``wanted["dataset"]`` names the kind of build);
    ``counts`` the number of PNGs each sub-folder must hold for a build to be reused;
    ``build_into(folder)`` writes the build and returns its manifest. An older build of the same kind
    in ``root`` is replaced, any other non-empty folder is left alone (:class:`FileExistsError`).
    """
    existing = _read_manifest(root)
    if existing is not None and _is_build_of(root, existing, wanted, counts):
        return existing
    if root.exists() and any(root.iterdir()) and (existing is None or existing.get("dataset") != wanted["dataset"]):
        raise FileExistsError(f"{root} exists and is not a {wanted['dataset']} build; not overwriting it")

    tmp = root.parent / f"{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # a leftover of an earlier, killed build of this pid
    tmp.mkdir(parents=True)
    try:
        manifest = build_into(tmp)
        _move_into_place(tmp, root, wanted, counts)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _read_manifest(root) or manifest


def _check_args(seed: int, size: int, n_real: int, n_fake: int) -> None:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    # Three stride-2 stages down and up: the size must divide by 8, and 16 leaves a 2x2 latent.
    if size < 16 or size % 8:
        raise ValueError(f"size must be a multiple of 8 and at least 16, got {size}")
    if n_real < 2:
        raise ValueError(f"n_real must be at least 2 (fakes mix the codes of two reals), got {n_real}")
    if n_fake < 1:
        raise ValueError(f"n_fake must be at least 1, got {n_fake}")


def _read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((root / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_build_of(root: Path, manifest: dict[str, Any], wanted: dict[str, Any], counts: dict[str, int]) -> bool:
    """The manifest matches and the image folders hold the counts it promises (a user may have
    deleted files by hand; such a build is rebuilt rather than silently used short)."""
    if any(manifest.get(k) != v for k, v in wanted.items()):
        return False
    return all(len(list((root / kind).glob("*.png"))) == n for kind, n in counts.items())


def _move_into_place(tmp: Path, root: Path, wanted: dict[str, Any], counts: dict[str, int]) -> None:
    """Move the finished build onto ``root``; an older build there is swapped out, then deleted."""
    old = root.parent / f"{root.name}.old-{os.getpid()}"
    if root.exists() and any(root.iterdir()):
        os.replace(root, old)
    try:
        os.replace(tmp, root)
    except OSError:
        # Another process finished the same build first: keep its result if it is the one we want.
        existing = _read_manifest(root)
        if existing is None or not _is_build_of(root, existing, wanted, counts):
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _build_into(out: Path, wanted: dict[str, Any], progress: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    seed, size, n_real, n_fake = wanted["seed"], wanted["size"], wanted["n_real"], wanted["n_fake"]
    # Independent streams for the reals, the generator's training and its sampling, so that changing
    # one stage never shifts the random numbers of another.
    reals_seq, train_seq, sample_seq = np.random.SeedSequence(seed).spawn(3)
    rng = np.random.default_rng(reals_seq)
    train_seed, sample_seed = (int(s.generate_state(1)[0]) for s in (train_seq, sample_seq))

    photos = {p.name: _load_photo(p) for p in PHOTOS}
    real_names, reals, per_photo = _make_reals(rng, photos, size, n_real, progress)
    t_reals = time.perf_counter()

    with _seeded_torch(train_seed):
        model, final_loss = _train_generator(reals, train_seed, progress)
        fakes = _generate_fakes(model, reals, n_fake, sample_seed)
    t_fakes = time.perf_counter()

    width = max(4, len(str(n_fake - 1)))
    fake_names = [f"gen{i:0{width}d}_000" for i in range(n_fake)]
    _write_pngs(out / "real", real_names, reals, progress)
    _write_pngs(out / "fake", fake_names, fakes, progress)
    t_write = time.perf_counter()

    n_photo = sum(per_photo.values())
    manifest = {
        **wanted,
        "synthetic": True,
        "statement": (
            "Synthetic stand-in, not a real GAN or diffusion dataset. Reals: crops of real photographs "
            "shipped with scikit-image plus computer-generated dead-leaves images. Fakes: decodings of "
            "a small transposed-convolution autoencoder trained on those reals at build time."
        ),
        "group_pattern": GROUP_PATTERN,
        "counts": {"real": n_real, "fake": n_fake, "real_photo_crops": n_photo,
                   "real_dead_leaves": n_real - n_photo, "photo_crops_per_source": per_photo},
        "sources": source_records(per_photo, size),
        "generator": {
            "licence": "CC0",
            "architecture": _Autoencoder.DESCRIPTION.format(w=_WIDTH, w2=2 * _WIDTH, w4=4 * _WIDTH,
                                                            lat=size // 8),
            "parameters": sum(p.numel() for p in model.parameters()),
            "training": {"iterations": _TRAIN_STEPS, "batch_size": _BATCH, "optimizer": f"Adam(lr={_LR})",
                         "loss": "L1 reconstruction", "data": "all reals", "final_batch_loss": final_loss},
            "sampling": (f"decode(a*z_i + (1-a)*z_j + {_LATENT_NOISE}*std(z)*eps), a ~ U{_MIX}, "
                         "z_i, z_j codes of two random reals, eps ~ N(0, 1)"),
            "references": ["Odena, Dumoulin & Olah, Deconvolution and checkerboard artifacts, Distill 2016",
                           "Durall, Keuper & Keuper, Watch your up-convolution, CVPR 2020"],
        },
        "software": {pkg: _package_version(pkg) for pkg in ("numpy", "torch", "pillow", "scikit-image")},
        "timings_s": {"reals": round(t_reals - t0, 3), "generator": round(t_fakes - t_reals, 3),
                      "write": round(t_write - t_fakes, 3), "total": round(time.perf_counter() - t0, 3)},
    }
    (out / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


# -- reals ---------------------------------------------------------------------------------------
def source_records(per_photo: dict[str, int], size: int) -> list[dict[str, Any]]:
    """The manifest's ``sources``: each photograph (file hash, credit, licence, crops used) and the
    dead-leaves model's parameters."""
    return [
        *({"name": p.name, "kind": "photograph", "file": f"skimage/data/{p.file}",
           "sha256": sha256_file(_photo_path(p)), "credit": p.credit, "licence": p.licence,
           "crops": per_photo[p.name]} for p in PHOTOS),
        {"name": "leaves", "kind": "dead-leaves model (computer generated)", "licence": "CC0",
         "reference": "Lee, Mumford & Huang, Occlusion models for natural images, IJCV 2001",
         "radii": f"p(r) ~ r^-3 on [{_R_MIN}, {size / 2}] px", "supersampling": _SUPERSAMPLE,
         "mean_cover": _LEAVES_COVER, "noise_sigma": _NOISE_SIGMA,
         "colours": "pixels drawn from the photographs above"},
    ]


def _photo_path(photo: Photo) -> Path:
    # The folder of skimage.data, located without importing skimage (its import is slow and its
    # loaders may fetch files); only the four PNGs that ship in the wheel are used.
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("scikit-image is needed to build the demo dataset (its photos)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / photo.file


def _load_photo(photo: Photo) -> np.ndarray:
    with Image.open(_photo_path(photo)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _make_reals(rng: np.random.Generator, photos: dict[str, np.ndarray], size: int, n_real: int,
                progress: bool) -> tuple[list[str], np.ndarray, dict[str, int]]:
    """``n_real`` uint8 ``(size, size, 3)`` reals: ~1/3 photo crops, the rest dead leaves."""
    # Each photo's grid of crops is cut into 2 x 2 quadrants, each a separate source picture (group):
    # crops never straddle quadrants, so no pixel is shared between groups. With only four photos,
    # whole-photo groups would put every photo crop into a single split part (all of them in train).
    crops = []
    for name, img in photos.items():
        rows, cols = img.shape[0] // size, img.shape[1] // size
        for k, (i, j) in enumerate((i, j) for i in range(rows) for j in range(cols)):
            quadrant = 2 * (i >= rows // 2) + (j >= cols // 2)
            crops.append((name, f"{name}-q{quadrant}", k, img[i * size:(i + 1) * size, j * size:(j + 1) * size]))
    n_photo = min(round(n_real / 3), len(crops))
    chosen = sorted(rng.permutation(len(crops))[:n_photo])  # sorted: files come out photo by photo
    names = [f"{crops[c][1]}_{crops[c][2]:03d}" for c in chosen]
    images = [crops[c][3] for c in chosen]
    per_photo = {name: sum(crops[c][0] == name for c in chosen) for name in photos}

    colours = np.concatenate([img.reshape(-1, 3) for img in photos.values()]).astype(np.float32) / 255
    n_leaves = n_real - n_photo
    width = max(4, len(str(n_leaves - 1)))
    for i in tqdm(range(n_leaves), desc="demo: dead leaves", disable=not progress, leave=False):
        images.append(dead_leaves(rng, size, colours))
        names.append(f"leaves{i:0{width}d}_000")
    return names, np.stack(images), per_photo


def dead_leaves(rng: np.random.Generator, size: int, colours: np.ndarray) -> np.ndarray:
    """One dead-leaves image, uint8 ``(size, size, 3)``, after Lee, Mumford & Huang (2001).

    Radii follow ``p(r) ~ r^-3`` on ``[_R_MIN, size/2]`` (the scale-invariant choice that gives a
    ``1/f^2`` power spectrum); discs are painted back to front, so later discs occlude earlier ones.
    Each disc's mask is computed with numpy over its bounding box only: most discs are small, so this
    costs a fraction of a dense (disc x pixel) evaluation, which would touch every pixel per disc.
    """
    r_min, r_max = _R_MIN, size / 2
    # E[r^2] of the truncated r^-3 law, to draw enough discs for the wanted mean coverage.
    mean_r2 = 2 * r_min**2 * r_max**2 * np.log(r_max / r_min) / (r_max**2 - r_min**2)
    m = int(np.ceil(_LEAVES_COVER * size * size / (np.pi * mean_r2)))
    # Inverse-CDF sampling of the r^-3 law; everything below is in supersampled pixels.
    u = rng.random(m)
    r = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5 * _SUPERSAMPLE
    n = size * _SUPERSAMPLE
    cy, cx = rng.uniform(0, n, m), rng.uniform(0, n, m)
    colour = colours[rng.integers(0, len(colours), m + 1)]

    canvas = np.empty((n, n, 3), np.float32)
    canvas[:] = colour[m]  # background, seen only where no disc lands
    centres = np.arange(n, dtype=np.float64) + 0.5
    y0, y1 = np.floor(cy - r).clip(0, n).astype(int), np.ceil(cy + r).clip(0, n).astype(int)
    x0, x1 = np.floor(cx - r).clip(0, n).astype(int), np.ceil(cx + r).clip(0, n).astype(int)
    for k in range(m):
        dy = (centres[y0[k]:y1[k], None] - cy[k]) ** 2
        dx = (centres[None, x0[k]:x1[k]] - cx[k]) ** 2
        canvas[y0[k]:y1[k], x0[k]:x1[k]][dy + dx < r[k] ** 2] = colour[k]

    img = canvas.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3).mean(axis=(1, 3))
    img += rng.normal(0.0, _NOISE_SIGMA, img.shape).astype(np.float32)
    return _to_uint8(img)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


# -- fakes ---------------------------------------------------------------------------------------
@contextmanager
def _seeded_torch(seed: int) -> Iterator[None]:
    """Seed torch's global RNG (module initialisation draws from it), force deterministic kernels and
    one intra-op thread; the caller's RNG state, determinism setting and thread count are restored.

    One thread because float reductions split over threads sum in a different order: with the
    machine's default thread count the fakes differed between a 1-core and a 2-core machine. The
    tiny generator also trains faster on one thread when the cores are shared.
    """
    was_on = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(was_on, warn_only=warn_only)


class _Autoencoder(nn.Module):
    """DCGAN-style convolutional autoencoder whose decoder up-samples with transposed convolutions.

    ``ConvTranspose2d(kernel 4, stride 2)`` is the up-sampler of DCGAN-like generators; each stage
    can print a checkerboard (Odena et al. 2016), i.e. spectral replicas at multiples of 1/2, 1/4 and
    1/8 of the sampling rate after three stages (Durall et al. 2020). The sigmoid keeps outputs in
    ``[0, 1]``.
    """

    DESCRIPTION = ("encoder: Conv2d(3,{w},4,s2,p1)-LeakyReLU(0.2)-Conv2d({w},{w2},4,s2,p1)-LeakyReLU(0.2)-"
                   "Conv2d({w2},{w4},4,s2,p1) -> latent {w4}x{lat}x{lat}; decoder: "
                   "ConvTranspose2d({w4},{w2},4,s2,p1)-LeakyReLU(0.2)-ConvTranspose2d({w2},{w},4,s2,p1)-"
                   "LeakyReLU(0.2)-ConvTranspose2d({w},3,4,s2,p1)-sigmoid; fp32, CPU")

    def __init__(self, width: int) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(w, 3, 4, 2, 1),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)


def _train_generator(reals: np.ndarray, seed: int, progress: bool) -> tuple[_Autoencoder, float]:
    """Fit the autoencoder to the reals for a fixed number of seeded Adam steps (L1 loss)."""
    x = _to_tensor(reals)
    model = _Autoencoder(_WIDTH)
    opt = torch.optim.Adam(model.parameters(), lr=_LR)
    gen = torch.Generator().manual_seed(seed)

    def batch_loss() -> torch.Tensor:
        batch = x[torch.randint(0, len(x), (_BATCH,), generator=gen)]
        return (model.decode(model.encode(batch)) - batch).abs().mean()

    loss = train_steps(opt, batch_loss, _TRAIN_STEPS, "demo: train generator", progress)
    return model.eval(), loss.item()


@torch.no_grad()
def _generate_fakes(model: _Autoencoder, reals: np.ndarray, n_fake: int, seed: int) -> np.ndarray:
    """Decode ``n_fake`` new latents: a random convex mix of two reals' codes plus Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    codes = torch.cat([model.encode(_to_tensor(reals[i:i + _CHUNK])) for i in range(0, len(reals), _CHUNK)])
    noise_scale = _LATENT_NOISE * codes.std()
    out = []
    for start in range(0, n_fake, _CHUNK):
        b = min(_CHUNK, n_fake - start)
        i = torch.randint(0, len(codes), (b,), generator=gen)
        j = torch.randint(0, len(codes), (b,), generator=gen)
        a = torch.empty(b, 1, 1, 1).uniform_(*_MIX, generator=gen)
        z = a * codes[i] + (1 - a) * codes[j] + noise_scale * torch.randn(codes[i].shape, generator=gen)
        out.append(model.decode(z).permute(0, 2, 3, 1).numpy())
    return _to_uint8(np.concatenate(out))


# -- output --------------------------------------------------------------------------------------
def _write_pngs(folder: Path, names: list[str], images: np.ndarray, progress: bool) -> None:
    folder.mkdir()
    for name, img in tqdm(list(zip(names, images)), desc=f"demo: write {folder.name}", disable=not progress,
                          leave=False):
        Image.fromarray(img).save(folder / f"{name}.png", format="PNG")


__all__ = ["DEMO_VERSION", "GROUP_PATTERN", "PHOTOS", "Photo", "build_demo", "dead_leaves"]
