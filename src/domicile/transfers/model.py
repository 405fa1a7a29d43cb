"""Transfer agreements and destinations as values: rules checked here, stored elsewhere.

An agreement says who may receive which fields, for what purpose, on what legal basis,
for how long and in what volume, and how each field is transformed on the way. A field's
transform defaults to the catalog's and may only be made stricter (`STRICTER`), so an
agreement can never send more than the catalog lets leave a region.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from domicile.catalog.catalog import Catalog
from domicile.errors import ConfigError, InvalidInput
from domicile.pets.transform import FieldPlan, verify_fits
from domicile.residency.topology import is_country_code

__all__ = [
    "STRICTER",
    "Agreement",
    "AgreementDraft",
    "Destination",
    "TrustStatus",
    "resolve_fields",
]

# For each catalog transform, the transforms at least as strict: they send no more.
# Different kinds of disclosure (a year vs a linkable pseudonym) are not ordered, so
# a generalisation may only tighten to a coarser generalisation or to suppression.
STRICTER: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "keep": frozenset(
            {
                "keep",
                "generalise:prefix",
                "generalise:year",
                "generalise:country",
                "tokenise",
                "pseudonymise",
                "suppress",
            }
        ),
        "generalise:prefix": frozenset({"generalise:prefix", "generalise:country", "suppress"}),
        "generalise:year": frozenset({"generalise:year", "suppress"}),
        "generalise:country": frozenset({"generalise:country", "suppress"}),
        "tokenise": frozenset({"tokenise", "pseudonymise", "suppress"}),
        "pseudonymise": frozenset({"pseudonymise", "suppress"}),
        "suppress": frozenset({"suppress"}),
    }
)
"""Catalog transform → the transforms an agreement may choose instead."""

_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_ENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .,&()'_-]{0,127}")
_FORMAT = "domicile-transfer-agreement/1"


class TrustStatus(StrEnum):
    """Whether data may go to a recipient: only `trusted` ones receive anything."""

    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"
    SUSPENDED = "suspended"


def _shown(text: object) -> str:
    if not isinstance(text, str):
        return f"<{type(text).__name__}>"
    return text[:64].replace("`", "'").encode("ascii", "backslashreplace").decode("ascii")


def verify_entity(entity: str) -> None:
    """Raise InvalidInput unless `entity` is a recipient entity name."""
    if not isinstance(entity, str) or not _ENTITY.fullmatch(entity):
        raise InvalidInput(f"recipient entity `{_shown(entity)}` is not a valid name")


def verify_country(country: str) -> None:
    """Raise InvalidInput unless `country` is an ISO 3166-1 alpha-2 code."""
    if not is_country_code(country):
        raise InvalidInput(f"destination country `{_shown(country)}` is not an iso 3166 code")


@dataclass(frozen=True)
class Destination:
    """A recipient entity in the registry."""

    entity: str
    country: str
    status: TrustStatus
    note: str
    updated_at: datetime
    updated_by: str

    def version_record(self) -> dict[str, object]:
        """Return the registry entry as the ledger records it."""
        return {
            "format": "domicile-destination/1",
            "entity": self.entity,
            "country": self.country,
            "status": self.status.value,
            "note": self.note,
            "updated_at": self.updated_at.isoformat(),
            "updated_by": self.updated_by,
        }


@dataclass(frozen=True)
class AgreementDraft:
    """What a privacy officer writes; `fields` maps field → transform (None: catalog's)."""

    id: str
    destination_entity: str
    destination_country: str
    purpose: str
    legal_basis: str
    tia_reference: str
    fields: Mapping[str, str | None]
    valid_from: datetime
    valid_until: datetime
    max_subjects_per_request: int | None = None
    max_subjects_per_year: int | None = None


def resolve_fields(catalog: Catalog, fields: Mapping[str, str | None]) -> dict[str, str]:
    """Return field → transform with catalog defaults filled in; ConfigError if looser."""
    if not fields:
        raise InvalidInput("an agreement allows at least one field")
    out: dict[str, str] = {}
    for name, chosen in fields.items():
        spec = catalog.field(name)
        transform = spec.transform if chosen is None else chosen
        verify_fits(transform, spec.type, name)
        if transform not in STRICTER[spec.transform]:
            raise ConfigError(
                f"field `{name}` would leave with `{transform}`, less strict than the "
                f"catalog's `{spec.transform}`"
            )
        out[name] = transform
    return dict(sorted(out.items()))


def _verify_text(draft: AgreementDraft) -> None:
    if not isinstance(draft.id, str) or not _ID.fullmatch(draft.id):
        raise InvalidInput(f"agreement id `{_shown(draft.id)}` must match [a-z0-9][a-z0-9._-]*")
    verify_entity(draft.destination_entity)
    verify_country(draft.destination_country)
    for name in ("purpose", "legal_basis", "tia_reference"):
        value = getattr(draft, name)
        if not isinstance(value, str) or not value.strip() or len(value) > 256:
            raise InvalidInput(f"an agreement needs a `{name}` of 1-256 characters")


def _verify_limits(draft: AgreementDraft) -> None:
    for name in ("max_subjects_per_request", "max_subjects_per_year"):
        limit = getattr(draft, name)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise InvalidInput(f"`{name}` must be an integer")
        if limit is not None and limit < 1:
            raise InvalidInput(f"`{name}` must be at least 1")
    if draft.valid_from.tzinfo is None or draft.valid_until.tzinfo is None:
        raise InvalidInput("agreement validity times must carry a time zone")
    if draft.valid_until <= draft.valid_from:
        raise InvalidInput("an agreement must end after it starts")


def verify_draft(draft: AgreementDraft, catalog: Catalog) -> dict[str, str]:
    """Check a draft; return its resolved field → transform map."""
    _verify_text(draft)
    _verify_limits(draft)
    return resolve_fields(catalog, draft.fields)


@dataclass(frozen=True)
class Agreement:
    """One version of a transfer agreement, as stored."""

    id: str
    version: int
    destination_entity: str
    destination_country: str
    purpose: str
    legal_basis: str
    tia_reference: str
    fields: Mapping[str, str]
    valid_from: datetime
    valid_until: datetime
    max_subjects_per_request: int | None
    max_subjects_per_year: int | None
    terminated: bool
    catalog_version: str
    catalog_digest: str
    created_at: datetime
    created_by: str

    def is_in_force(self, at: datetime) -> bool:
        """True when not terminated and `at` is inside [valid_from, valid_until)."""
        return not self.terminated and self.valid_from <= at < self.valid_until

    def plan(self, catalog: Catalog) -> dict[str, FieldPlan]:
        """Return field → plan (type and transform) for the transform step."""
        return {
            name: FieldPlan(name, catalog.field(name).type, transform)
            for name, transform in self.fields.items()
        }

    def version_record(self) -> dict[str, object]:
        """Return this version as the ledger records it (no personal data), with a digest."""
        record: dict[str, object] = {
            "format": _FORMAT,
            "id": self.id,
            "version": self.version,
            "destination_entity": self.destination_entity,
            "destination_country": self.destination_country,
            "purpose": self.purpose,
            "legal_basis": self.legal_basis,
            "tia_reference": self.tia_reference,
            "fields": dict(self.fields),
            "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat(),
            "max_subjects_per_request": self.max_subjects_per_request,
            "max_subjects_per_year": self.max_subjects_per_year,
            "terminated": self.terminated,
            "catalog_version": self.catalog_version,
            "catalog_digest": self.catalog_digest,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }
        canonical = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
        record["digest"] = hashlib.sha256(canonical).hexdigest()
        return record
