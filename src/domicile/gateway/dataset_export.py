"""Dataset exports: a region's subjects sent to a destination under a transfer agreement.

One export is one `transfer` decision, recorded in the ledger before any key is
unwrapped. The records are then read a page at a time (one vault statement per page),
their keys unwrapped in one custodian call per page (each unwrap recorded against the
decision), opened, transformed under the agreement and written as NDJSON to a spool
file, while a `KAnonymityChecker` counts the equivalence classes of the
quasi-identifiers, SHA-256 runs over the bytes, and the threshold counter's keyed ref
of each subject goes to a second spool file (32 bytes a subject). Memory stays flat: a
page of records and the classes, whatever the number of subjects.

Nothing is released until the whole spool is k-anonymous and the bulk thresholds
allow it (counted from the ref spool in chunks, inside one transaction that is rolled
back on a block); then a `transfer` entry records counts, fields, k and the digest of
exactly the bytes that will be sent, and only then is the spool streamed out.

Each line is ``{"fields": {...}, "subject": <pseudonym of the subject id in the
agreement's domain>}``: stable within one agreement (so the recipient can join
exports), unlinkable across agreements, and never the subject id.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

import orjson

from domicile.catalog.catalog import JsonValue
from domicile.errors import AccessDenied, InvalidInput, KeyDestroyed
from domicile.gateway.pipeline import Gateway, Recorded, is_subject_id
from domicile.gateway.request import AccessRequest, Action, Event
from domicile.gateway.transfer import TransferDesk, terms_of
from domicile.gateway.transform import Outbound
from domicile.keys.envelope import open_fields
from domicile.pets.kanon import KAnonymityChecker, KAnonymityReport, verify_k_anonymous
from domicile.pets.keyed import Pseudonymiser, canonical_value
from domicile.pets.transform import CanonicalTransform
from domicile.principals.store import Principal
from domicile.transfers.model import Agreement
from domicile.transfers.thresholds import ThresholdCounter, ThresholdStatus
from domicile.vault.store import SealedRecord

__all__ = ["ExportSpec", "PreparedExport", "prepare_export"]

_CHUNK = 1 << 20  # bytes per read of the spool while streaming
_REF_BYTES = 32  # a threshold ref (`ThresholdCounter.subject_ref`): 32 hex digits
_REFS_PER_COUNT = 5000  # refs per chunk when the thresholds count an export


@dataclass(frozen=True)
class ExportSpec:
    """What to export: a region's subjects (all, or the listed ones) under an agreement."""

    region: str
    agreement_id: str
    fields: tuple[str, ...] | None = None  # None: every field the agreement sends
    subjects: tuple[str, ...] | None = None  # None: every active subject of the region
    k: int | None = None  # None: the deployment's minimum; never lower than it
    quasi_identifiers: tuple[str, ...] | None = None  # None: generalised and country fields


