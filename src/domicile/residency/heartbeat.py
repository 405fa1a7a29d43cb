"""The heartbeat of registrations in flight: it keeps their directory reservations fresh.

Recovery, in any process that shares the directory, undoes `registering` reservations
that have not changed for `recovery_idle` seconds: it cannot tell a crashed
registration from a slow one (a huge batch, a slow database) except by that silence.
So while a registration runs, its reservations are touched every fraction of the
window, and only one whose process died falls silent and is recovered.

One thread per gateway does it for every registration in flight, started by the first
one and asleep while none is in flight: a registration only adds its ids to a table
and takes them out, and one that ends within an interval never causes a write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from domicile.residency.directory import SubjectDirectory

log = logging.getLogger("domicile.residency")

BEATS_PER_WINDOW = 4
"""Touches per idle window: a beat may be late by three quarters of the window (a slow
touch, a busy process) before recovery could take the registration for dead."""
MAX_BEAT_INTERVAL = 15.0
"""The longest wait between touches, whatever the window. Another process on the same
directory may run with a shorter `recovery_idle` than this one's: with this cap, one
whose window is at least `BEATS_PER_WINDOW` times it (a minute) never takes this
process's registrations for dead."""


class ReservationHeartbeat:
    """Touches the reservations of the registrations in flight every `interval` seconds."""

    def __init__(self, directory: SubjectDirectory, interval: float) -> None:
        self.directory = directory
        self.interval = interval
        self._held: dict[object, Sequence[str]] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    @classmethod
    def for_window(cls, directory: SubjectDirectory, idle_for: float) -> ReservationHeartbeat:
        """A heartbeat for recovery that undoes what was idle `idle_for` seconds (0: none,
        since such a recovery runs only at start and waits for nothing): every quarter of
        the window, and at least every `MAX_BEAT_INTERVAL` seconds."""
        return cls(directory, min(idle_for / BEATS_PER_WINDOW, MAX_BEAT_INTERVAL))

    @contextmanager
    def keep(self, subject_ids: Sequence[str]) -> Iterator[None]:
        """Keep these reservations fresh until the block ends."""
        if self.interval <= 0 or not subject_ids:
            yield
            return
        token = object()
        with self._changed:
            self._held[token] = subject_ids
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=self._run, name="domicile-reservations", daemon=True
                )
                self._thread.start()
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                del self._held[token]

    def stop(self) -> None:
        """Stop beating (waits for a touch in progress); later registrations get none."""
        with self._changed:
            self._stopped = True
            self._changed.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._held or self._stopped)
                # A registration that joins mid-interval was reserved since the last beat.
                self._changed.wait_for(lambda: self._stopped, self.interval)
                if self._stopped:
                    return
                ids = [sid for held in self._held.values() for sid in held]
            if not ids:
                continue
            try:
                self.directory.touch(ids)
            except Exception:  # the next beat tries again, well within the window
                log.exception("could not keep %d reservations fresh", len(ids))
