"""Keep a long run's memory from creeping up through heap fragmentation, at little cost (glibc only).

glibc's ``malloc`` serves a large block from its own ``mmap`` (returned to the system on ``free``)
only while the block is above a threshold, and it *raises* that threshold to the size of every such
block it frees, up to 32 MiB. A run allocates and frees many blocks of 1–32 MiB per batch (image
batches, float64 SSIM moments, spectra); after the first few, they all land on the heap, between
small objects that outlive them, and the heap cannot shrink. Measured on a run over 4,000 images
per class (``benchmarks/bench_memory.py``): anonymous memory grew by about 90 MB per batch of
PSNR/SSIM and ended 1.2 GiB above where it started, growing with the number of test images.

stigbench 0.2 fixed the threshold at 1 MiB: memory stayed flat, but every block over 1 MiB became a
fresh mapping whose pages the kernel zeroes and faults in one by one, so a fifth of the demo's CPU
time went to the kernel (72 M minor page faults in a 5-minute run; issue #23). Two settings now
replace it (:func:`limit_heap_growth`, once per process):

* the threshold fixed at :data:`MMAP_THRESHOLD` (32 MiB, the top of glibc's own range, fixed so it
  no longer moves): the blocks a run allocates and frees by the thousand (a CNN's activations, image
  batches) are reused from the heap, not mapped and zeroed each time. Fixing it also fixes the trim
  threshold (free memory at the top of the heap that ``free`` gives back at once) at 128 KiB, so a
  block freed at the top would be given back and faulted in again on the next allocation (96,621 minor
  faults for 200 blocks of 8 MiB, against 504 with the trim threshold raised): it is set to
  :data:`TRIM_THRESHOLD`, twice the mmap threshold, as glibc's own adjustment would;
* the free pages inside the heap are given back to the system (:func:`release_free_memory`, glibc's
  ``malloc_trim``) after each batch of the loops where the growth was measured and after each stage,
  so the holes that fragmentation leaves hold no memory.

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
MMAP_THRESHOLD = 32 << 20
#: Free memory at the top of the heap beyond this many bytes goes back to the system on ``free``.
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
_done: bool | None = None
_libc: ctypes.CDLL | None = None


def _glibc() -> ctypes.CDLL | None:
    """glibc, when this process runs on it (``mallopt`` and ``malloc_trim`` are glibc's)."""
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
            libc.malloc_trim.argtypes, libc.malloc_trim.restype = (ctypes.c_size_t,), ctypes.c_int
            _libc = libc
        except (OSError, AttributeError):  # musl and others have neither
            return None
    return _libc


def limit_heap_growth(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes and its trim threshold at twice that for this
    process; ``True`` when they are set (now or by an earlier call), ``False`` off glibc or when the user
    set ``MALLOC_MMAP_THRESHOLD_`` (a ``MALLOC_TRIM_THRESHOLD_`` of the user's is kept too)."""
    global _done
    if _done is not None:
        return _done
    _done = False
    libc = _glibc()
    if libc is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return _done
    _done = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    if _done and "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        _done = bool(libc.mallopt(_M_TRIM_THRESHOLD, 2 * int(threshold)))
    if not _done:
        log.debug("mallopt(M_MMAP_THRESHOLD / M_TRIM_THRESHOLD) refused; a run may fault more pages in")
    return _done


def release_free_memory() -> bool:
    """Give the free pages inside the heap back to the system (glibc's ``malloc_trim(0)``); ``True``
    when some memory was released. A no-op off glibc. Costs about a millisecond per call on a run's heap."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
