"""The sequencer (group commit in front of a region log) and the checkpointer.

A caller's entries are acknowledged (their indices returned) only after the batch
that holds them has committed; a checkpointer thread signs checkpoints on an interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import httpx

from domicile.errors import DomicileError, RecordingFailed
from domicile.ledger.log import RegionLog
from domicile.ledger.witnessing import Witness, witness_latest
from domicile.storage.group_commit import GroupCommit

log = logging.getLogger("domicile.ledger")


class Sequencer:
    """Batches appends to one `RegionLog` (group commit)."""

    def __init__(self, log: RegionLog, *, max_batch: int = 50_000) -> None:
        self.log = log
        self._commit: GroupCommit[bytes] = GroupCommit(self._write, max_batch=max_batch)

    def _write(self, entries: list[bytes]) -> int:
        return self.log.append(entries)

    def append(self, entries: Sequence[bytes]) -> int:
        """Append entries; return the index of the first once they are durable."""
        if not entries:
            return self.log.size
        try:
            return self._commit.submit(entries)
        except RecordingFailed:
            raise
        except Exception as exc:
            raise RecordingFailed(f"ledger append failed: {exc}") from exc

    async def append_async(self, entries: Sequence[bytes]) -> int:
        """`append` for a caller on an event loop; the write runs off the loop."""
        if not entries:
            return self.log.size
        try:
            return await self._commit.submit_async(entries)
        except RecordingFailed:
            raise
        except Exception as exc:
            raise RecordingFailed(f"ledger append failed: {exc}") from exc


class Checkpointer:
    """Signs a checkpoint for each log whenever it grew, every `interval` seconds, and
    has the configured witnesses cosign it."""

    def __init__(
        self, logs: Sequence[RegionLog], interval: float, witnesses: Sequence[Witness] = ()
    ) -> None:
        self.logs = list(logs)
        self.interval = interval
        self.witnesses = list(witnesses)
        self._http = httpx.Client(timeout=10.0) if self.witnesses else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpointer", daemon=True)

    def start(self) -> None:
        """Start signing in the background."""
        self._thread.start()

    def sign_all(self) -> None:
        """Sign a checkpoint for every log that grew, then extend its leaf-hash index."""
        for region_log in self.logs:
            try:
                region_log.sign_checkpoint()
                region_log.index_leaves()
            except DomicileError as exc:
                log.error("checkpoint of `%s` not signed: %s", region_log.origin, exc)
                continue
            if self._http is not None:
                witness_latest(region_log, self.witnesses, self._http)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sign_all()

    def stop(self) -> None:
        """Stop, signing once more so what was integrated is covered."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sign_all()
        if self._http is not None:
            self._http.close()
