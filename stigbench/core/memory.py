"""Keep a long run's memory from creeping up through heap fragmentation (glibc only).

glibc's ``malloc`` serves a large block from its own ``mmap`` (returned to the system on ``free``)
only while the block is above a threshold, and it *raises* that threshold to the size of every such
block it frees, up to 32 MiB. A run allocates and frees many blocks of 1–32 MiB per batch (image
batches, float64 SSIM moments, spectra); after the first few, they all land on the heap, between
small objects that outlive them, and the heap cannot shrink. Measured on a run over 4,000 images
per class (``benchmarks/bench_memory.py``): anonymous memory grew by about 90 MB per batch of
PSNR/SSIM and ended 1.2 GiB above where it started, growing with the number of test images; with the
threshold fixed at 1 MiB it stayed flat (0.65 GiB). Fixing the threshold (which also turns off the
raising) is what :func:`limit_heap_growth` does, once per process.

It changes where memory comes from, not any value computed. A threshold set by the user through
glibc's own environment variable (``MALLOC_MMAP_THRESHOLD_``) is left alone, as is any other C library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger("stigbench")

#: Blocks of at least this many bytes get their own mapping, given back to the system when freed.
MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
_done: bool | None = None


def limit_heap_growth(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes for this process; ``True`` when it is set
    (now or by an earlier call), ``False`` off glibc or when the user set ``MALLOC_MMAP_THRESHOLD_``."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return _done
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    if not _done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; heap fragmentation may raise memory on long runs")
    return _done
