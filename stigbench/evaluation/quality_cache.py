"""On-disk cache of FID/KID features: the effectful wrapper around :func:`stigbench.evaluation.quality.extract_features`.

The feature matrix (not only its mean and covariance: KID needs the features) is stored as float32 in
an ``.npz`` file under ``cache_dir()/features/``, named by a readable key

    ``<extractor>__<domain>__n<images>__<fingerprint[:16]>.npz``

e.g. ``inception-v3-tf-2015-12-05__spectrum__n500__3f2a9c0d1e4b5a67.npz``. The networks output
float32, so storing float32 loses nothing: a cache hit gives the same features, and hence the same
statistics, as a fresh extraction. Files are written atomically and loaded with
``allow_pickle=False``; an unreadable or mismatching file is recomputed.

The fingerprint covers exactly the images that enter the metric (after the ``max_images`` cap) and
how they are read: for sets read from files, the paths with their sizes and modification times plus
the crop/resize settings; for every other set (in-memory, memory-mapped, refined), the 8-bit pixels
themselves. Ids alone are never trusted, because a refined set keeps the ids of the fakes it came from.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from stigbench.data.specs import cache_dir
from stigbench.core.imageset import FileImageSet, ImageSet, SubsetImageSet
from stigbench.core.io import atomic_write
from stigbench.evaluation.quality import FeatureExtractor, check_domain, extract_features, sample_indices
from stigbench.measures.feature_distances import feature_stats

log = logging.getLogger("stigbench.evaluation.quality")

# Bump when preprocessing changes (resize, domain transform, sampling), to orphan old entries.
CACHE_VERSION = 1


def _file_backed(image_set: ImageSet, indices: np.ndarray) -> tuple[FileImageSet, np.ndarray] | None:
    """The underlying :class:`FileImageSet` and the file indices, if the set only reads files."""
    while isinstance(image_set, SubsetImageSet):
        indices = image_set.indices[indices]
        image_set = image_set.base
    if type(image_set) is FileImageSet:  # exact type: a subclass might transform what it reads
        return image_set, indices
    return None


def fingerprint(image_set: ImageSet, indices: np.ndarray, batch_size: int = 64) -> str:
    """SHA-256 identifying the images ``image_set[indices]`` (see the module docstring)."""
    h = hashlib.sha256(f"stigbench-features-v{CACHE_VERSION}\n".encode())
    backed = _file_backed(image_set, np.asarray(indices, np.int64))
    if backed is not None:
        files, idx = backed
        h.update(f"files size={files.size} resize={files.resize} grayscale={files.grayscale}\n".encode())
        for i in idx:
            p = files.paths[int(i)]
            st = p.stat()
            h.update(f"{p.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        return h.hexdigest()
    h.update(f"pixels size={image_set.size} n={len(indices)}\n".encode())
    for start in range(0, len(indices), batch_size):
        chunk = image_set._load_many([int(i) for i in indices[start:start + batch_size]])
        h.update(np.ascontiguousarray(chunk).tobytes())
    return h.hexdigest()


def cache_key(extractor: FeatureExtractor, domain: str, n_images: int, digest: str) -> str:
    return f"{extractor.name}__{domain}__n{n_images}__{digest[:16]}"


def _load(path: Path, digest: str, extractor: FeatureExtractor, n: int) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            feats = z["features"]
            ok = (str(z["fingerprint"]) == digest and str(z["extractor"]) == extractor.name
                  and feats.shape == (n, extractor.dims) and feats.dtype == np.float32)
    except (OSError, KeyError, ValueError) as exc:
        log.warning("ignoring unreadable feature cache %s (%s); recomputing", path, exc)
        return None
    if not ok:
        log.warning("feature cache %s does not match its key; recomputing", path)
        return None
    return feats.astype(np.float64)


def cached_features(image_set: ImageSet, extractor: FeatureExtractor, domain: str = "image",
                    max_images: int | None = None, batch_size: int = 32, progress: str | None = None,
                    root: str | Path | None = None) -> np.ndarray:
    """:func:`~stigbench.evaluation.quality.extract_features`, computed once per (network, domain, images)."""
    check_domain(domain)
    idx = sample_indices(len(image_set), max_images)
    digest = fingerprint(image_set, idx)
    folder = Path(root) if root is not None else cache_dir() / "features"
    path = folder / f"{cache_key(extractor, domain, len(idx), digest)}.npz"
    if path.is_file():
        feats = _load(path, digest, extractor, len(idx))
        if feats is not None:
            return feats
    feats = extract_features(image_set, extractor, batch_size, domain, max_images, progress)
    meta = {"fingerprint": digest, "extractor": extractor.name, "domain": domain,
            "sha256": extractor.sha256 or "", "version": str(CACHE_VERSION)}

    def write(tmp: Path) -> None:
        # An open handle, not a name: np.savez would append ".npz" to the temporary name.
        with open(tmp, "wb") as f:
            np.savez(f, features=feats.astype(np.float32), indices=idx,
                     **{k: np.array(v) for k, v in meta.items()})

    atomic_write(path, write)
    return feats


def cached_stats(image_set: ImageSet, extractor: FeatureExtractor, domain: str = "image",
                 max_images: int | None = None, batch_size: int = 32, progress: str | None = None,
                 root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of :func:`cached_features` (cheap to derive, so not stored separately)."""
    return feature_stats(cached_features(image_set, extractor, domain, max_images, batch_size, progress, root))


__all__ = ["CACHE_VERSION", "cache_key", "cached_features", "cached_stats", "fingerprint"]
