"""Group commit in front of a region log: many callers, one durable write per batch.

A caller's entries are acknowledged (their indices returned) only after the batch
that holds them has committed. Whichever caller finds no write in progress becomes
the writer for everything queued so far, so there is no extra thread and a lone
caller pays one transaction. A checkpointer thread signs checkpoints on an interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from domicile.errors import DomicileError, RecordingFailed
from domicile.ledger.log import RegionLog

log = logging.getLogger("domicile.ledger")


@dataclass
class _Pending:
    entries: Sequence[bytes]
    first: int = -1
    error: BaseException | None = None
    done: bool = False


@dataclass
class Sequencer:
    """Batches appends to one `RegionLog`."""

    log: RegionLog
    max_batch: int = 50_000
    _queue: list[_Pending] = field(default_factory=list)
    _writing: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def append(self, entries: Sequence[bytes]) -> int:
        """Append entries; return the index of the first once they are durable."""
        if not entries:
            return self.log.size
        mine = _Pending(entries)
        with self._cond:
            self._queue.append(mine)
            while not mine.done and self._writing:
                self._cond.wait()
            if mine.done:
                return self._result(mine)
            self._writing = True
        try:
            while True:
                with self._cond:
                    batch = self._take()
                    if not batch:
                        self._writing = False
                        self._cond.notify_all()
                        break
                self._write(batch)
                with self._cond:
                    self._cond.notify_all()
        except BaseException:
            with self._cond:
                self._writing = False
                self._cond.notify_all()
            raise
        return self._result(mine)

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        count = 0
        while self._queue and (not batch or count + len(self._queue[0].entries) <= self.max_batch):
            item = self._queue.pop(0)
            batch.append(item)
            count += len(item.entries)
        return batch

    def _write(self, batch: list[_Pending]) -> None:
        try:
            first = self.log.append([e for item in batch for e in item.entries])
        except Exception as exc:  # every waiter learns its entries were not recorded
            for item in batch:
                item.error, item.done = exc, True
            return
        for item in batch:
            item.first, item.done = first, True
            first += len(item.entries)

    @staticmethod
    def _result(item: _Pending) -> int:
        if item.error is not None:
            if isinstance(item.error, RecordingFailed):
                raise item.error
            raise RecordingFailed(f"ledger append failed: {item.error}") from item.error
        return item.first


class Checkpointer:
    """Signs a checkpoint for each log whenever it grew, every `interval` seconds."""

    def __init__(self, logs: Sequence[RegionLog], interval: float) -> None:
        self.logs = list(logs)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpointer", daemon=True)

    def start(self) -> None:
        """Start signing in the background."""
        self._thread.start()

    def sign_all(self) -> None:
        """Sign a checkpoint for every log that grew."""
        for region_log in self.logs:
            try:
                region_log.sign_checkpoint()
            except DomicileError as exc:
                log.error("checkpoint of `%s` not signed: %s", region_log.origin, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sign_all()

    def stop(self) -> None:
        """Stop, signing once more so what was integrated is covered."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sign_all()
