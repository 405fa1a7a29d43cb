"""The bulk relocation path: one page of legacy rows at a time, crash-safe at every step.

For each page: classify → record intent (control db) → data keys (one custodian call
per region) → sealed values (one vault transaction per region) → read back and compare
→ activate (control db) → one `migration-batch` ledger entry per region → delete or
tombstone at the source → done. `recover` finishes or undoes a page a crash left at any
of these points; see `state.py` for the state machine.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from domicile.errors import IntegrityError
from domicile.gateway.relocation import recover as recover_registrations
from domicile.gateway.request import Event
from domicile.keys.custodian import Authorization
from domicile.ledger.entry import decode_entry
from domicile.migrate.classify import Classifier, Placement, Quarantined
from domicile.migrate.digest import batch_root, record_digest
from domicile.migrate.source import LegacyRow, LegacySource
from domicile.migrate.state import Batch, BatchRow, ProgressStore
from domicile.runtime import Runtime
from domicile.vault.store import SealedRecord

MIGRATION_BATCH = "migration-batch"


@dataclass(frozen=True)
class Operator:
    """Who runs the migration, as the ledger names them (no personal data)."""

    id: str = "domicile-migrate"
    entity: str = "operator"


@dataclass
class RunReport:
    """What one run did."""

    seen: int = 0
    moved: int = 0
    quarantined: int = 0
    recovered_pages: int = 0
    per_region: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Planned:
    batch: Batch
    rows: list[BatchRow]
    values: list[Placement]


class Relocator:
    """Moves one legacy source into the home vaults through the runtime's stores."""

    def __init__(
        self,
        runtime: Runtime,
        source: LegacySource,
        progress: ProgressStore,
        secret: bytes,
        *,
        operator: Operator = Operator(),
        page_size: int = 5000,
        max_rows_per_second: float | None = None,
    ) -> None:
        self.runtime = runtime
        self.gateway = runtime.gateway
        self.source = source
        self.progress = progress
        self.secret = secret
        self.operator = operator
        self.page_size = page_size
        self.max_rate = max_rows_per_second
        self.classifier = Classifier(
            source.mapping, runtime.topology, runtime.catalog, runtime.settings.max_field_bytes
        )

    # -- run -----------------------------------------------------------------------------

    def run(self, on_page: Callable[[int], None] | None = None) -> RunReport:
        """Recover, then move every live source row; return what was done."""
        report = RunReport(recovered_pages=self.recover())
        page_no = self.progress.next_page()
        size = self.page_size
        if self.max_rate:
            size = max(1, min(size, int(self.max_rate)))
        started = time.monotonic()
        for rows in self.source.pages(size):
            self._move_page(page_no, rows, report)
            page_no += 1
            report.seen += len(rows)
            if on_page is not None:
                on_page(len(rows))
            self._throttle(report.seen, started)
        return report

    def _throttle(self, done: int, started: float) -> None:
        if not self.max_rate:
            return
        ahead = done / self.max_rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)

    def _move_page(self, page_no: int, rows: Sequence[LegacyRow], report: RunReport) -> None:
        classified = self.classifier.classify_all(rows)
        quarantined = [c for c in classified if isinstance(c, Quarantined)]
        planned = self._plan(page_no, [c for c in classified if isinstance(c, Placement)])
        self.progress.begin_page(
            [p.batch for p in planned],
            [(p.batch.batch_id, r) for p in planned for r in p.rows],
            quarantined,
        )
        report.quarantined += len(quarantined)
        if not planned:
            return
        for item in planned:
            self._copy(item)
        self.progress.mark_moved(page_no, self._log_sizes([p.batch for p in planned]))
        self._record([p.batch for p in planned])
        self.source.remove([r.key for p in planned for r in p.rows])
        self.progress.mark_removed(page_no)
        for item in planned:
            report.moved += item.batch.count
            region = item.batch.region
            report.per_region[region] = report.per_region.get(region, 0) + item.batch.count

    def _plan(self, page_no: int, placements: Sequence[Placement]) -> list[_Planned]:
        by_region: dict[str, list[Placement]] = {}
        for placement in placements:
            by_region.setdefault(placement.region, []).append(placement)
        out: list[_Planned] = []
        sid = self.source.source_id
        for region in sorted(by_region):
            items = by_region[region]
            rows = []
            for p in items:
                subject_id = uuid.uuid4().hex
                digest = record_digest(self.secret, sid, p.key, region, subject_id, p.values)
                rows.append(BatchRow(p.key, subject_id, region, digest))
            root = batch_root([r.digest for r in rows])
            batch = Batch(uuid.uuid4().hex, page_no, region, "copying", len(rows), root)
            out.append(_Planned(batch, rows, items))
        return out

    def _copy(self, item: _Planned) -> None:
        """Keys, sealed values, then read back: the vault must hold exactly what was sealed."""
        region = item.batch.region
        store = self.gateway.regions[region]
        ids = [r.subject_id for r in item.rows]
        auth = Authorization(f"migration-{item.batch.batch_id}", "migrate")
        keys = store.custodian.create_data_keys(ids, auth)
        sealed = [
            (r.subject_id, self.gateway.seal_values(region, r.subject_id, keys[r.subject_id],
                                                    p.values))
            for r, p in zip(item.rows, item.values, strict=True)
        ]  # fmt: skip
        store.vault.insert_many(sealed, self.runtime.catalog.version)
        stored = store.vault.fetch_many(ids)
        for subject_id, values in sealed:
            copy = stored.get(subject_id)
            if not isinstance(copy, SealedRecord) or not _same(copy.fields, values):
                raise IntegrityError(f"copy of subject `{subject_id}` in `{region}` differs")
        # Sealing is the gateway's own; opening one record per batch proves the keys fit.
        first = sealed[0]
        opened = self.gateway.open_values(region, first[0], keys[first[0]], first[1])
        if opened != item.values[0].values:
            raise IntegrityError(f"copy of subject `{first[0]}` in `{region}` does not open")

    def _log_sizes(self, batches: Sequence[Batch]) -> dict[str, int]:
        out: dict[str, int] = {}
        for batch in batches:
            log = self.runtime.logs[batch.region]
            log.refresh()
            out[batch.region] = log.size
        return out

    def _event(self, batch: Batch) -> Event:
        return Event(
            MIGRATION_BATCH,
            batch.region,
            {
                "source": self.source.source_id,
                "batch_id": batch.batch_id,
                "page": batch.page,
                "count": batch.count,
                "root": batch.root.hex(),
                "digest": "hmac-sha256,rfc9162-merkle",
                "principal": {"id": self.operator.id, "entity": self.operator.entity},
            },
        )

    def _record(self, batches: Sequence[Batch]) -> None:
        indices = self.gateway.record([self._event(b) for b in batches])
        self.progress.mark_recorded({b.batch_id: i for b, i in zip(batches, indices, strict=True)})

    # -- recover -------------------------------------------------------------------------

    def recover(self) -> int:
        """Finish or undo every page a crash left unfinished; return how many."""
        pages: dict[int, list[Batch]] = {}
        for batch in self.progress.unfinished():
            pages.setdefault(batch.page, []).append(batch)
        for page_no, batches in sorted(pages.items()):
            self._recover_page(page_no, batches)
        return len(pages)

    def _recover_page(self, page_no: int, batches: list[Batch]) -> None:
        states = {b.state for b in batches}
        if "copying" in states:
            # Never made authoritative: the rows are still at the source and will be
            # moved again under new subject ids. The gateway's own recovery discards
            # the `registering` reservations, their keys and vault rows.
            recover_registrations(self.gateway)
            self.progress.discard_page(page_no)
            return
        moved = [b for b in batches if b.state == "moved"]
        if moved:
            found = self._find_entries(moved)
            missing = [b for b in moved if b.batch_id not in found]
            if found:
                self.progress.mark_recorded(found)
            if missing:
                self._record(missing)
        keys = [r.key for b in batches for r in self.progress.rows(b.batch_id)]
        self.source.remove(keys)
        self.progress.mark_removed(page_no)

    def _find_entries(self, batches: Sequence[Batch]) -> dict[str, int]:
        """Entries already in the ledger for these batches (written before the crash)."""
        wanted = {b.batch_id: b for b in batches}
        found: dict[str, int] = {}
        for region in {b.region for b in batches}:
            log = self.runtime.logs[region]
            log.refresh()
            start = min(b.log_size or 0 for b in batches if b.region == region)
            for index in range(start, log.size):
                entry = decode_entry(log.entry(index))
                batch_id = entry.get("batch_id")
                if (
                    entry["kind"] == MIGRATION_BATCH
                    and isinstance(batch_id, str)
                    and batch_id in wanted
                    and entry.get("source") == self.source.source_id
                ):
                    found.setdefault(batch_id, index)  # fmt: skip
        return found


def _same(stored: dict[str, bytes], written: dict[str, bytes]) -> bool:
    return stored.keys() == written.keys() and all(
        hmac.compare_digest(stored[k], written[k]) for k in written
    )
