"""The gateway pipeline: every operation on a subject goes authenticate → decide →
custody → vault → transform → record, and is served only by the subject's home region.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
from domicile.gateway.record import Recorder
from domicile.gateway.request import AccessRequest, Action, Decision, Event
from domicile.gateway.transform import Transformer
from domicile.keys.custodian import Authorization, Custodian
from domicile.keys.envelope import field_aad, open_sealed, seal
from domicile.principals.store import Principal, PrincipalStore
from domicile.residency.directory import SubjectDirectory
from domicile.residency.topology import Topology
from domicile.vault.store import SealedRecord, SubjectState, Vault

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


@dataclass(frozen=True)
class SubjectView:
    """What a read returns: the allowed fields, and the reasons for the withheld ones."""

    id: str
    home_region: str
    version: int
    fields: dict[str, JsonValue]
    withheld: dict[str, str] = field(default_factory=dict)


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


def check_subject_id(subject_id: str) -> None:
    """Refuse ids that cannot have been issued (32 lowercase hex digits)."""
    if len(subject_id) != 32 or not _UUID_HEX.issuperset(subject_id):
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
        max_field_bytes: int | None = None,
        max_batch_ids: int = 1000,
    ) -> None:
        self.topology = topology
        self.catalog = catalog
        self.regions = regions
        self.directory = directory
        self.principals = principals
        self.decider = decider
        self.transformer = transformer
        self.recorder = recorder
        self.max_field_bytes = max_field_bytes
        self.max_batch_ids = max_batch_ids

    # -- authenticate ---------------------------------------------------------------

    def authenticate(self, token: str) -> Principal:
        """Return the principal a bearer token belongs to."""
        return self.principals.authenticate(token)

    # -- decide -------------------------------------------------------------------

    def decide(self, request: AccessRequest, subject_id: str | None = None) -> Decision:
        """Decide, record a denial, and raise AccessDenied when nothing is allowed."""
        decision = self.decider.decide(request)
        if not decision.allowed:
            self.recorder.record([self.make_event(request, decision, subject_id, "denied")])
            raise AccessDenied(decision.reason)
        return decision

    @staticmethod
    def make_event(
        request: AccessRequest,
        decision: Decision,
        subject_id: str | None,
        kind: str,
        fields: Sequence[str] = (),
    ) -> Event:
        return Event(
            kind=kind,
            region=request.region,
            principal_id=request.principal.id,
            decision_id=decision.decision_id,
            subject_id=subject_id,
            fields=tuple(sorted(fields)),
            purpose=request.purpose,
            allowed=decision.allowed,
        )

    # -- register -------------------------------------------------------------------

    def register(
        self, principal: Principal, country: str, values: Mapping[str, object]
    ) -> tuple[str, str]:
        """Register one subject; return (subject id, home region)."""
        return self.register_many(principal, [(country, values)])[0]

    def register_many(
        self, principal: Principal, people: Sequence[tuple[str, Mapping[str, object]]]
    ) -> list[tuple[str, str]]:
        """Register subjects in their home regions, one transaction per store and region.

        All input is validated before anything is written; then the directory reserves
        the ids, each region's custodian makes data keys, the vault stores the sealed
        values, and the directory activates the ids. A crash in between leaves only
        reservations, which `recover` undoes.
        """
        prepared: dict[str, list[tuple[str, dict[str, JsonValue]]]] = {}
        placed: list[tuple[str, str]] = []
        for country, values in people:
            region = self.topology.home_region(country)
            normalised = self.catalog.validate(values, max_field_bytes=self.max_field_bytes)
            subject_id = uuid.uuid4().hex
            prepared.setdefault(region, []).append((subject_id, normalised))
            placed.append((subject_id, region))
        decisions: dict[str, tuple[AccessRequest, Decision]] = {}
        for region in prepared:
            request = AccessRequest(principal, Action.REGISTER, region)
            decisions[region] = (request, self.decide(request))
        self.directory.reserve(placed)
        try:
            for region, batch in prepared.items():
                self._store_new(region, batch, decisions[region][1])
        except BaseException:
            self.directory.forget([subject_id for subject_id, _ in placed])
            raise
        self.directory.activate([subject_id for subject_id, _ in placed])
        self.recorder.record(
            [
                self.make_event(*decisions[region], subject_id, "register", sorted(values))
                for region, batch in prepared.items()
                for subject_id, values in batch
            ]
        )
        return placed

    def _store_new(
        self, region: str, batch: list[tuple[str, dict[str, JsonValue]]], decision: Decision
    ) -> None:
        runtime = self.regions[region]
        auth = Authorization(decision.decision_id, Action.REGISTER)
        keys = runtime.custodian.create_data_keys([sid for sid, _ in batch], auth)
        records = [
            (subject_id, self.seal_values(region, subject_id, keys[subject_id], values))
            for subject_id, values in batch
        ]
        runtime.vault.insert_many(records, self.catalog.version)

    def seal_values(
        self, region: str, subject_id: str, key: bytes, values: Mapping[str, JsonValue]
    ) -> dict[str, bytes]:
        return {
            name: seal(key, self.catalog.encode(name, value), field_aad(subject_id, region, name))
            for name, value in values.items()
        }

    def open_values(
        self, region: str, subject_id: str, key: bytes, sealed: Mapping[str, bytes]
    ) -> dict[str, JsonValue]:
        return {
            name: self.catalog.decode(
                name, open_sealed(key, blob, field_aad(subject_id, region, name))
            )
            for name, blob in sealed.items()
        }

    # -- read -----------------------------------------------------------------------

    def _requested_fields(self, fields: Sequence[str] | None) -> frozenset[str]:
        if fields is None:
            return frozenset(self.catalog.fields)
        for name in fields:
            self.catalog.field(name)  # raises UnknownField
        return frozenset(fields)

    def _require_purpose(self, purpose: str | None) -> str:
        if not purpose:
            raise InvalidInput("a read must declare its `purpose`")
        return purpose

    def read(
        self,
        principal: Principal,
        subject_id: str,
        fields: Sequence[str] | None,
        purpose: str | None,
    ) -> SubjectView:
        """Read a subject's fields for a declared purpose, from its home region only."""
        check_subject_id(subject_id)
        names = self._requested_fields(fields)
        purpose = self._require_purpose(purpose)
        home = self.directory.lookup(subject_id).home_region
        request = AccessRequest(principal, Action.READ, home, subject_id, names, purpose)
        decision = self.decide(request, subject_id)
        return self._read_one(
            request, decision, subject_id, self._fetch(home, subject_id, decision)
        )

    def _fetch(self, region: str, subject_id: str, decision: Decision) -> SealedRecord:
        return self.regions[region].vault.fetch(subject_id, decision.allowed_fields)

    def _read_one(
        self, request: AccessRequest, decision: Decision, subject_id: str, record: SealedRecord
    ) -> SubjectView:
        values: dict[str, JsonValue] = {}
        if record.fields:
            key = self._unwrap(request.region, subject_id, decision, Action.READ)
            values = self.open_values(request.region, subject_id, key, record.fields)
        shown = self.transformer.transform(request, values)
        self.recorder.record(
            [self.make_event(request, decision, subject_id, "read", sorted(shown))]
        )
        return SubjectView(subject_id, request.region, record.version, shown, decision.withheld)

    def _unwrap(self, region: str, subject_id: str, decision: Decision, action: Action) -> bytes:
        try:
            return self.regions[region].custodian.unwrap_data_key(
                subject_id, Authorization(decision.decision_id, action)
            )
        except KeyDestroyed as exc:
            raise SubjectErased(f"subject `{subject_id}` was erased") from exc

    def batch_get(
        self,
        principal: Principal,
        subject_ids: Sequence[str],
        fields: Sequence[str] | None,
        purpose: str | None,
    ) -> list[SubjectView | DomicileError]:
        """Read many subjects, each decided on its own; failures are returned per id."""
        if len(subject_ids) > self.max_batch_ids:
            raise InvalidInput(
                f"a batch holds at most {self.max_batch_ids} ids, not {len(subject_ids)}"
            )
        names = self._requested_fields(fields)
        purpose = self._require_purpose(purpose)
        entries = self.directory.lookup_many(
            [sid for sid in subject_ids if len(sid) == 32 and _UUID_HEX.issuperset(sid)]
        )
        by_region: dict[str, list[str]] = {}
        for sid, entry in entries.items():
            if entry.state == "active":
                by_region.setdefault(entry.home_region, []).append(sid)
        records: dict[str, SealedRecord | DomicileError] = {}
        for region, ids in by_region.items():
            records.update(self.regions[region].vault.fetch_many(ids, names))
        return [
            self._batch_item(principal, sid, entries, records, names, purpose)
            for sid in subject_ids
        ]

    def _batch_item(
        self,
        principal: Principal,
        subject_id: str,
        entries: Mapping[str, object],
        records: Mapping[str, SealedRecord | DomicileError],
        names: frozenset[str],
        purpose: str,
    ) -> SubjectView | DomicileError:
        found = records.get(subject_id)
        if found is None:
            return (
                SubjectErased(f"subject `{subject_id}` was erased")
                if subject_id in entries
                else SubjectNotFound(f"no subject `{subject_id[:64]}`")
            )
        if isinstance(found, DomicileError):
            return found
        request = AccessRequest(principal, Action.READ, found.region, subject_id, names, purpose)
        try:
            decision = self.decide(request, subject_id)
            allowed = {k: v for k, v in found.fields.items() if k in decision.allowed_fields}
            trimmed = SealedRecord(**{**found.__dict__, "fields": allowed})
            return self._read_one(request, decision, subject_id, trimmed)
        except (AccessDenied, SubjectErased) as exc:
            return exc

    # -- update, export, erase ------------------------------------------------------------

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
        names = frozenset(values)
        request = AccessRequest(principal, Action.WRITE, home, subject_id, names)
        decision = self.decide(request, subject_id)
        key = self._unwrap(home, subject_id, decision, Action.WRITE)
        sealed = self.seal_values(home, subject_id, key, normalised)
        version = self.regions[home].vault.update(
            subject_id, sealed, remove=remove, expected_version=expected_version
        )
        self.recorder.record(
            [self.make_event(request, decision, subject_id, "update", sorted(names))]
        )
        return version

    def export(self, principal: Principal, subject_id: str, purpose: str | None) -> SubjectExport:
        """Return everything held about a subject (the right of access)."""
        check_subject_id(subject_id)
        purpose = self._require_purpose(purpose)
        home = self.directory.lookup(subject_id).home_region
        names = frozenset(self.catalog.fields)
        request = AccessRequest(principal, Action.EXPORT, home, subject_id, names, purpose)
        decision = self.decide(request, subject_id)
        if decision.allowed_fields != names:
            # An export is all or nothing: a partial one would mislead the person.
            raise AccessDenied("export needs every field of the catalog to be allowed")
        record = self.regions[home].vault.fetch(subject_id)
        key = self._unwrap(home, subject_id, decision, Action.EXPORT)
        values = self.transformer.transform(
            request, self.open_values(home, subject_id, key, record.fields)
        )
        self.recorder.record(
            [self.make_event(request, decision, subject_id, "export", sorted(values))]
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
        decision = self.decide(request, subject_id)
        runtime = self.regions[home]
        # Shred first: once the key is gone every copy is unreadable, whatever fails next.
        runtime.custodian.destroy_data_key(subject_id, Authorization(decision.decision_id, "erase"))
        runtime.vault.tombstone(subject_id, SubjectState.ERASED)
        self.directory.mark_erased(subject_id)
        self.recorder.record([self.make_event(request, decision, subject_id, "erase")])
