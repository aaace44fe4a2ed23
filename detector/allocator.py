"""CPU prediction without page faults: glibc's malloc told to keep freed memory for the next forward pass.

A CPU forward pass of the default allocates and frees, at 640 with 80 classes, several buffers of 7-9 MB for its
27,600 anchors (class scores, box distributions, the output). glibc's malloc serves blocks that large with fresh
mmaps, or from the top of its heap, which it hands back to the OS whenever more than twice its adaptive mmap
threshold lies free there. Either way the next forward pass touches new pages, and the kernel faults them in: about
5,300 page faults per prediction of the default through Ultralytics' predictor on the 2-core machine (YOLO11n,
whose buffers are 3.3 times smaller: none). Whether the heap gets trimmed depends on what else the process holds,
so the cost came and went between runs: 1.14x YOLO11n's end-to-end PyTorch time in a process running only PyTorch,
0.99x with the thresholds below (2026-12-06, batch 1 at 640, 2 threads; docs/benchmarks.md). PyTorch's CPU tuning
guide gives the same advice in another form: preload jemalloc or tcmalloc, or set glibc's MALLOC_*_THRESHOLD_.

`keep_freed_memory()` sets those two thresholds in the running process (mallopt), once; `detector predict`,
`detector val` and predict.py call it when they run on the CPU. The process then keeps up to TRIM_THRESHOLD of freed
heap for reuse. It changes nothing where the user set either threshold in the environment, or off Linux with glibc.
"""

from __future__ import annotations

import ctypes
import os
import platform

MMAP_THRESHOLD = 32 << 20  # blocks from this size up still get their own mmap (glibc's adaptive ceiling on 64-bit)
TRIM_THRESHOLD = 128 << 20  # free memory at the heap's top kept, not handed back to the OS
ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")  # the user's own settings, which win
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (glibc's malloc.h)
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process (the first call; later calls repeat its answer). Returns
    whether they are set: False off glibc, or where the environment sets either threshold."""
    global _applied
    if _applied is None:
        _applied = _set_thresholds()
    return _applied


def _set_thresholds() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or any(k in os.environ for k in ENVIRONMENT):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mmap first: setting either fixes both (glibc stops adapting them), and the trim threshold must stay above it
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
