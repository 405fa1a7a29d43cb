"""Dataset exports: a region's subjects sent to a destination under a transfer agreement.

One export is one `transfer` decision, recorded in the ledger before any key is
unwrapped. The records are then read a page at a time (one vault statement per page)
and their keys unwrapped in one custodian call per page (each unwrap recorded against
the decision). Each page is opened, transformed under the agreement and turned into
NDJSON lines by `export_pages` — in worker processes for a large export, so the CPU
work of the transforms runs beside the reading on other cores — and the pages come back
in order: the lines go to a spool file while SHA-256 runs over the bytes, the
threshold counter's keyed ref of each subject to a second spool file (32 bytes a
subject), and the page's counts of quasi-identifier classes to a `KAnonymityChecker`.
Memory stays flat: a few pages in flight and the classes, whatever the number of
subjects.

Nothing is released until the whole spool is k-anonymous and the bulk thresholds
allow it (counted from the ref spool in chunks, inside one transaction that is rolled
back on a block); then a `transfer` entry records counts, fields, k and the digest of
exactly the bytes that will be sent, and only then is the spool streamed out.

Each line is ``{"fields": {...}, "subject": <pseudonym of the subject id in the
agreement's domain>}``: stable within one agreement (so the recipient can join
exports), unlinkable across agreements, and never the subject id.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from domicile.catalog.catalog import JsonValue
from domicile.errors import AccessDenied, InvalidInput, KeyDestroyed, RequestAbandoned
from domicile.gateway.export_pages import PageOut, PageRecipe, PageSpooler, Row, page_executor
from domicile.gateway.pipeline import Gateway, Recorded, is_subject_id
from domicile.gateway.request import AccessRequest, Action, Event
from domicile.gateway.transfer import TransferDesk, terms_of
from domicile.gateway.transform import Outbound
from domicile.pets.kanon import KAnonymityChecker, KAnonymityReport, verify_k_anonymous
from domicile.principals.store import Principal
from domicile.transfers.model import Agreement
from domicile.transfers.thresholds import ThresholdCounter, ThresholdStatus

__all__ = ["ExportSpec", "PreparedExport", "finish_export", "prepare_export"]

_CHUNK = 1 << 20  # bytes per read of the spool while streaming
_REF_BYTES = 32  # a threshold ref (`ThresholdCounter.subject_ref`): 32 hex digits
# Refs per chunk when the thresholds count an export. The counter sorts each chunk and
# upserts it in key order, so the larger the chunk, the more neighbouring refs share a
# page of the counted-refs tree; 50,000 refs are about 10 MiB of Python objects.
_REFS_PER_COUNT = 50_000
_POOL_MIN = 20_000  # subjects from which worker processes pay for their start
_AHEAD = 2  # pages in flight per worker (one being transformed, one waiting)
_ASK_EVERY = 32  # pages between two checks that the client is still there


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

    spool: IO[bytes]
    """The spool, open for reading and already unlinked: nothing of it has a name on
    disk, so an export whose client went away, or a process that died, leaves no file
    of pseudonymised records behind; its space is freed when it is closed."""
    records: int
    size: int
    digest: str
    agreement: Agreement
    report: KAnonymityReport
    ledger_index: int
    fields: dict[str, str] = field(default_factory=dict)
    recorded: Recorded | None = None  # the export's decision
    sent: int = 0
    """Bytes `chunks` has handed out so far."""
    finished: bool = False  # `finish_export` has run

    def chunks(self) -> Iterator[bytes]:
        """Yield the spool's bytes, then close it."""
        try:
            while chunk := self.spool.read(_CHUNK):
                self.sent += len(chunk)
                yield chunk
        finally:
            self.discard()

    def discard(self) -> None:
        """Close the spool (idempotent), which frees its space."""
        self.spool.close()


def finish_export(gateway: Gateway, prepared: PreparedExport) -> int | None:
    """Close an export's stream once it has ended, however it ended (idempotent).

    The ledger recorded the export before its first byte, as released. A stream that
    ended before its last byte (the client went away, the connection broke) gets an
    `export-interrupted` entry with the bytes handed out, so the record says how much
    of it can have left; its index is returned (None for a whole stream).
    """
    if prepared.finished:
        return None
    prepared.finished = True
    prepared.discard()
    if prepared.sent >= prepared.size or prepared.recorded is None:
        return None
    event = _event(
        prepared.recorded, "export-interrupted", export_index=prepared.ledger_index,
        bytes=prepared.size, bytes_sent=prepared.sent,
    )  # fmt: skip
    return gateway.record([event])[0]


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


def _record_pages(gateway: Gateway, spec: ExportSpec, page: int) -> Iterator[list[Row]]:
    """The region's active subjects (or the listed ones homed there), a page at a time."""
    vault = gateway.regions[spec.region].vault
    if spec.subjects is None:
        after = ""
        while rows := vault.active_sealed_page(after, page):
            yield rows
            after = rows[-1][0]
        return
    ids = list(dict.fromkeys(spec.subjects))
    if any(not is_subject_id(s) for s in ids):
        raise InvalidInput("an export lists subject ids of 32 hex digits only")
    for start in range(0, len(ids), page):
        chunk = ids[start : start + page]
        homes = gateway.directory.lookup_many(chunk)
        mine = [s for s in chunk if s in homes and homes[s].home_region == spec.region]
        yield vault.active_sealed(mine)  # erased or moved meanwhile: left out


def _count(gateway: Gateway, spec: ExportSpec) -> int:
    if spec.subjects is None:
        return gateway.regions[spec.region].vault.count()
    return len(set(spec.subjects))


