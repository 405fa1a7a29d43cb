"""The gateway pipeline: every operation on a subject goes authenticate → decide →
record → custody → vault → transform, and is served only by the subject's home region.

The decision is made durable in the region's ledger before any key is unwrapped or
any value leaves, and the custodian is shown the decision's ledger index: a request
that cannot be recorded is not served.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio.to_thread

from domicile.catalog.catalog import Catalog, JsonValue
from domicile.errors import (
    AccessDenied,
    DomicileError,
    InvalidInput,
    KeyDestroyed,
    SubjectErased,
    SubjectNotFound,
)
from domicile.gateway.decide import Decider
from domicile.gateway.decision_log import decision_event, templated_decision_events
from domicile.gateway.record import Recorder
from domicile.gateway.request import AccessRequest, Action, Decision, Event, Transfer
from domicile.gateway.transform import Transformer
from domicile.grants.store import Grant, GrantStore, grant_state
from domicile.keys.custodian import Authorization, Custodian
from domicile.keys.envelope import field_aad, open_fields, seal
from domicile.policy.engine import new_decision_ids
from domicile.policy.model import NO_GRANT
from domicile.principals.store import Principal, PrincipalStore
from domicile.residency.directory import SubjectDirectory
from domicile.residency.heartbeat import ReservationHeartbeat
from domicile.residency.topology import Topology
from domicile.settings import DEFAULT_RECOVERY_IDLE
from domicile.vault.store import SealedRecord, SubjectState, Vault

if TYPE_CHECKING:
    from domicile.gateway.transfer import TransferDesk

_UUID_HEX = frozenset("0123456789abcdef")


@dataclass
class RegionRuntime:
    """What the gateway holds of one region: its vault and its custodian."""

    name: str
    vault: Vault
    custodian: Custodian

    def close(self) -> None:
        """Close the vault and the custodian."""
        self.vault.close()
        self.custodian.close()


class SubjectView(NamedTuple):
    """What a read returns: the allowed fields, and the reasons for the withheld ones.

    A named tuple: as immutable as a frozen dataclass, and made for every record of a
    batch read at a third of the cost."""

    id: str
    home_region: str
    version: int
    fields: dict[str, JsonValue]
    withheld: dict[str, str]


@dataclass(frozen=True)
class SubjectExport:
    """Everything held about one subject."""

    id: str
    home_region: str
    version: int
    catalog_version: str
    created_at: str
    updated_at: str
    fields: dict[str, JsonValue]


@dataclass(frozen=True)
class ReadContext:
    """What the caller says about a read beyond its fields and purpose."""

    source_country: str | None = None
    break_glass: bool = False


@dataclass(frozen=True)
class Recorded:
    """A decision that is durable in the ledger, at `index`."""

    request: AccessRequest
    decision: Decision
    index: int

    def authorization(self) -> Authorization:
        """What the custodian is shown for this decision."""
        return Authorization(self.decision.decision_id, self.request.action, self.index)


def is_subject_id(subject_id: str) -> bool:
    """True for ids that can have been issued (32 lowercase hex digits)."""
    return len(subject_id) == 32 and _UUID_HEX.issuperset(subject_id)


def check_subject_id(subject_id: str) -> None:
    """Refuse ids that cannot have been issued."""
    if not is_subject_id(subject_id):
        raise SubjectNotFound(f"no subject `{subject_id[:64]}`")


class Gateway:
    """Serves subject operations through the pipeline; the only way to reach a vault."""

    def __init__(
        self,
        *,
        topology: Topology,
        catalog: Catalog,
        regions: Mapping[str, RegionRuntime],
        directory: SubjectDirectory,
        principals: PrincipalStore,
        decider: Decider,
        transformer: Transformer,
        recorder: Recorder,
        grants: GrantStore | None = None,
        max_field_bytes: int | None = None,
        max_batch_ids: int = 1000,
        transfers: TransferDesk | None = None,
        recovery_idle: float = DEFAULT_RECOVERY_IDLE,
    ) -> None:
        self.topology = topology
        self.catalog = catalog
        self.regions = regions
        self.directory = directory
        self.principals = principals
        self.decider = decider
        self.transformer = transformer
        self.recorder = recorder
        self.grants = grants
        self.max_field_bytes = max_field_bytes
        self.max_batch_ids = max_batch_ids
        self.transfers = transfers
        self.recovery_idle = recovery_idle
        """Seconds after which recovery (any process's, on the same directory) undoes an
        idle reservation: `Settings.recovery_idle`; registrations beat well within it."""
        self.heartbeat = ReservationHeartbeat.for_window(directory, recovery_idle)

    # -- authenticate, decide, record ----------------------------------------------------

    def authenticate(self, token: str) -> Principal:
        """Return the principal a bearer token belongs to."""
        return self.principals.authenticate(token)

    def subject_ref(self, region: str, subject_id: str) -> str:
        """The subject's keyed reference in `region`'s ledger."""
        return self.regions[region].custodian.subject_ref(subject_id)

    def record_decisions(
        self, items: Sequence[tuple[AccessRequest, str | None]], decisions: Sequence[Decision]
    ) -> list[Recorded]:
        """Record decisions (allows and denials) in one batch; return them with their indices."""
        events = self._events_with_alerts(items, decisions)
        indices = self.recorder.record(events)
        return self._recorded(items, decisions, indices)

    async def record_decisions_async(
        self, items: Sequence[tuple[AccessRequest, str | None]], decisions: Sequence[Decision]
    ) -> list[Recorded]:
        """`record_decisions` for a caller on an event loop, which it does not block."""
        events = self._events_with_alerts(items, decisions)
        indices = await self.recorder.record_async(events)
        return self._recorded(items, decisions, indices)

    @staticmethod
    def _recorded(
        items: Sequence[tuple[AccessRequest, str | None]],
        decisions: Sequence[Decision],
        indices: Sequence[int],
    ) -> list[Recorded]:
        # Alerts follow the decisions in `indices`.
        return [
            Recorded(request, decision, index)
            for (request, _), decision, index in zip(
                items, decisions, indices[: len(decisions)], strict=True
            )
        ]

    def _events_with_alerts(
        self, items: Sequence[tuple[AccessRequest, str | None]], decisions: Sequence[Decision]
    ) -> list[Event]:
        """The decision events, then an alert per break-glass allow (in the same batch)."""
        events = self._decision_events(items, decisions)
        # Break glass raises its alert in the same durable batch as the decision.
        alerts = [
            Event(
                "alert",
                request.region,
                {
                    "alert": "break-glass",
                    "decision_id": decision.decision_id,
                    "principal_id": request.principal.id,
                    "review": "pending",
                },
            )
            for (request, _), decision in zip(items, decisions, strict=True)
            if decision.allowed and decision.break_glass
        ]
        return events + alerts

    def _decision_events(
        self, items: Sequence[tuple[AccessRequest, str | None]], decisions: Sequence[Decision]
    ) -> list[Event]:
        """One decision event per item; items that differ only in decision id and subject
        (a batch read) share one template, encoded once by the recorder."""
        if len(items) < 2:
            return [
                decision_event(r, d, self.subject_ref(r.region, sid) if sid else None)
                for (r, sid), d in zip(items, decisions, strict=True)
            ]
        wanted: dict[str, list[str]] = {}
        for request, sid in items:
            if sid:
                wanted.setdefault(request.region, []).append(sid)
        refs = {
            (region, sid): ref
            for region, ids in wanted.items()
            for sid, ref in self.regions[region].custodian.subject_refs(ids).items()
        }
        return templated_decision_events(
            [(r, refs[r.region, sid] if sid else None) for r, sid in items], decisions
        )

    def decide_all(self, items: Sequence[tuple[AccessRequest, str | None]]) -> list[Recorded]:
        """Decide requests and record every decision; callers raise or report denials."""
        return self.record_decisions(items, [self.decider.decide(r) for r, _ in items])

    def decide(self, request: AccessRequest, subject_id: str | None = None) -> Recorded:
        """Decide and record one request; AccessDenied unless allowed."""
        recorded = self.decide_all([(request, subject_id)])[0]
        if not recorded.decision.allowed:
            raise AccessDenied(recorded.decision.reason)
        return recorded

    def record(self, events: Sequence[Event]) -> list[int]:
        """Record events other than decisions (erasure, relocation, …)."""
        return self.recorder.record(events)

    # -- register -----------------------------------------------------------------------

    def register(
        self, principal: Principal, country: str, values: Mapping[str, object]
    ) -> tuple[str, str]:
        """Register one subject; return (subject id, home region)."""
        return self.register_many(principal, [(country, values)])[0]

    def register_many(
        self, principal: Principal, people: Sequence[tuple[str, Mapping[str, object]]]
    ) -> list[tuple[str, str]]:
        """Register subjects in their home regions, one transaction per store and region.

        All input is validated and every registration decided before anything is
        written. Then the directory reserves the ids, the custodians make data keys,
        the decisions are recorded, the vaults store the sealed values, and the
        directory activates the ids. A failure undoes what was written; a crash in
        between leaves only reservations, which `recover` undoes. While the keys,
        decisions and vault rows are written, the heartbeat keeps the reservations
        fresh, so recovery does not take a slow registration for a crashed one.
        """
        prepared: list[tuple[str, str, dict[str, JsonValue]]] = []
        for country, values in people:
            region = self.topology.home_region(country)
            normalised = self.catalog.validate(values, max_field_bytes=self.max_field_bytes)
            prepared.append((uuid.uuid4().hex, region, normalised))
        requests = [
            AccessRequest(principal, Action.REGISTER, region, sid, frozenset(values))
            for sid, region, values in prepared
        ]
        decisions = [self.decider.decide(r) for r in requests]
        denied = next((d for d in decisions if not d.allowed), None)
        if denied is not None:
            self.record_decisions([(r, None) for r in requests], decisions)
            raise AccessDenied(denied.reason)
        placed = [(sid, region) for sid, region, _ in prepared]
        self.directory.reserve(placed)
        ids = [sid for sid, _ in placed]
        try:
            with self.heartbeat.keep(ids):  # stopped before the activation or the undo
                self._store_new(prepared, requests, decisions)
            self.directory.activate(ids)
        except BaseException:
            self._undo_new(placed)  # a crash instead leaves the reservations to `recover`
            raise
        return placed

    def _undo_new(self, placed: Sequence[tuple[str, str]]) -> None:
        """Remove what a failed registration wrote: keys, vault rows, reservations."""
        by_region: dict[str, list[str]] = {}
        for sid, region in placed:
            by_region.setdefault(region, []).append(sid)
        auth = Authorization("registration", Action.REGISTER)
        for region, ids in by_region.items():
            self.regions[region].custodian.destroy_data_keys(ids, auth)
            self.regions[region].vault.discard_many(ids)
        self.directory.forget([sid for sid, _ in placed])

    def _store_new(
        self,
        prepared: list[tuple[str, str, dict[str, JsonValue]]],
        requests: list[AccessRequest],
        decisions: list[Decision],
    ) -> None:
        by_region: dict[str, list[tuple[str, dict[str, JsonValue]]]] = {}
        for sid, region, values in prepared:
            by_region.setdefault(region, []).append((sid, values))
        keys: dict[str, bytes] = {}
        for region, batch in by_region.items():
            auth = Authorization("registration", Action.REGISTER)
            keys.update(
                self.regions[region].custodian.create_data_keys([s for s, _ in batch], auth)
            )
        # The keys exist now, so each decision carries the subject's keyed reference.
        self.record_decisions([(r, r.subject_id) for r in requests], decisions)
        for region, batch in by_region.items():
            records = [(sid, self.seal_values(region, sid, keys[sid], v)) for sid, v in batch]
            self.regions[region].vault.insert_many(records, self.catalog.version)

    # -- sealing ------------------------------------------------------------------------

    def seal_values(
        self, region: str, subject_id: str, key: bytes, values: Mapping[str, JsonValue]
    ) -> dict[str, bytes]:
        """Encrypt values for one subject, bound to subject, region and field."""
        return {
            name: seal(key, self.catalog.encode(name, value), field_aad(subject_id, region, name))
            for name, value in values.items()
        }

    def open_values(
        self, region: str, subject_id: str, key: bytes, sealed: Mapping[str, bytes]
    ) -> dict[str, JsonValue]:
        """Decrypt one subject's sealed values."""
        opened = open_fields(key, subject_id, region, sealed)  # one cipher per subject
        return {name: self.catalog.decode(name, data) for name, data in opened.items()}

    def unwrap(self, recorded: Recorded, subject_id: str) -> bytes:
        """The subject's data key, against a recorded allow decision."""
        try:
            return self.regions[recorded.request.region].custodian.unwrap_data_key(
                subject_id, recorded.authorization()
            )
        except KeyDestroyed as exc:
            raise SubjectErased(f"subject `{subject_id}` was erased") from exc

    # -- read ---------------------------------------------------------------------------

    def _requested_fields(self, fields: Sequence[str] | None) -> frozenset[str]:
        if fields is None:
            return frozenset(self.catalog.fields)
        for name in fields:
            self.catalog.field(name)  # raises UnknownField
        return frozenset(fields)

    @staticmethod
    def _require_purpose(purpose: str | None) -> str:
        if not purpose:
            raise InvalidInput("a read must declare its `purpose`")
        return purpose

    def _read_request(
        self,
        principal: Principal,
        home: str,
        subject_id: str,
        names: frozenset[str],
        purpose: str,
        context: ReadContext,
    ) -> AccessRequest:
        grant = (
            grant_state(self.grants.relevant(principal.id, home, subject_id, purpose))
            if self.grants is not None
            else NO_GRANT
        )
        return AccessRequest(
            principal, Action.READ, home, subject_id, names, purpose,
            source_country=context.source_country, break_glass=context.break_glass, grant=grant,
            transfer=self._transfer(principal, home, names, purpose, context),
        )  # fmt: skip

    def _transfer(
        self,
        principal: Principal,
        region: str,
        names: frozenset[str],
        purpose: str,
        context: ReadContext,
    ) -> Transfer | None:
        """The transfer terms of a read that leaves `region`; None for one in region."""
        desk = self.transfers
        if desk is None or not desk.is_transfer(principal, region, context.source_country):
            return None
        return desk.for_read(principal, names, purpose, context.source_country)

    def read(
        self,
        principal: Principal,
        subject_id: str,
        fields: Sequence[str] | None,
        purpose: str | None,
        context: ReadContext = ReadContext(),
    ) -> SubjectView:
        """Read a subject's fields for a declared purpose, from its home region only."""
        request = self._prepare_read(principal, subject_id, fields, purpose, context)
        return self._decide_and_serve(request)

    async def read_async(
        self,
        principal: Principal,
        subject_id: str,
        fields: Sequence[str] | None,
        purpose: str | None,
        context: ReadContext = ReadContext(),
    ) -> SubjectView:
        """`read` for a caller on an event loop: the same steps, and the two durable
        writes (the decision, the custodian's unwrap record) are awaited off the loop,
        so no thread waits on them. A read that is a transfer takes the thread path."""
        request = self._prepare_read(principal, subject_id, fields, purpose, context)
        if request.transfer is not None:
            return await anyio.to_thread.run_sync(self._decide_and_serve, request)
        decision = self.decider.decide(request)
        recorded = (await self.record_decisions_async([(request, subject_id)], [decision]))[0]
        if not decision.allowed:
            raise AccessDenied(decision.reason)
        record = self.regions[request.region].vault.fetch(subject_id, decision.allowed_fields)
        values: dict[str, JsonValue] = {}
        if record.fields:
            custodian = self.regions[request.region].custodian
            key = (
                await custodian.unwrap_data_keys_async([(subject_id, recorded.authorization())])
            )[subject_id]
            if isinstance(key, KeyDestroyed):
                raise SubjectErased(f"subject `{subject_id}` was erased") from key
            values = self.open_values(record.region, subject_id, key, record.fields)
        return self._present(recorded, record, values)

    def _prepare_read(
        self,
        principal: Principal,
        subject_id: str,
        fields: Sequence[str] | None,
        purpose: str | None,
        context: ReadContext,
    ) -> AccessRequest:
        """Check the input and find the home region: the request to decide."""
        check_subject_id(subject_id)
        names = self._requested_fields(fields)
        purpose = self._require_purpose(purpose)
        home = self.directory.lookup(subject_id).home_region
        return self._read_request(principal, home, subject_id, names, purpose, context)

    def _decide_and_serve(self, request: AccessRequest) -> SubjectView:
        assert request.subject_id is not None
        recorded = self.decide(request, request.subject_id)
        if request.transfer is not None and self.transfers is not None:
            self.transfers.authorise(self, [recorded])  # thresholds, then the transfer entry
        record = self.regions[request.region].vault.fetch(
            request.subject_id, recorded.decision.allowed_fields
        )
        return self._view(recorded, record)

    def _view(self, recorded: Recorded, record: SealedRecord) -> SubjectView:
        values: dict[str, JsonValue] = {}
        if record.fields:
            key = self.unwrap(recorded, record.subject_id)
            values = self.open_values(record.region, record.subject_id, key, record.fields)
        return self._present(recorded, record, values)

    def _present(
        self, recorded: Recorded, record: SealedRecord, values: dict[str, JsonValue]
    ) -> SubjectView:
        """The opened values as the principal may see them (transformed when they leave)."""
        shown = self.transformer.transform(recorded.request, values)
        return SubjectView(
            record.subject_id, record.region, record.version, shown, recorded.decision.withheld
        )

    def batch_get(
        self,
        principal: Principal,
        subject_ids: Sequence[str],
        fields: Sequence[str] | None,
        purpose: str | None,
        context: ReadContext = ReadContext(),
    ) -> list[SubjectView | DomicileError]:
        """Read many subjects, each decided and recorded on its own; failures come per id.

        Records whose decision-relevant attributes are equal (same region, same grant
        state) share one policy evaluation, but each still gets its own decision id,
        ledger entry and unwrap record.
        """
        if len(subject_ids) > self.max_batch_ids:
            raise InvalidInput(
                f"a batch holds at most {self.max_batch_ids} ids, not {len(subject_ids)}"
            )
        names = self._requested_fields(fields)
        purpose = self._require_purpose(purpose)
        entries = self.directory.lookup_many([s for s in subject_ids if is_subject_id(s)])
        requests = self._batch_requests(principal, entries, subject_ids, names, purpose, context)
        decisions = self._batch_decisions(requests)
        recorded = {
            r.request.subject_id: r
            for r in self.record_decisions([(r, r.subject_id) for r in requests], decisions)
        }
        if self.transfers is not None:
            self.transfers.authorise(self, [r for r in recorded.values() if r.request.transfer])
        records = self._fetch_allowed(recorded)
        views = self._open_batch(recorded, records)
        out: list[SubjectView | DomicileError] = []
        for sid in subject_ids:
            out.append(self._batch_item(sid, entries, recorded, views))
        return out

    def _batch_requests(
        self,
        principal: Principal,
        entries: Mapping[str, Any],
        subject_ids: Sequence[str],
        names: frozenset[str],
        purpose: str,
        context: ReadContext,
    ) -> list[AccessRequest]:
        grants_by_region: dict[str, list[Grant]] = {}
        templates: dict[str, AccessRequest] = {}  # per region; each record copies it
        requests: list[AccessRequest] = []
        now = datetime.now(UTC)
        for sid in dict.fromkeys(subject_ids):
            entry = entries.get(sid)
            if entry is None or entry.state != "active":
                continue
            region = entry.home_region
            template = templates.get(region)
            if template is None:
                grants_by_region[region] = (
                    self.grants.relevant(principal.id, region, None, purpose, any_subject=True)
                    if self.grants is not None
                    else []
                )
                template = templates[region] = AccessRequest(
                    principal,
                    Action.READ,
                    region,
                    None,
                    names,
                    purpose,
                    source_country=context.source_country,
                    break_glass=context.break_glass,
                    transfer=self._transfer(principal, region, names, purpose, context),
                )
            grants = grants_by_region[region]
            grant = grant_state([g for g in grants if g.covers(sid)], now) if grants else NO_GRANT
            requests.append(template.for_subject(sid, grant))
        return requests

    def _batch_decisions(self, requests: Sequence[AccessRequest]) -> list[Decision]:
        shared: dict[tuple[str, tuple[object, ...], object], Decision] = {}
        out: list[Decision] = []
        ids = iter(new_decision_ids(len(requests)))
        for request in requests:
            key = (request.region, request.grant.key(), request.transfer)
            decision = shared.get(key)
            if decision is None:
                decision = shared[key] = self.decider.decide(request)
                out.append(decision)
            else:
                out.append(decision.with_id(next(ids)))
        return out

    def _fetch_allowed(
        self, recorded: Mapping[str | None, Recorded]
    ) -> dict[str, SealedRecord | DomicileError]:
        by_region: dict[str, list[str]] = {}
        for sid, rec in recorded.items():
            if sid is not None and rec.decision.allowed:
                by_region.setdefault(rec.request.region, []).append(sid)
        records: dict[str, SealedRecord | DomicileError] = {}
        for region, ids in by_region.items():
            wanted = frozenset().union(*(recorded[sid].decision.allowed_fields for sid in ids))
            records.update(self.regions[region].vault.fetch_many(ids, wanted))
        return records

    def _open_batch(
        self,
        recorded: Mapping[str | None, Recorded],
        records: Mapping[str, SealedRecord | DomicileError],
    ) -> dict[str, SubjectView | DomicileError]:
        """Unwrap each region's keys in one custodian call, then open the values."""
        by_region: dict[str, list[tuple[str, Authorization]]] = {}
        for sid, found in records.items():
            if isinstance(found, SealedRecord) and found.fields:
                by_region.setdefault(found.region, []).append((sid, recorded[sid].authorization()))
        keys: dict[str, bytes | KeyDestroyed] = {}
        for region, wanted in by_region.items():
            keys.update(self.regions[region].custodian.unwrap_data_keys(wanted))
        views: dict[str, SubjectView | DomicileError] = {}
        for sid, found in records.items():
            if not isinstance(found, SealedRecord):
                views[sid] = found
                continue
            key = keys.get(sid)
            if isinstance(key, KeyDestroyed):
                views[sid] = SubjectErased(f"subject `{sid}` was erased")
                continue
            rec = recorded[sid]
            allowed = found.fields  # fetched for the union of the batch's allowed fields
            if not allowed.keys() <= rec.decision.allowed_fields:
                allowed = {k: v for k, v in allowed.items() if k in rec.decision.allowed_fields}
            values = self.open_values(found.region, sid, key, allowed) if key else {}
            shown = self.transformer.transform(rec.request, values)
            views[sid] = SubjectView(sid, found.region, found.version, shown,
                                     rec.decision.withheld)  # fmt: skip
        return views

    def _batch_item(
        self,
        sid: str,
        entries: Mapping[str, Any],
        recorded: Mapping[str | None, Recorded],
        views: Mapping[str, SubjectView | DomicileError],
    ) -> SubjectView | DomicileError:
        if sid not in entries:
            return SubjectNotFound(f"no subject `{sid[:64]}`")
        rec = recorded.get(sid)
        if rec is None:
            return SubjectErased(f"subject `{sid}` was erased")
        if not rec.decision.allowed:
            return AccessDenied(rec.decision.reason)
        return views[sid]

    # -- update, export, erase ----------------------------------------------------------

    def update(
        self,
        principal: Principal,
        subject_id: str,
        values: Mapping[str, object | None],
        *,
        expected_version: int | None = None,
    ) -> int:
        """Set fields (a None value removes the field); return the new version."""
        check_subject_id(subject_id)
        if not values:
            raise InvalidInput("an update must name at least one field")
        remove = sorted(name for name, value in values.items() if value is None)
        for name in remove:
            self.catalog.field(name)
        normalised = self.catalog.validate(
            {k: v for k, v in values.items() if v is not None}, max_field_bytes=self.max_field_bytes
        )
        home = self.directory.lookup(subject_id).home_region
        request = AccessRequest(principal, Action.WRITE, home, subject_id, frozenset(values))
        recorded = self.decide(request, subject_id)
        key = self.unwrap(recorded, subject_id)
        sealed = self.seal_values(home, subject_id, key, normalised)
        return self.regions[home].vault.update(
            subject_id, sealed, remove=remove, expected_version=expected_version
        )

    def export(self, principal: Principal, subject_id: str, purpose: str | None) -> SubjectExport:
        """Return everything held about a subject (the right of access)."""
        check_subject_id(subject_id)
        purpose = self._require_purpose(purpose)
        home = self.directory.lookup(subject_id).home_region
        names = frozenset(self.catalog.fields)
        request = AccessRequest(principal, Action.EXPORT, home, subject_id, names, purpose)
        recorded = self.decide(request, subject_id)
        if recorded.decision.allowed_fields != names:
            # An export is all or nothing: a partial one would mislead the person.
            raise AccessDenied("export needs every field of the catalog to be allowed")
        record = self.regions[home].vault.fetch(subject_id)
        key = self.unwrap(recorded, subject_id)
        values = self.transformer.transform(
            request, self.open_values(home, subject_id, key, record.fields)
        )
        return SubjectExport(
            subject_id,
            home,
            record.version,
            record.catalog_version,
            record.created_at,
            record.updated_at,
            values,
        )

    def erase(self, principal: Principal, subject_id: str) -> None:
        """Erase a subject by shredding its data key, then tombstoning vault and directory."""
        check_subject_id(subject_id)
        home = self.directory.lookup(subject_id).home_region
        request = AccessRequest(principal, Action.ERASE, home, subject_id)
        recorded = self.decide(request, subject_id)
        ref = self.subject_ref(home, subject_id)  # before the material is shredded
        runtime = self.regions[home]
        # Shred first: once the key is gone every copy is unreadable, whatever fails next.
        runtime.custodian.destroy_data_key(subject_id, recorded.authorization())
        runtime.vault.tombstone(subject_id, SubjectState.ERASED)
        self.directory.mark_erased(subject_id)
        self.record(
            [
                Event(
                    "erasure",
                    home,
                    {"subject_ref": ref, "decision_id": recorded.decision.decision_id},
                )
            ]
        )
