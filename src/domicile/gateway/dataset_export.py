"""Dataset exports: a region's subjects sent to a destination under a transfer agreement.

One export is one `transfer` decision (recorded before any key is unwrapped). The
records are then read a page at a time, opened, transformed under the agreement and
written as NDJSON to a spool file while a `KAnonymityChecker` counts the equivalence
classes of the quasi-identifiers and SHA-256 runs over the bytes. Memory stays flat:
a page of records, the classes, and the subject ids for the threshold count.

Nothing is released until the whole spool is k-anonymous and the bulk thresholds
allow it; then a `transfer` entry records counts, fields, k and the digest of exactly
the bytes that will be sent, and only then is the spool streamed out.

Each line is ``{"subject": <pseudonym of the subject id in the agreement's domain>,
"fields": {...}}``: stable within one agreement (so the recipient can join exports),
unlinkable across agreements, and never the subject id.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from domicile.catalog.catalog import JsonValue
from domicile.errors import AccessDenied, InvalidInput, KeyDestroyed
from domicile.gateway.pipeline import Gateway, Recorded, is_subject_id
from domicile.gateway.request import AccessRequest, Action, Event
from domicile.gateway.transfer import TransferDesk, terms_of
from domicile.pets.kanon import KAnonymityChecker, KAnonymityReport, verify_k_anonymous
from domicile.pets.keyed import pseudonymise
from domicile.principals.store import Principal
from domicile.transfers.model import Agreement
from domicile.vault.store import SealedRecord

__all__ = ["ExportSpec", "PreparedExport", "prepare_export"]

_CHUNK = 1 << 16


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


def _subject_pages(gateway: Gateway, spec: ExportSpec, page: int) -> Iterator[list[str]]:
    if spec.subjects is None:
        batch: list[str] = []
        for sid in gateway.regions[spec.region].vault.iter_ids(page=page):
            batch.append(sid)
            if len(batch) == page:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    ids = list(dict.fromkeys(spec.subjects))
    if any(not is_subject_id(s) for s in ids):
        raise InvalidInput("an export lists subject ids of 32 hex digits only")
    for start in range(0, len(ids), page):
        chunk = ids[start : start + page]
        homes = gateway.directory.lookup_many(chunk)
        yield [s for s in chunk if s in homes and homes[s].home_region == spec.region]


def _count(gateway: Gateway, spec: ExportSpec) -> int:
    if spec.subjects is None:
        return gateway.regions[spec.region].vault.count()
    return len(set(spec.subjects))


def _open_page(
    gateway: Gateway, recorded: Recorded, ids: Sequence[str], names: frozenset[str]
) -> Iterator[tuple[str, dict[str, JsonValue]]]:
    region = recorded.request.region
    runtime = gateway.regions[region]
    found = runtime.vault.fetch_many(list(ids), names)
    sealed = {s: r for s, r in found.items() if isinstance(r, SealedRecord)}
    auth = recorded.authorization()
    keys = runtime.custodian.unwrap_data_keys([(s, auth) for s, r in sealed.items() if r.fields])
    for sid, record in sealed.items():
        key = keys.get(sid)
        if isinstance(key, KeyDestroyed):
            continue
        values = gateway.open_values(region, sid, key, record.fields) if key else {}
        yield sid, gateway.transformer.transform(recorded.request, values)


def _spool(
    gateway: Gateway,
    desk: TransferDesk,
    recorded: Recorded,
    spec: ExportSpec,
    page: int,
    out: IO[bytes],
    checker: KAnonymityChecker,
    qis: list[str],
) -> tuple[list[str], str, int]:
    """Write every record to `out`; return the ids sent, the digest and the size."""
    transfer = recorded.request.transfer
    assert transfer is not None
    subject_key = desk.keys[spec.region].pseudonym_key(transfer.agreement_id)
    digest, size, sent = hashlib.sha256(), 0, []
    for ids in _subject_pages(gateway, spec, page):
        for sid, values in _open_page(gateway, recorded, ids, recorded.request.fields):
            line = (
                json.dumps(
                    {"subject": pseudonymise("subject_id", sid, subject_key), "fields": values},
                    sort_keys=True,
                    separators=(",", ":"),
                ).encode()
                + b"\n"
            )
            out.write(line)
            digest.update(line)
            size += len(line)
            checker.add([values.get(q) for q in qis])
            sent.append(sid)
    return sent, digest.hexdigest(), size


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
    transfer = recorded.request.transfer
    assert transfer is not None
    qis = _quasi_identifiers(desk, fields, spec)
    checker = KAnonymityChecker(k)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (handed to the streamer)
        prefix="domicile-export-", suffix=".ndjson", dir=spool_dir, delete=False
    )
    try:
        with handle:
            sent, digest, size = _spool(gateway, desk, recorded, spec, page, handle, checker, qis)
        report = checker.report()
        kanon = _kanon_record(report, qis)
        if not report.is_k_anonymous:
            gateway.record([_event(recorded, "export-refused", reason="k-anonymity", **kanon)])
            verify_k_anonymous(report)
        status = desk.count(spec.region, transfer, fields, sent)
        alerts = desk.threshold_events(spec.region, transfer, status)
        if status.blocked:
            gateway.record(alerts)
            status.verify_allowed()
        done = _event(
            recorded, "export", fields=fields, subjects=len(sent), bytes=size,
            sha256=digest, k_anonymity=kanon,
        )  # fmt: skip
        index = gateway.record([*alerts, done])[-1]
    except BaseException:
        os.unlink(handle.name)
        raise
    return PreparedExport(handle.name, len(sent), size, digest, agreement, report, index, fields)
