"""The destination registry and the versioned agreement store, over the Database protocol.

Agreements are never updated in place: every change (an amendment, a termination) is a
new version row, so the agreement in force at any past moment can be read back and its
`version_record()` matched against the ledger. Times are stored as ISO 8601 in UTC.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from domicile.catalog.catalog import Catalog
from domicile.errors import AccessDenied, Conflict, NotFound, VersionMismatch
from domicile.storage.database import Database, Tx
from domicile.storage.migrations import migrate
from domicile.transfers.model import (
    Agreement,
    AgreementDraft,
    Destination,
    TrustStatus,
    _shown,
    verify_country,
    verify_draft,
    verify_entity,
)

__all__ = ["AgreementStore", "DestinationRegistry"]

_COMPONENT = "transfers"
_PACKAGE = "domicile.transfers"
_DEST_COLUMNS = "entity, country, status, note, updated_at, updated_by"
_AGREEMENT_COLUMNS = (
    "id, version, destination_entity, destination_country, purpose, legal_basis,"
    " tia_reference, fields, valid_from, valid_until, max_subjects_per_request,"
    " max_subjects_per_year, terminated, catalog_version, catalog_digest, created_at,"
    " created_by"
)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _destination(row: Sequence[Any]) -> Destination:
    return Destination(
        entity=str(row[0]),
        country=str(row[1]),
        status=TrustStatus(str(row[2])),
        note=str(row[3]),
        updated_at=datetime.fromisoformat(str(row[4])),
        updated_by=str(row[5]),
    )


class DestinationRegistry:
    """Recipient entities, their country and whether they may receive data."""

    def __init__(self, db: Database) -> None:
        """Use `db`, migrating the transfers schema if needed."""
        self.db = db
        migrate(db, _COMPONENT, _PACKAGE)

    def register(
        self, entity: str, country: str, status: TrustStatus, *, by: str, note: str = ""
    ) -> Destination:
        """Add a recipient, or change its country, status or note."""
        verify_entity(entity)
        verify_country(country)
        status = TrustStatus(status)
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM transfer_destinations WHERE entity = ?", (entity,))
            tx.execute(
                f"INSERT INTO transfer_destinations ({_DEST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (entity, country, status.value, note[:1024], _iso(_now()), by),
            )
        return self.get(entity)

    def set_status(
        self, entity: str, status: TrustStatus, *, by: str, note: str = ""
    ) -> Destination:
        """Change a known recipient's trust status (e.g. suspend it at once)."""
        current = self.get(entity)
        return self.register(entity, current.country, status, by=by, note=note or current.note)

    def get(self, entity: str) -> Destination:
        """Return a recipient; NotFound if it is not registered."""
        rows = self.db.query(
            f"SELECT {_DEST_COLUMNS} FROM transfer_destinations WHERE entity = ?", (entity,)
        )
        if not rows:
            raise NotFound(f"no destination `{_shown(entity)}`")
        return _destination(rows[0])

    def all(self) -> list[Destination]:
        """Every recipient, by name."""
        rows = self.db.query(f"SELECT {_DEST_COLUMNS} FROM transfer_destinations ORDER BY entity")
        return [_destination(row) for row in rows]

    def verify_trusted(self, entity: str, country: str) -> Destination:
        """Return the recipient if it is trusted and in `country`; else AccessDenied."""
        rows = self.db.query(
            f"SELECT {_DEST_COLUMNS} FROM transfer_destinations WHERE entity = ?", (entity,)
        )
        if not rows:
            raise AccessDenied(f"destination `{_shown(entity)}` is not in the registry")
        destination = _destination(rows[0])
        if destination.status is not TrustStatus.TRUSTED:
            raise AccessDenied(f"destination `{destination.entity}` is {destination.status.value}")
        if destination.country != country:
            raise AccessDenied(
                f"destination `{destination.entity}` is registered in "
                f"`{destination.country}`, not `{_shown(country)}`"
            )
        return destination


