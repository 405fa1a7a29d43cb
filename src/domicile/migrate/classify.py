"""Classify legacy rows: a home region and validated values, or a quarantine reason.

Nothing is guessed: a row without a known country or with one value the catalog
refuses is quarantined whole. Reasons name the fault and the field, never a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from domicile.catalog.catalog import Catalog, JsonValue
from domicile.errors import InvalidInput
from domicile.migrate.mapping import MappingSpec
from domicile.migrate.source import LegacyRow, legacy_key
from domicile.residency.topology import Topology


@dataclass(frozen=True)
class Placement:
    """A valid row: where it goes and its normalised values."""

    key: str
    region: str
    values: dict[str, JsonValue]


@dataclass(frozen=True)
class Quarantined:
    """A row that cannot be placed, and why (no personal data in the reason)."""

    key: str
    reason: str


class Classifier:
    """Turns legacy rows into placements or quarantine entries."""

    def __init__(
        self,
        mapping: MappingSpec,
        topology: Topology,
        catalog: Catalog,
        max_field_bytes: int | None = None,
    ) -> None:
        self.fields = list(mapping.columns.values())
        self.topology = topology
        self.catalog = catalog
        self.max_field_bytes = max_field_bytes
        self._regions: dict[object, str | None] = {}

    def _region(self, country: object) -> str | None:
        # Few distinct countries: remember each answer, valid or not.
        if country in self._regions:
            return self._regions[country]
        region: str | None
        try:
            region = self.topology.home_region(country) if isinstance(country, str) else None
        except InvalidInput:
            region = None
        if len(self._regions) < 4096:
            self._regions[country] = region
        return region

    def classify(self, row: LegacyRow) -> Placement | Quarantined:
        """Classify one row."""
        key = legacy_key(row[0])
        country = row[1]
        if country is None or (isinstance(country, str) and not country.strip()):
            return Quarantined(key, "missing-country")
        region = self._region(country)
        if region is None:
            return Quarantined(key, "unknown-country")
        raw = {name: value for name, value in zip(self.fields, row[2:], strict=True)
               if value is not None}  # fmt: skip
        try:
            values = self.catalog.validate(raw, max_field_bytes=self.max_field_bytes)
        except InvalidInput as exc:
            return Quarantined(key, f"{exc.code}:{self._field_of(raw)}")
        if not values:
            return Quarantined(key, "no-values")
        return Placement(key, region, values)

    def classify_all(self, rows: Sequence[LegacyRow]) -> list[Placement | Quarantined]:
        """Classify a page of rows, in order."""
        return [self.classify(row) for row in rows]

    def _field_of(self, raw: dict[str, object]) -> str:
        """The first field whose value the catalog refuses (the one validate stopped at)."""
        for name, value in raw.items():
            try:
                self.catalog.validate({name: value}, max_field_bytes=self.max_field_bytes)
            except InvalidInput:
                return name
        return "unknown"
