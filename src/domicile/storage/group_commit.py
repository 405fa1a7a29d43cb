"""Group commit: many callers, one durable write per batch, no extra thread.

A caller's items are acknowledged only after the batch holding them was written.
Whichever caller finds no write in progress becomes the writer for everything queued
so far, so a lone caller pays one write and a crowd shares one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


def _closed_gate() -> threading.Lock:
    gate = threading.Lock()
    gate.acquire()
    return gate


@dataclass
class _Pending(Generic[T]):
    items: Sequence[T]
    first: int = -1
    error: BaseException | None = None
    finished: bool = False
    gate: threading.Lock = field(default_factory=_closed_gate)
    """Held until the batch holding `items` is written: the caller waits by acquiring it.
    A bare lock costs far less than a threading.Event (a Condition, a lock and a waiter
    list per caller), and this is paid on every durable write."""

    def finish(self) -> None:
        """Wake the caller (once)."""
        if not self.finished:
            self.finished = True
            self.gate.release()


class GroupCommit(Generic[T]):
    """Batches calls to `write(items) -> position of the first item`."""

    def __init__(self, write: Callable[[list[T]], int], *, max_batch: int = 50_000) -> None:
        self._write_fn = write
        self.max_batch = max_batch
        self._queue: list[_Pending[T]] = []
        self._writing = False
        self._lock = threading.Lock()

    def submit(self, items: Sequence[T]) -> int:
        """Write items durably (batched with other callers'); return the first's position."""
        mine: _Pending[T] = _Pending(items)
        with self._lock:
            self._queue.append(mine)
            lead = not self._writing
            self._writing = True
        if lead:
            self._drain()
        # Each caller waits on its own event: a commit wakes exactly the callers it
        # acknowledged, not every waiting thread.
        mine.gate.acquire()
        if mine.error is not None:
            raise mine.error
        return mine.first

    def _drain(self) -> None:
        """Write batches until the queue is empty; the empty check and the hand-back of
        the writer role happen under one lock, so no queued item is ever stranded."""
        batch: list[_Pending[T]] = []
        try:
            while True:
                with self._lock:
                    batch = self._take()
                    if not batch:
                        self._writing = False
                        return
                self._write(batch)
        except BaseException as exc:
            with self._lock:
                self._writing = False
                stranded = batch + self._queue
                self._queue = []
            for item in stranded:
                if not item.finished:
                    item.error = exc
                    item.finish()
            raise

    def _take(self) -> list[_Pending[T]]:
        batch: list[_Pending[T]] = []
        count = 0
        while self._queue and (not batch or count + len(self._queue[0].items) <= self.max_batch):
            item = self._queue.pop(0)
            batch.append(item)
            count += len(item.items)
        return batch

    def _write(self, batch: list[_Pending[T]]) -> None:
        try:
            first = self._write_fn([x for item in batch for x in item.items])
        except Exception as exc:  # every waiter of the batch learns it failed
            for item in batch:
                item.error = exc
                item.finish()
            return
        for item in batch:
            item.first = first
            first += len(item.items)
            item.finish()