def _agreement(row: Sequence[Any]) -> Agreement:
    return Agreement(
        id=str(row[0]), version=int(row[1]), destination_entity=str(row[2]),
        destination_country=str(row[3]), purpose=str(row[4]), legal_basis=str(row[5]),
        tia_reference=str(row[6]), fields=json.loads(str(row[7])),
        valid_from=datetime.fromisoformat(str(row[8])),
        valid_until=datetime.fromisoformat(str(row[9])),
        max_subjects_per_request=None if row[10] is None else int(row[10]),
        max_subjects_per_year=None if row[11] is None else int(row[11]),
        terminated=bool(row[12]), catalog_version=str(row[13]), catalog_digest=str(row[14]),
        created_at=datetime.fromisoformat(str(row[15])), created_by=str(row[16]),
    )  # fmt: skip


def _agreement_row(a: Agreement) -> tuple[object, ...]:
    return (
        a.id, a.version, a.destination_entity, a.destination_country, a.purpose,
        a.legal_basis, a.tia_reference, json.dumps(dict(a.fields), sort_keys=True),
        _iso(a.valid_from), _iso(a.valid_until), a.max_subjects_per_request,
        a.max_subjects_per_year, int(a.terminated), a.catalog_version, a.catalog_digest,
        _iso(a.created_at), a.created_by,
    )  # fmt: skip


