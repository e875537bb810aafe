"""Overlapping decoding and file writing with the per-frame models (FFmpeg and OpenCV release the GIL)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
_END = object()


def prefetch(items: Iterator[T], depth: int = 8) -> Iterator[T]:
    """Runs `items` in a background thread, `depth` items ahead; its exceptions are raised here."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_END)
        except BaseException as error:  # handed to the consumer
            buffer.put(error)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


class BackgroundWriter:
    """Runs write jobs on worker threads, at most `max_pending` at a time; errors surface on the next submit or on
    close, which waits for every job."""

    def __init__(self, workers: int = 2, max_pending: int = 16):
        self._pool = ThreadPoolExecutor(max_workers=workers)
        self._pending: list[Future] = []
        self._max_pending = max_pending

    def submit(self, job: Callable[..., object], *args) -> None:
        self._pending.append(self._pool.submit(job, *args))
        while len(self._pending) > self._max_pending:
            self._pending.pop(0).result()

    def close(self) -> None:
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pending.clear()
            self._pool.shutdown(wait=True)

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
