"""Relocation: move a subject to a new home region — copy, verify, switch, shred.

The directory's `home_region` is switched in one update only after the copy in the
destination has been read back and compared, so the subject is always served from
exactly one vault. `recover` finishes or undoes a relocation that a crash interrupted:
a copy never made authoritative is discarded; an origin not yet shredded is shredded.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta

from domicile.errors import AccessDenied, IntegrityError
from domicile.gateway.pipeline import Gateway, Recorded, check_subject_id
from domicile.gateway.request import AccessRequest, Action, Event
from domicile.keys.custodian import Authorization
from domicile.principals.store import Principal
from domicile.vault.store import SealedRecord, SubjectState

_RECOVERY = Authorization(decision_id="recovery", action="recover")

log = logging.getLogger("domicile.gateway")


def relocate(gateway: Gateway, principal: Principal, subject_id: str, country: str) -> str:
    """Move a subject whose country changed to that country's home region; return it."""
    check_subject_id(subject_id)
    origin = gateway.directory.lookup(subject_id).home_region
    destination = gateway.topology.home_region(country)
    if destination == origin:
        return origin
    names = frozenset(gateway.catalog.fields)
    leave, arrive = gateway.decide_all(
        [
            (AccessRequest(principal, Action.RELOCATE, origin, subject_id, names), subject_id),
            # Arriving is a registration in the destination: the policy cannot tell the
            # two sides of a move apart, and must allow the arrival like any new subject.
            (AccessRequest(principal, Action.REGISTER, destination, subject_id, names), None),
        ]
    )
    for recorded in (leave, arrive):
        if not recorded.decision.allowed:
            raise AccessDenied(recorded.decision.reason)
    gateway.directory.begin_move(subject_id, destination)
    try:
        count = _copy(gateway, subject_id, leave, arrive)
    except BaseException:
        _discard_copy(gateway, subject_id, destination)
        gateway.directory.settle_move(subject_id)
        raise
    gateway.directory.switch_home(subject_id, destination)
    origin_ref = gateway.subject_ref(origin, subject_id)
    _shred_origin(gateway, subject_id, origin, leave.authorization())
    # Recorded before the markers are cleared: a crash before the record leaves the
    # move pending, and `recover` records it then.
    _record_move(gateway, subject_id, origin, destination, origin_ref, count)
    gateway.directory.settle_move(subject_id)
    return destination


def _record_move(
    gateway: Gateway,
    subject_id: str,
    origin: str,
    destination: str,
    origin_ref: str,
    count: int,
    *,
    recovered: bool = False,
) -> None:
    """The relocation's two entries, one in each region's log, paired by one id."""
    relocation_id = uuid.uuid4().hex
    extra = {"recovered": True} if recovered else {}
    gateway.record(
        [
            Event(
                "relocation",
                origin,
                {
                    "direction": "out",
                    "to": destination,
                    "relocation_id": relocation_id,
                    "subject_ref": origin_ref,
                    "fields": count,
                    **extra,
                },
            ),
            Event(
                "relocation",
                destination,
                {
                    "direction": "in",
                    "from": origin,
                    "relocation_id": relocation_id,
                    "subject_ref": gateway.subject_ref(destination, subject_id),
                    "fields": count,
                    **extra,
                },
            ),
        ]
    )


def _copy(gateway: Gateway, subject_id: str, leave: Recorded, arrive: Recorded) -> int:
    """Copy a subject's values to the destination and compare the copy; return their count."""
    origin, destination = leave.request.region, arrive.request.region
    source, target = gateway.regions[origin], gateway.regions[destination]
    record = source.vault.fetch(subject_id)
    values = gateway.open_values(
        origin, subject_id, gateway.unwrap(leave, subject_id), record.fields
    )
    key = target.custodian.create_data_keys([subject_id], arrive.authorization())[subject_id]
    sealed = gateway.seal_values(destination, subject_id, key, values)
    target.vault.insert(subject_id, sealed, record.catalog_version)
    copy = target.vault.fetch(subject_id)
    if gateway.open_values(destination, subject_id, key, copy.fields) != values:
        raise IntegrityError(f"copy of subject `{subject_id}` in `{destination}` differs")
    return len(values)