def _recipe(gateway: Gateway, recorded: Recorded, desk: TransferDesk, qis: list[str]) -> PageRecipe:
    request = recorded.request
    region, transfer = request.region, request.transfer
    assert transfer is not None
    keys = desk.keys[region]
    return PageRecipe(
        region=region,
        domain=transfer.agreement_id,
        plan={p.field: p for p in transfer.plan if p.field in request.fields},
        domain_key=keys.pseudonym_key(transfer.agreement_id),
        token_key=keys.token_key(),
        refs=desk.counters[region].refs,
        quasi_identifiers=tuple(qis),
    )


def _spooler(gateway: Gateway, recorded: Recorded, recipe: PageRecipe) -> PageSpooler:
    """The compiled plan when the gateway's transform step is the standard one (the same
    plan, keys and domain it uses), else open, decode and ask the gateway's transformer."""
    if isinstance(gateway.transformer, Outbound):
        return PageSpooler(recipe)
    request, transformer = recorded.request, gateway.transformer

    def opener(sid: str, key: bytes, sealed: Mapping[str, bytes]) -> dict[str, JsonValue]:
        return transformer.transform(request, gateway.open_values(recipe.region, sid, key, sealed))

    return PageSpooler(recipe, opener)


@dataclass
class _Spooled:
    """What the spooling pass saw: records, bytes and their digest."""

    records: int = 0
    size: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)


def _unwrapped_pages(
    gateway: Gateway, recorded: Recorded, spec: ExportSpec, page: int
) -> Iterator[tuple[list[Row], dict[str, bytes]]]:
    """Each page of rows with their data keys, unwrapped against the recorded decision;
    a subject erased since its page was read (its key destroyed) is left out."""
    custodian = gateway.regions[spec.region].custodian
    auth = recorded.authorization()
    for rows in _record_pages(gateway, spec, page):
        wanted = [(sid, auth) for sid, stored in rows if stored is not None]
        keys = custodian.unwrap_data_keys(wanted) if wanted else {}
        gone = {sid for sid, key in keys.items() if isinstance(key, KeyDestroyed)}
        live = [row for row in rows if row[0] not in gone]
        yield live, {sid: key for sid, key in keys.items() if isinstance(key, bytes)}


def _spool(
    gateway: Gateway,
    recorded: Recorded,
    spec: ExportSpec,
    page: int,
    workers: int,
    recipe: PageRecipe,
    files: tuple[IO[bytes], IO[bytes]],
    checker: KAnonymityChecker,
    ask: Callable[[], None],
) -> _Spooled:
    """Write every record to the first file and its threshold ref to the second, in order.

    Pages are transformed while the next ones are read: by `workers` processes for a
    large export through the standard transform step, else by one thread. At most
    `_AHEAD` pages per worker wait, so memory stays bounded."""
    out, refs_out = files
    spooler = _spooler(gateway, recorded, recipe)
    if not isinstance(gateway.transformer, Outbound) or _count(gateway, spec) < _POOL_MIN:
        workers = 0
    done = _Spooled()
    ahead: deque[Future[PageOut]] = deque()

    def take() -> None:
        result = ahead.popleft().result()
        out.write(result.lines)
        refs_out.write(result.refs)
        done.digest.update(result.lines)
        done.size += len(result.lines)
        done.records += result.records
        checker.add_counts(result.classes)

    with page_executor(spooler, recipe, workers) as submit:
        for number, (rows, keys) in enumerate(_unwrapped_pages(gateway, recorded, spec, page)):
            if number % _ASK_EVERY == _ASK_EVERY - 1:
                ask()  # a client that went away stops its export here
            ahead.append(submit(rows, keys))
            while len(ahead) > _AHEAD * max(workers, 1):
                take()
        while ahead:
            take()
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
    workers: int = 0,
    spool_dir: str | None = None,
    abandoned: Callable[[], bool] | None = None,
) -> PreparedExport:
    """Decide, spool, check k-anonymity and thresholds, and record an export; or raise.

    `workers` processes transform the pages of an export of `_POOL_MIN` subjects or more
    (0: a thread of this process does). `abandoned` says whether the client has gone
    away; it is asked every `_ASK_EVERY` pages and before anything is counted, and a yes
    stops the export with an `export-abandoned` entry and RequestAbandoned: nothing is
    counted or released."""
    recorded, agreement, fields, k = _decide(gateway, desk, principal, spec, min_k)

    def ask() -> None:
        if abandoned is not None and abandoned():
            raise RequestAbandoned("the client went away before the export was released")

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
            recipe = _recipe(gateway, recorded, desk, qis)
            files = (handle, refs)
            done = _spool(gateway, recorded, spec, page, workers, recipe, files, checker, ask)
        digest = done.digest.hexdigest()
        report = checker.report()
        kanon = _kanon_record(report, qis)
        if not report.is_k_anonymous:
            gateway.record([_event(recorded, "export-refused", reason="k-anonymity", **kanon)])
            verify_k_anonymous(report)
        ask()  # the last moment before anything is counted
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
        spool = open(handle.name, "rb")  # noqa: SIM115 - the export's to close
    except RequestAbandoned:
        os.unlink(handle.name)
        gateway.record([_event(recorded, "export-abandoned", reason="client-disconnected")])
        raise
    except BaseException:
        os.unlink(handle.name)
        raise
    finally:
        os.unlink(refs.name)
    os.unlink(handle.name)  # nameless from here on: the open handle is all that is left
    return PreparedExport(spool, done.records, done.size, digest, agreement, report, index,
                          fields, recorded)  # fmt: skip
