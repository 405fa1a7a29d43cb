"""Group commit: many callers, one durable write per batch, no extra thread.

A caller's items are acknowledged only after the batch holding them was written.
Whichever caller finds no write in progress becomes the writer for everything queued
so far, so a lone caller pays one write and a crowd shares one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Pending(Generic[T]):
    items: Sequence[T]
    first: int = -1
    error: BaseException | None = None
    done: bool = False


class GroupCommit(Generic[T]):
    """Batches calls to `write(items) -> position of the first item`."""

    def __init__(self, write: Callable[[list[T]], int], *, max_batch: int = 50_000) -> None:
        self._write_fn = write
        self.max_batch = max_batch
        self._queue: list[_Pending[T]] = []
        self._writing = False
        self._cond = threading.Condition()

    def submit(self, items: Sequence[T]) -> int:
        """Write items durably (batched with other callers'); return the first's position."""
        mine: _Pending[T] = _Pending(items)
        with self._cond:
            self._queue.append(mine)
            while not mine.done and self._writing:
                self._cond.wait()
            if mine.done:
                return self._result(mine)
            self._writing = True
        try:
            self._drain()
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()
        return self._result(mine)

    def _drain(self) -> None:
        while True:
            with self._cond:
                batch = self._take()
            if not batch:
                return
            self._write(batch)
            with self._cond:
                self._cond.notify_all()

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
                item.error, item.done = exc, True
            return
        for item in batch:
            item.first, item.done = first, True
            first += len(item.items)

    @staticmethod
    def _result(item: _Pending[T]) -> int:
        if item.error is not None:
            raise item.error
        return item.first