@dataclass
class PreparedExport:
    """A checked, recorded export waiting in its spool file to be streamed."""

    path: str
    records: int
    size: int
    digest: str
    agreement: Agreement
    report: KAnonymityReport
    ledger_index: int
    fields: dict[str, str] = field(default_factory=dict)

    def chunks(self) -> Iterator[bytes]:
        """Yield the spool's bytes, then delete it."""
        try:
            with open(self.path, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    yield chunk
        finally:
            self.discard()

    def discard(self) -> None:
        """Delete the spool file."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _agreement(desk: TransferDesk, spec: ExportSpec, at: datetime) -> Agreement:
    agreement = desk.agreements.get(spec.agreement_id)
    desk.destinations.verify_trusted(agreement.destination_entity, agreement.destination_country)
    if agreement.terminated:
        raise AccessDenied(f"agreement `{agreement.id}` is terminated")
    if not agreement.is_in_force(at):
        raise AccessDenied(f"agreement `{agreement.id}` is not in force at {at.isoformat()}")
    return agreement


def _fields(agreement: Agreement, spec: ExportSpec) -> dict[str, str]:
    sent = {n: t for n, t in agreement.fields.items() if t != "suppress"}
    names = list(spec.fields) if spec.fields is not None else sorted(sent)
    missing = [n for n in names if n not in sent]
    if missing:
        raise AccessDenied(f"agreement `{agreement.id}` does not send `{missing[0]}`")
    if not names:
        raise InvalidInput("an export names at least one field")
    return {n: sent[n] for n in sorted(names)}


def _quasi_identifiers(desk: TransferDesk, fields: dict[str, str], spec: ExportSpec) -> list[str]:
    if spec.quasi_identifiers is not None:
        unknown = [q for q in spec.quasi_identifiers if q not in fields]
        if unknown:
            raise InvalidInput(f"quasi-identifier `{unknown[0]}` is not an exported field")
        return sorted(spec.quasi_identifiers)
    # By default: what generalisation leaves behind, and countries. Pseudonyms are unique
    # per person by design; they are identifiers, not quasi-identifiers.
    return [
        n
        for n, t in fields.items()
        if t.startswith("generalise:") or desk.catalog.field(n).type == "country"
    ]


def _record_pages(
    gateway: Gateway, spec: ExportSpec, names: frozenset[str], page: int
) -> Iterator[list[SealedRecord]]:
    """The region's active subjects (or the listed ones homed there), a page at a time."""
    vault = gateway.regions[spec.region].vault
    if spec.subjects is None:
        after = ""
        while records := vault.fetch_active_page(after, page, sorted(names)):
            yield records
            after = records[-1].subject_id
        return
    ids = list(dict.fromkeys(spec.subjects))
    if any(not is_subject_id(s) for s in ids):
        raise InvalidInput("an export lists subject ids of 32 hex digits only")
    for start in range(0, len(ids), page):
        chunk = ids[start : start + page]
        homes = gateway.directory.lookup_many(chunk)
        mine = [s for s in chunk if s in homes and homes[s].home_region == spec.region]
        found = vault.fetch_many(mine, names)  # erased or moved meanwhile: left out
        yield [r for r in found.values() if isinstance(r, SealedRecord)]


def _count(gateway: Gateway, spec: ExportSpec) -> int:
    if spec.subjects is None:
        return gateway.regions[spec.region].vault.count()
    return len(set(spec.subjects))


def _opener(
    gateway: Gateway, recorded: Recorded, desk: TransferDesk
) -> Callable[[SealedRecord, bytes], dict[str, JsonValue]]:
    """Open and transform one record: the compiled plan when the gateway's transform step
    is the standard one, else open, decode and ask the gateway's transformer."""
    request = recorded.request
    region, transfer = request.region, request.transfer
    assert transfer is not None
    if isinstance(gateway.transformer, Outbound):  # the same plan, keys and domain it uses
        plan = {p.field: p for p in transfer.plan if p.field in request.fields}
        keys = gateway.transformer.keys[region]
        compiled = CanonicalTransform(
            plan, keys, domain=transfer.agreement_id, decode=desk.catalog.decode
        )
        return lambda record, key: compiled.apply(
            open_fields(key, record.subject_id, region, record.fields)
        )
    return lambda record, key: gateway.transformer.transform(
        request, gateway.open_values(region, record.subject_id, key, record.fields)
    )


def _line(subject: str, values: dict[str, JsonValue]) -> bytes:
    document = {"fields": values, "subject": subject}
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:  # e.g. an integer wider than 64 bits
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode() + b"\n"


@dataclass
class _Spooled:
    """What the spooling pass saw: records, bytes and their digest."""

    records: int = 0
    size: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)


_Page = tuple[list[SealedRecord], dict[str, bytes | KeyDestroyed]]


