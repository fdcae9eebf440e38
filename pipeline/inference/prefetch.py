"""Overlap the stages of a cohort run: prepare the next patient while this one is inferred, write in the background.

One background thread each (``concurrent.futures``), in order: loading, preprocessing and writing are
NumPy/nibabel/zlib work that mostly releases the GIL, so they run beside the network's own threads.

* :func:`prefetched`: ``for item, prepared, seconds in prefetched(items, prepare)`` yields each item with
  ``prepare(item)`` (computed ``depth`` items ahead) and the seconds ``prepare`` took;
* :class:`BackgroundWriter`: ``writer.submit(fn, *args)`` queues a write (one at a time, in order);
  :meth:`~BackgroundWriter.wait` returns the results, and an exception of a write is raised there.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["BackgroundWriter", "prefetched", "timed"]

T = TypeVar("T")
R = TypeVar("R")


def timed(fn: Callable[..., R], *args: Any) -> tuple[R, float]:
    """``(fn(*args), seconds)``."""
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def prefetched(items: Iterable[T], prepare: Callable[[T], R], depth: int = 1) -> Iterator[tuple[T, R, float]]:
    """``(item, prepare(item), seconds)`` in order, with up to ``depth`` items prepared ahead in a thread
    (``depth=0``: no thread, prepared on demand). ``prepare`` should not raise; if it does, so does this."""
    if depth <= 0:
        for item in items:
            result, seconds = timed(prepare, item)
            yield item, result, seconds
        return
    iterator = iter(items)
    pending: deque[tuple[T, Future]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dmg-prefetch") as pool:
        try:
            for item in iterator:
                pending.append((item, pool.submit(timed, prepare, item)))
                if len(pending) > depth:
                    done_item, future = pending.popleft()
                    yield done_item, *future.result()
            while pending:
                done_item, future = pending.popleft()
                yield done_item, *future.result()
        finally:
            for _, future in pending:
                future.cancel()


class BackgroundWriter:
    """Run write jobs one at a time, in order, in a background thread (``max_pending`` queued at most)."""

    def __init__(self, max_pending: int = 2, enabled: bool = True) -> None:
        self.enabled = enabled
        self.max_pending = max(1, max_pending)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dmg-writer") if enabled else None
        self._pending: deque[Future] = deque()
        self._finished: list[Any] = []

    def submit(self, fn: Callable[..., R], *args: Any) -> None:
        """Queue ``fn(*args)``; blocks while ``max_pending`` writes are queued (bounded memory)."""
        if self._pool is None:
            self._finished.append(fn(*args))
            return
        while len(self._pending) >= self.max_pending:
            self._finished.append(self._pending.popleft().result())
        self._pending.append(self._pool.submit(fn, *args))

    def collect(self) -> list[Any]:
        """Results of the writes that have finished so far (in order), without waiting."""
        while self._pending and self._pending[0].done():
            self._finished.append(self._pending.popleft().result())
        done, self._finished = self._finished, []
        return done

    def wait(self) -> list[Any]:
        """Wait for every queued write; their results in order (the first failure is raised)."""
        while self._pending:
            self._finished.append(self._pending.popleft().result())
        return self.collect()

    def finished(self) -> list[Any]:
        """Results already taken from finished writes but not yet returned, without waiting: after a write
        raised (from ``submit``, ``collect`` or ``wait``), the results of the writes before it."""
        done, self._finished = self._finished, []
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=False)
