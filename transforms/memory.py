"""Give freed heap memory back to the operating system while many volumes are cached.

Preprocessing a large scan allocates and frees hundreds of MB of temporaries; glibc keeps most of
the freed heap, so a cache of hundreds of small preprocessed volumes ends up holding several times
its own size (measured: 44 MB of resident memory per cached 6 MB volume, 15 MB after ``malloc_trim``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Hashable, Mapping
from typing import Any

from monai.transforms import Transform

__all__ = ["ReleaseHeapMemoryd", "release_heap_memory"]

_LIBC_NAME = ctypes.util.find_library("c")
_LIBC = ctypes.CDLL(_LIBC_NAME) if _LIBC_NAME else None


def release_heap_memory() -> bool:
    """``malloc_trim(0)`` where glibc provides it; True if memory was returned."""
    trim = getattr(_LIBC, "malloc_trim", None)
    return bool(trim(0)) if trim is not None else False


class ReleaseHeapMemoryd(Transform):
    """Pass-through dictionary transform that calls :func:`release_heap_memory` (put it last in a cached
    preprocessing pipeline)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> Mapping[Hashable, Any]:
        release_heap_memory()
        return data