class _PageWriter(threading.Thread):
    """Transforms and writes pages in a thread of its own while the caller reads the next.

    Reading a page and unwrapping its keys spend most of their time in SQLite and in
    fsync, which release the GIL, so they overlap with the transforms. The thread
    touches no database (each thread would open its own connections); at most `depth`
    pages wait for it, so memory stays bounded.
    """

    def __init__(self, write: Callable[[_Page], None], depth: int = 2) -> None:
        super().__init__(name="domicile-export-writer", daemon=True)
        self._write = write
        self._pages: queue.Queue[_Page | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None

    def run(self) -> None:
        """Write pages until the end mark; keep the first error for `finish`."""
        try:
            while (page := self._pages.get()) is not None:
                self._write(page)
        except BaseException as exc:  # raised again in the caller's thread by `finish`
            self.error = exc

    def submit(self, page: _Page | None) -> bool:
        """Queue a page (None: the end); False once the writer has stopped."""
        while self.is_alive():
            try:
                self._pages.put(page, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def finish(self) -> None:
        """Wait for every queued page; raise the writer's error, if any."""
        self.submit(None)
        self.join()
        if self.error is not None:
            raise self.error


def _unwrapped_pages(
    gateway: Gateway, recorded: Recorded, spec: ExportSpec, page: int
) -> Iterator[_Page]:
    """Each page of records with their data keys, unwrapped against the recorded decision."""
    custodian = gateway.regions[spec.region].custodian
    auth = recorded.authorization()
    for records in _record_pages(gateway, spec, recorded.request.fields, page):
        wanted = [(r.subject_id, auth) for r in records if r.fields]
        yield records, (custodian.unwrap_data_keys(wanted) if wanted else {})


def _spool(
    gateway: Gateway,
    desk: TransferDesk,
    recorded: Recorded,
    spec: ExportSpec,
    page: int,
    out: IO[bytes],
    refs_out: IO[bytes],
    checker: KAnonymityChecker,
    qis: list[str],
) -> _Spooled:
    """Write every record to `out` and its threshold ref to `refs_out`."""
    transfer = recorded.request.transfer
    assert transfer is not None
    counter = desk.counters[spec.region]
    subject_key = desk.keys[spec.region].pseudonym_key(transfer.agreement_id)
    subject = Pseudonymiser(subject_key, "subject_id")
    transform = _opener(gateway, recorded, desk)
    done = _Spooled()

    def write(page: _Page) -> None:
        records, keys = page
        lines: list[bytes] = []
        refs: list[str] = []
        for record in records:
            sid = record.subject_id
            key = keys.get(sid)
            if isinstance(key, KeyDestroyed):
                continue  # erased since the page was read
            values = transform(record, key) if key is not None else {}
            lines.append(_line(subject.of_canonical(canonical_value("subject_id", sid)), values))
            refs.append(counter.subject_ref(sid))
            checker.add([values.get(q) for q in qis])
        chunk = b"".join(lines)
        out.write(chunk)
        refs_out.write("".join(refs).encode("ascii"))
        done.digest.update(chunk)
        done.size += len(chunk)
        done.records += len(lines)

    writer = _PageWriter(write)
    writer.start()
    try:
        for item in _unwrapped_pages(gateway, recorded, spec, page):
            if not writer.submit(item):
                break  # the writer failed: `finish` raises its error
    finally:
        writer.finish()
    return done


def _ref_chunks(path: str) -> Iterator[list[str]]:
    with open(path, "rb") as handle:
        while data := handle.read(_REF_BYTES * _REFS_PER_COUNT):
            text = data.decode("ascii")
            yield [text[i : i + _REF_BYTES] for i in range(0, len(text), _REF_BYTES)]


def _count_thresholds(
    counter: ThresholdCounter, agreement: Agreement, fields: dict[str, str], refs_path: str
) -> ThresholdStatus:
    return counter.check_and_count_refs(
        destination_country=agreement.destination_country, fields=fields,
        ref_chunks=_ref_chunks(refs_path), at=datetime.now(UTC), agreement=agreement,
    )  # fmt: skip


def _event(recorded: Recorded, event: str, **extra: object) -> Event:
    transfer = recorded.request.transfer
    assert transfer is not None
    return Event(
        "transfer",
        recorded.request.region,
        {
            "event": event,
            "decision_id": recorded.decision.decision_id,
            "decision_index": recorded.index,
            "principal_id": recorded.request.principal.id,
            "agreement_id": transfer.agreement_id,
            "agreement_version": transfer.agreement_version,
            "destination_entity": transfer.destination_entity,
            "destination_country": transfer.destination_country,
            "purpose": recorded.request.purpose,
            **extra,
        },
    )


def _kanon_record(report: KAnonymityReport, qis: list[str]) -> dict[str, object]:
    return {
        "k": report.k,
        "quasi_identifiers": qis,
        "classes": report.classes,
        "smallest_class": report.smallest_class,
        "offending_classes": report.offending_classes,
    }


def _decide(
    gateway: Gateway, desk: TransferDesk, principal: Principal, spec: ExportSpec, min_k: int
) -> tuple[Recorded, Agreement, dict[str, str], int]:
    if spec.region not in gateway.regions:
        raise InvalidInput(f"no region `{spec.region[:64]}`")
    k = max(min_k, spec.k or min_k)
    agreement = _agreement(desk, spec, datetime.now(UTC))
    fields = _fields(agreement, spec)
    limit = agreement.max_subjects_per_request
    if limit is not None and _count(gateway, spec) > limit:
        raise AccessDenied(
            f"agreement `{agreement.id}` allows at most {limit} subjects per request"
        )
    request = AccessRequest(
        principal, Action.TRANSFER, spec.region, None, frozenset(fields), agreement.purpose,
        transfer=terms_of(agreement, desk.catalog),
    )  # fmt: skip
    return gateway.decide(request), agreement, fields, k


def _spool_file(prefix: str, suffix: str, spool_dir: str | None) -> IO[bytes]:
    return tempfile.NamedTemporaryFile(prefix=prefix, suffix=suffix, dir=spool_dir, delete=False)


def prepare_export(
    gateway: Gateway,
    desk: TransferDesk,
    principal: Principal,
    spec: ExportSpec,
    *,
    min_k: int = 5,
    page: int = 500,
    spool_dir: str | None = None,
) -> PreparedExport:
    """Decide, spool, check k-anonymity and thresholds, and record an export; or raise."""
    recorded, agreement, fields, k = _decide(gateway, desk, principal, spec, min_k)
    qis = _quasi_identifiers(desk, fields, spec)
    checker = KAnonymityChecker(k)
    handle = _spool_file("domicile-export-", ".ndjson", spool_dir)
    try:
        refs = _spool_file("domicile-export-", ".refs", spool_dir)
    except BaseException:
        handle.close()
        os.unlink(handle.name)
        raise
    try:
        with handle, refs:
            done = _spool(gateway, desk, recorded, spec, page, handle, refs, checker, qis)
        digest = done.digest.hexdigest()
        report = checker.report()
        kanon = _kanon_record(report, qis)
        if not report.is_k_anonymous:
            gateway.record([_event(recorded, "export-refused", reason="k-anonymity", **kanon)])
            verify_k_anonymous(report)
        status = _count_thresholds(desk.counters[spec.region], agreement, fields, refs.name)
        transfer = recorded.request.transfer
        assert transfer is not None
        alerts = desk.threshold_events(spec.region, transfer, status)
        if status.blocked:
            gateway.record(alerts)
            status.verify_allowed()
        event = _event(
            recorded, "export", fields=fields, subjects=done.records, bytes=done.size,
            sha256=digest, k_anonymity=kanon,
        )  # fmt: skip
        index = gateway.record([*alerts, event])[-1]
    except BaseException:
        os.unlink(handle.name)
        raise
    finally:
        os.unlink(refs.name)
    return PreparedExport(
        handle.name, done.records, done.size, digest, agreement, report, index, fields
    )
