"""A steady heap for the long-running sidecar: the model's per-window working set stays resident and is reused.

Why: each `lite` window allocates and frees the same large feature maps (the mood CNN's first convolution alone is
64 x 96 x 640 float32 = 15.7 MB). With glibc's defaults the inference thread's arena hands those pages back to the
kernel after every window (its heaps shrink, and the mmap threshold adapts), so every window page-faults about
3,800 fresh pages (15.7 MB) and the resident size at any instant is somewhere in a ~16 MB band depending on where
the last window was. Sampled every 30 s over a 10-minute run that band read as a 14 MB "creep"
(``benchmarks/bench_realtime_jack.py``). With the settings below the same working set is faulted once and reused:
0 page faults per window after warm-up and a flat resident size (``tests/test_realtime_memory.py``).

Settings (glibc ``mallopt``; other C libraries are left alone):

* one arena (``M_ARENA_MAX`` 1): per-thread arenas are what shrink between windows; the sidecar's threads allocate
  little besides the model's buffers, so they gain nothing from separate arenas;
* fixed mmap threshold of 32 MB (``M_MMAP_THRESHOLD``): the feature maps come from the heap, not from a fresh
  mmap per window; only one-off giant buffers (> 32 MB) are still mapped and unmapped;
* trim threshold of 128 MB (``M_TRIM_THRESHOLD``): free memory at the top of the heap is kept up to that size
  (several windows' working sets), so it is not returned and faulted back in every window.

Call :func:`steady_heap` at the start of the process, before threads allocate (an arena is bound to a thread at
its first allocation).
"""

from __future__ import annotations

import ctypes
import logging
import platform

log = logging.getLogger("m2e.realtime")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

ARENAS = 1
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 128 << 20


def steady_heap() -> bool:
    """Apply the settings above to this process's glibc allocator. Returns False where they do not apply (not
    glibc, or ``mallopt`` refused a value), in which case nothing breaks: memory just moves more between windows."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = all(mallopt(option, value) == 1 for option, value in (
        (_M_ARENA_MAX, ARENAS), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)))
    if not ok:
        log.debug("glibc mallopt refused a setting; the heap keeps its default behaviour")
    return ok