class AgreementStore:
    """Versioned transfer agreements, and the lookup that decides which one covers a flow."""

    def __init__(self, db: Database, destinations: DestinationRegistry) -> None:
        """Use `db` and check recipients against `destinations`."""
        self.db = db
        self.destinations = destinations
        migrate(db, _COMPONENT, _PACKAGE)

    def _versions(self, tx: Tx, agreement_id: str) -> list[Agreement]:
        rows = tx.execute(
            f"SELECT {_AGREEMENT_COLUMNS} FROM transfer_agreements WHERE id = ? ORDER BY version",
            (agreement_id,),
        ).fetchall()
        return [_agreement(row) for row in rows]

    def _insert(self, tx: Tx, agreement: Agreement) -> None:
        placeholders = ", ".join("?" * 17)
        tx.execute(
            f"INSERT INTO transfer_agreements ({_AGREEMENT_COLUMNS}) VALUES ({placeholders})",
            _agreement_row(agreement),
        )

    def _build(
        self, draft: AgreementDraft, catalog: Catalog, version: int, by: str, at: datetime
    ) -> Agreement:
        fields = verify_draft(draft, catalog)
        return Agreement(
            id=draft.id, version=version, destination_entity=draft.destination_entity,
            destination_country=draft.destination_country, purpose=draft.purpose.strip(),
            legal_basis=draft.legal_basis.strip(), tia_reference=draft.tia_reference.strip(),
            fields=fields, valid_from=draft.valid_from.astimezone(UTC),
            valid_until=draft.valid_until.astimezone(UTC),
            max_subjects_per_request=draft.max_subjects_per_request,
            max_subjects_per_year=draft.max_subjects_per_year, terminated=False,
            catalog_version=catalog.version, catalog_digest=catalog.digest(),
            created_at=at.astimezone(UTC), created_by=by,
        )  # fmt: skip

    def create(
        self, draft: AgreementDraft, catalog: Catalog, *, by: str, at: datetime | None = None
    ) -> Agreement:
        """Store version 1 of a new agreement; Conflict if the id is taken."""
        agreement = self._build(draft, catalog, 1, by, at or _now())
        with self.db.transaction() as tx:
            if self._versions(tx, draft.id):
                raise Conflict(f"agreement `{draft.id}` exists; amend it instead")
            self._insert(tx, agreement)
        return agreement

    def amend(
        self,
        draft: AgreementDraft,
        catalog: Catalog,
        *,
        by: str,
        expected_version: int,
        at: datetime | None = None,
    ) -> Agreement:
        """Store the next version of agreement `draft.id`, replacing every term."""
        with self.db.transaction() as tx:
            current = self._current(tx, draft.id, expected_version)
            agreement = self._build(draft, catalog, current.version + 1, by, at or _now())
            self._insert(tx, agreement)
        return agreement

    def terminate(
        self, agreement_id: str, *, by: str, expected_version: int, at: datetime | None = None
    ) -> Agreement:
        """Store a final version that ends the agreement at once."""
        with self.db.transaction() as tx:
            current = self._current(tx, agreement_id, expected_version)
            agreement = replace(
                current, version=current.version + 1, terminated=True,
                created_at=(at or _now()).astimezone(UTC), created_by=by,
            )  # fmt: skip
            self._insert(tx, agreement)
        return agreement

    def _current(self, tx: Tx, agreement_id: str, expected_version: int) -> Agreement:
        versions = self._versions(tx, agreement_id)
        if not versions:
            raise NotFound(f"no agreement `{_shown(agreement_id)}`")
        current = versions[-1]
        if current.version != expected_version:
            raise VersionMismatch(
                f"agreement `{agreement_id}` is at version {current.version}, "
                f"not {expected_version}"
            )
        if current.terminated:
            raise Conflict(f"agreement `{agreement_id}` is terminated")
        return current

    def get(self, agreement_id: str, version: int | None = None) -> Agreement:
        """Return one version of an agreement (the newest by default)."""
        with self.db.transaction(write=False) as tx:
            versions = self._versions(tx, agreement_id)
        chosen = [a for a in versions if version is None or a.version == version]
        if not chosen:
            raise NotFound(f"no agreement `{_shown(agreement_id)}` at that version")
        return chosen[-1]

    def versions(self, agreement_id: str) -> list[Agreement]:
        """Every version of an agreement, oldest first."""
        with self.db.transaction(write=False) as tx:
            return self._versions(tx, agreement_id)

    def all(self) -> list[Agreement]:
        """The newest version of every agreement, by id."""
        rows = self.db.query(
            f"SELECT {_AGREEMENT_COLUMNS} FROM transfer_agreements a WHERE version ="
            " (SELECT MAX(version) FROM transfer_agreements b WHERE b.id = a.id) ORDER BY id"
        )
        return [_agreement(row) for row in rows]

    def find(
        self,
        destination_entity: str,
        destination_country: str,
        purpose: str,
        fields: Iterable[str],
        at: datetime | None = None,
        *,
        subjects: int = 1,
    ) -> Agreement:
        """Return the agreement covering this flow at `at`; AccessDenied with the reason."""
        moment = (at or _now()).astimezone(UTC)
        self.destinations.verify_trusted(destination_entity, destination_country)
        rows = self.db.query(
            f"SELECT {_AGREEMENT_COLUMNS} FROM transfer_agreements WHERE destination_entity = ?"
            " AND destination_country = ? AND purpose = ? AND created_at <= ?"
            " ORDER BY id, version",
            (destination_entity, destination_country, purpose, _iso(moment)),
        )
        # The version in force at `moment` is the newest one written by then.
        in_force: dict[str, Agreement] = {}
        for row in rows:
            agreement = _agreement(row)
            in_force[agreement.id] = agreement
        return _choose(
            list(in_force.values()), destination_entity, purpose, fields, moment, subjects
        )


def _choose(
    candidates: list[Agreement],
    entity: str,
    purpose: str,
    fields: Iterable[str],
    moment: datetime,
    subjects: int,
) -> Agreement:
    """Pick the first candidate in force that covers every field and the volume."""
    wanted = sorted(set(fields))
    if not candidates:
        raise AccessDenied(
            f"no transfer agreement with `{_shown(entity)}` for purpose `{_shown(purpose)}`"
        )
    reasons: list[str] = []
    for agreement in candidates:
        missing = [name for name in wanted if name not in agreement.fields]
        if agreement.terminated:
            reasons.append(f"`{agreement.id}` is terminated")
        elif not agreement.is_in_force(moment):
            reasons.append(f"`{agreement.id}` is not in force at {moment.isoformat()}")
        elif missing:
            listed = ", ".join(f"`{_shown(name)}`" for name in missing[:8])
            reasons.append(f"`{agreement.id}` does not cover {listed}")
        elif (limit := agreement.max_subjects_per_request) is not None and subjects > limit:
            reasons.append(f"`{agreement.id}` allows at most {limit} subjects per request")
        else:
            return agreement
    raise AccessDenied("no transfer agreement covers this flow: " + "; ".join(reasons))
