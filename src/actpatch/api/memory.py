"""Returning the memory a burst of work freed to the operating system.

glibc's allocator keeps memory that Python and torch free, for reuse: in one arena per thread
that allocated (up to 8 per core), and above the top of each heap. After a burst of sweeps the
server's resident memory stays near its peak although nothing holds it (measured with
`benchmarks/bench_burst.py`: 60 concurrent 64-pair sweeps on the demo model left 2.1-2.5 GiB
resident after 20 s idle, from 0.5 GiB before). Two remedies, both here or in the image:

- `MALLOC_ARENA_MAX=2` (the Dockerfile and `make run` set it) caps the arenas, so that memory
  freed by one thread is reused by the next instead of sitting in an arena of its own;
- `release()`, called when the last computation in flight ends, asks glibc to hand back what
  it holds free (`malloc_trim(0)`), at a cost of milliseconds once per burst.

Elsewhere (macOS, musl) `release()` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import cache

logger = logging.getLogger("actpatch.api")


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release() -> bool:
    """Hand the memory the allocator holds free back to the system; whether it could try."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