def _discard_copy(gateway: Gateway, subject_id: str, region: str) -> None:
    # Idempotent: the crash may have come before the key, the row, or both existed.
    runtime = gateway.regions[region]
    runtime.custodian.destroy_data_key(subject_id, _RECOVERY)
    runtime.vault.discard(subject_id)


def _shred_origin(gateway: Gateway, subject_id: str, region: str, auth: Authorization) -> None:
    runtime = gateway.regions[region]
    runtime.custodian.destroy_data_key(subject_id, auth)
    if runtime.vault.state(subject_id) is SubjectState.ACTIVE:
        runtime.vault.tombstone(subject_id, SubjectState.RELOCATED)


def recover(gateway: Gateway, *, idle_for: float = 0.0) -> int:
    """Finish or undo registrations and relocations a crash left open; return how many.

    With `idle_for`, only those unchanged for that many seconds: another process on the
    same directory (a second gateway, a CLI command) may be working on a recent one,
    and undoing a registration it is about to activate would lose it.

    A migration's reservations are left alone: the migration may be running in another
    process, and its own recovery finishes or undoes each page it left.
    """
    since = (datetime.now(UTC) - timedelta(seconds=idle_for)).isoformat(timespec="microseconds")
    pending = [
        e
        for e in gateway.directory.pending(since if idle_for > 0 else None)
        if e.reserved_by is None
    ]
    # Another process's recovery may have read the same entries: each is finished or
    # undone by the one that claims it, so a move is not recorded twice.
    pending = gateway.directory.claim(pending)
    unregistered = [e for e in pending if e.state == "registering"]
    by_region: dict[str, list[str]] = {}
    for entry in unregistered:
        by_region.setdefault(entry.home_region, []).append(entry.id)
    for region, ids in by_region.items():  # a crashed batch: one call per store, not per id
        runtime = gateway.regions[region]
        runtime.custodian.destroy_data_keys(ids, _RECOVERY)
        runtime.vault.discard_many(ids)
    gateway.directory.forget([e.id for e in unregistered])
    for entry in pending:
        if entry.state == "registering":
            continue
        if entry.moving_to:
            _discard_copy(gateway, entry.id, entry.moving_to)
        if entry.moved_from:
            # The destination is authoritative: finish the move and record it (again,
            # marked recovered, if the crash came between the record and the settle).
            origin_ref = gateway.subject_ref(entry.moved_from, entry.id)
            _shred_origin(gateway, entry.id, entry.moved_from, _RECOVERY)
            copy = gateway.regions[entry.home_region].vault.fetch_many([entry.id])[entry.id]
            count = len(copy.fields) if isinstance(copy, SealedRecord) else 0
            _record_move(gateway, entry.id, entry.moved_from, entry.home_region, origin_ref,
                         count, recovered=True)  # fmt: skip
        gateway.directory.settle_move(entry.id)
    return len(pending)


class RecoverySweeper:
    """Runs `recover` every `idle_for` seconds for what has been idle that long, so what a
    crash left behind while another process was running is cleaned up without a restart."""

    def __init__(self, gateway: Gateway, idle_for: float) -> None:
        self.gateway = gateway
        self.idle_for = idle_for
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="domicile-recovery", daemon=True)

    def start(self) -> None:
        """Start sweeping in a thread of its own."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sweeping (waits for a sweep in progress)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.idle_for):
            try:
                recovered = recover(self.gateway, idle_for=self.idle_for)
            except Exception:  # a failed sweep is retried at the next one
                log.exception("recovery sweep failed")
                continue
            if recovered:
                log.info("recovered %d interrupted registrations or relocations", recovered)
