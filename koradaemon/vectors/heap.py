"""glibc malloc settings for the vector thread: keep batch memory while catching up, give it back after.

An embedding batch allocates tens of MB of numpy temporaries. With glibc's defaults the
dynamic mmap threshold rises and the freed memory stays behind in the vector thread's
arena for good. Mapping every large temporary afresh instead (a fixed 128 KiB threshold)
keeps the memory low but costs a page fault per 4 KiB touched: about a third of the
catch-up's CPU time. So there are two modes:

- :func:`batch_mode` while there is work: temporaries up to 32 MiB come from the arena and
  up to 64 MiB of free memory stays there, so the next batch reuses the same pages;
- :func:`rest_mode` once caught up: small fixed thresholds again, then the free memory is
  handed back, including the top of this thread's arena (``malloc_trim`` trims only the
  main arena's top; freeing a block of 96 KiB in this thread makes glibc trim its arena).

Elsewhere than glibc these are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
REST_BYTES = 128 * 1024
BATCH_MMAP_BYTES = 32 << 20
BATCH_TRIM_BYTES = 64 << 20
POKE_BYTES = 96 * 1024  # below the rest mmap threshold, above glibc's 64 KiB consolidation threshold


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def batch_mode() -> None:
    """Keep large temporaries in the arena between batches (no page faults for reused memory)."""
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_THRESHOLD, BATCH_MMAP_BYTES)
        _LIBC.mallopt(M_TRIM_THRESHOLD, BATCH_TRIM_BYTES)


def rest_mode() -> None:
    """Small fixed thresholds, and every free page handed back (call it on the vector thread)."""
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_THRESHOLD, REST_BYTES)
        _LIBC.mallopt(M_TRIM_THRESHOLD, REST_BYTES)
        _LIBC.free(_LIBC.malloc(POKE_BYTES))  # a free that merges with this arena's top trims it
        _LIBC.malloc_trim(0)
