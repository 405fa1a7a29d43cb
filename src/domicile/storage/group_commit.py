"""Group commit: many callers, one durable write per batch, no extra thread.

A caller's items are acknowledged only after the batch holding them was written.
Whichever caller finds no write in progress becomes the writer for everything queued
so far, so a lone caller pays one write and a crowd shares one.

Callers on an event loop (`submit_async`) never write themselves: the loop must not
block, so when they find no write in progress they start one on a writer thread of
the group commit's own, and await their own future. Both kinds of caller share one
queue and one writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


def _closed_gate() -> threading.Lock:
    gate = threading.Lock()
    gate.acquire()
    return gate


_OPEN = threading.Lock()
"""The gate of callers that are woken another way (never acquired)."""


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

    done: asyncio.Future[None] | None = None
    """For a caller on an event loop: the future it awaits instead of the gate."""


def _finish_all(items: Sequence[_Pending[T]]) -> None:
    """Wake each caller once: a thread by its gate, loop callers by one wake-up per loop
    (each `call_soon_threadsafe` writes to the loop's self-pipe)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for item in items:
        if item.finished:
            continue
        item.finished = True
        if item.done is None:
            item.gate.release()
        else:
            by_loop.setdefault(item.done.get_loop(), []).append(item.done)
    for loop, futures in by_loop.items():
        loop.call_soon_threadsafe(_resolve_all, futures)


def _resolve_all(futures: list[asyncio.Future[None]]) -> None:
    for done in futures:
        if not done.done():  # a cancelled caller's future stays cancelled
            done.set_result(None)


class GroupCommit(Generic[T]):
    """Batches calls to `write(items) -> position of the first item`."""

    def __init__(self, write: Callable[[list[T]], int], *, max_batch: int = 50_000) -> None:
        self._write_fn = write
        self.max_batch = max_batch
        self._queue: list[_Pending[T]] = []
        self._writing = False
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._kicks: queue.SimpleQueue[None] = queue.SimpleQueue()

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

    async def submit_async(self, items: Sequence[T]) -> int:
        """`submit` for a caller on an event loop: the write runs off the loop."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        mine: _Pending[T] = _Pending(items, gate=_OPEN, done=done)
        with self._lock:
            self._queue.append(mine)
            lead = not self._writing
            self._writing = True
        if lead:
            self._kick()
        await done
        if mine.error is not None:
            raise mine.error
        return mine.first

    def _kick(self) -> None:
        """Have the writer thread drain the queue, starting it on first use.

        Its own thread, never a shared pool: a pool full of blocked sync callers would
        queue the very write they wait for. A SimpleQueue put is the cheapest wake-up.
        """
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    self._writer = threading.Thread(
                        target=self._write_on_kicks, name="group-commit", daemon=True
                    )
                    self._writer.start()
        self._kicks.put(None)

    def _write_on_kicks(self) -> None:
        while True:
            self._kicks.get()
            # A failed write was already handed to every waiter of its batch.
            with contextlib.suppress(Exception):
                self._drain()

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
            _finish_all(stranded)
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
            _finish_all(batch)
            return
        for item in batch:
            item.first = first
            first += len(item.items)
        _finish_all(batch)
