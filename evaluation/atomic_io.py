"""Atomic file writes for ``evaluation`` and ``pipeline``: the one implementation is :mod:`transforms.atomic_writer`
(the lowest layer, which ``transforms`` itself and the bundles' carried code can import too)."""

from transforms.atomic_writer import atomic_write_bytes, atomic_write_text, check_writable_folder

__all__ = ["atomic_write_bytes", "atomic_write_text", "check_writable_folder"]
