"""k-anonymity: aggregates whose small cells are suppressed, and a check for exports.

A release is k-anonymous over its quasi-identifiers (the generalised columns someone
could link to outside data: birth year, grid cell, network prefix…) when every
combination that appears, appears at least k times (Sweeney 2002). The checker counts
equivalence classes as rows stream past, so its memory grows with the number of
distinct classes, not with the number of rows: an export runs it in a first pass and
sends rows in a second only if the report is clean.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from domicile.catalog.catalog import JsonValue
from domicile.errors import AccessDenied, InvalidInput

__all__ = [
    "KAnonymityChecker",
    "KAnonymityReport",
    "KAnonymousCounts",
    "check_k_anonymity",
    "freeze",
    "k_anonymous_counts",
    "verify_k_anonymous",
]

_MAX_REPORTED = 100


def freeze(value: JsonValue | Sequence[JsonValue]) -> Hashable:
    """Return a hashable equivalent of a JSON value (objects become sorted item tuples)."""
    if isinstance(value, dict):
        return ("{}", tuple(sorted((k, freeze(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return ("[]", tuple(freeze(v) for v in value))
    # Keep the type: 1, 1.0 and True are equal in Python but not the same released value.
    return (type(value).__name__, value)


def _verify_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise InvalidInput(f"k must be an integer of at least 2, not `{k}`")


@dataclass(frozen=True)
class KAnonymityReport:
    """What a k-anonymity check found; `offending` lists at most 100 classes."""

    k: int
    rows: int
    classes: int
    smallest_class: int
    offending_classes: int
    offending_rows: int
    offending: tuple[tuple[Hashable, int], ...]

    @property
    def is_k_anonymous(self) -> bool:
        """True when no class is smaller than k (an empty release is k-anonymous)."""
        return self.offending_classes == 0


class KAnonymityChecker:
    """Counts equivalence classes of quasi-identifier tuples as rows stream past."""

    def __init__(self, k: int, *, max_reported: int = _MAX_REPORTED) -> None:
        """Check for `k`-anonymity; report at most `max_reported` offending classes."""
        _verify_k(k)
        self.k = k
        self._max_reported = max_reported
        self._classes: Counter[Hashable] = Counter()
        self._rows = 0

    def add(self, quasi_identifiers: Sequence[JsonValue]) -> None:
        """Count one row, given its quasi-identifier values in a fixed column order."""
        self._classes[freeze(quasi_identifiers)] += 1
        self._rows += 1

    def add_counts(self, classes: Mapping[Hashable, int]) -> None:
        """Count rows already grouped elsewhere: `freeze` of their quasi-identifier values
        (as `add` would) to their number (a worker's page of an export)."""
        self._classes.update(classes)
        self._rows += sum(classes.values())

    def add_all(self, rows: Iterable[Sequence[JsonValue]]) -> None:
        """Count every row of `rows`."""
        for row in rows:
            self.add(row)

    def report(self) -> KAnonymityReport:
        """Return the smallest class and the classes under k, smallest first."""
        small = sorted(
            ((cls, n) for cls, n in self._classes.items() if n < self.k),
            key=lambda item: (item[1], repr(item[0])),
        )
        return KAnonymityReport(
            k=self.k,
            rows=self._rows,
            classes=len(self._classes),
            smallest_class=min(self._classes.values(), default=0),
            offending_classes=len(small),
            offending_rows=sum(n for _, n in small),
            offending=tuple(small[: self._max_reported]),
        )


def check_k_anonymity(rows: Iterable[Sequence[JsonValue]], k: int) -> KAnonymityReport:
    """Return the k-anonymity report of `rows` of quasi-identifier values."""
    checker = KAnonymityChecker(k)
    checker.add_all(rows)
    return checker.report()


def verify_k_anonymous(report: KAnonymityReport) -> None:
    """Raise AccessDenied unless the report is clean; the message holds counts only."""
    if not report.is_k_anonymous:
        raise AccessDenied(
            f"release is not {report.k}-anonymous: {report.offending_classes} classes "
            f"holding {report.offending_rows} rows are smaller than {report.k}"
        )


@dataclass(frozen=True)
class KAnonymousCounts:
    """Counts per cell with every cell under k removed."""

    k: int
    counts: Mapping[Hashable, int]
    suppressed_cells: int


def k_anonymous_counts(cells: Iterable[Sequence[JsonValue]], k: int) -> KAnonymousCounts:
    """Count rows per cell (a tuple of generalised values) and drop cells under k.

    Only the number of suppressed cells is reported, not how many rows they held: a
    suppressed total next to a published grand total would give the small cells back.
    """
    _verify_k(k)
    counter: Counter[Hashable] = Counter(freeze(cell) for cell in cells)
    kept = {cell: n for cell, n in counter.items() if n >= k}
    return KAnonymousCounts(k=k, counts=kept, suppressed_cells=len(counter) - len(kept))
