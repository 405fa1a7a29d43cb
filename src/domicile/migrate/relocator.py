"""The bulk relocation path: one page of legacy rows at a time, crash-safe at every step.

Pages come prepared (classified, validated, sealed, digested: `prepare.py`), from this
process or a preparing process beside it (`feeder.py`). For each page the writer —
this process, the only one that writes — records intent (control db), has each
region's custodian wrap the batch's data keys under its KEK (one call per region),
stores the sealed values (one vault transaction per region), reads them back and
compares, activates (control db), appends one `migration-batch` ledger entry per
region, deletes or tombstones the rows at the source, and marks the page done.
Pages overlap, each step on its own database: the next page's intent is recorded
while a page copies, and a page finishes (ledger, source, done) in a background
thread while the next one copies. `recover` finishes or undoes each page a crash left
at any of these points; see `state.py` for the state machine.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field

from domicile.errors import IntegrityError, InvalidInput
from domicile.gateway.request import Event
from domicile.keys.custodian import Authorization, Custodian
from domicile.ledger.entry import decode_entry
from domicile.migrate.feeder import prepared_pages
from domicile.migrate.prepare import PreparedBatch, PreparedPage, PrepareSpec
from domicile.migrate.source import LegacySource
from domicile.migrate.state import Batch, ProgressStore
from domicile.residency.topology import iso_country_codes
from domicile.runtime import Runtime

MIGRATION_BATCH = "migration-batch"
_RECOVERY = Authorization("migration-recovery", "recover")


@dataclass(frozen=True)
class _Copying:
    """A page whose copy is running: what settling and finishing it need."""

    page_no: int
    batches: list[Batch]
    keys: list[str]
    jobs: list[futures.Future[None]]


class _Lanes:
    """One thread per database written during a copy (a region's keyring or vault).

    A SQLite connection belongs to a thread, with its own page and statement caches;
    with one thread per database, a long run keeps one connection per database, and
    its memory stays what it was after the first pages.
    """

    def __init__(self) -> None:
        self._threads: dict[str, futures.ThreadPoolExecutor] = {}

    def submit(
        self,
        lane: str,
        fn: Callable[[Batch, PreparedBatch], None],
        batch: Batch,
        prepared: PreparedBatch,
    ) -> futures.Future[None]:
        """Run `fn(batch, prepared)` in the lane's thread, after what it was given before."""
        thread = self._threads.get(lane)
        if thread is None:
            thread = futures.ThreadPoolExecutor(1, thread_name_prefix=f"migrate-{lane}")
            self._threads[lane] = thread
        return thread.submit(fn, batch, prepared)

    def __enter__(self) -> _Lanes:
        return self

    def __exit__(self, *exc: object) -> None:
        for thread in self._threads.values():
            thread.shutdown(wait=True)


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
        page_size: int = 10_000,
        max_rows_per_second: float | None = None,
        preparing_process: bool = False,
        preparers: int = 1,
    ) -> None:
        self.runtime = runtime
        self.gateway = runtime.gateway
        self.source = source
        self.progress = progress
        self.secret = secret
        self.operator = operator
        self.page_size = page_size
        self.max_rate = max_rows_per_second
        self.preparing_process = preparing_process
        self.preparers = preparers
        self._release = True
        self._finishing: futures.Future[None] | None = None

    def prepare_spec(self) -> PrepareSpec:
        """What preparing pages needs, from the runtime: plain values, no keys but the
        digest secret."""
        routes: dict[str, str] = {}
        for code in iso_country_codes():
            try:
                routes[code] = self.runtime.topology.home_region(code)
            except InvalidInput:
                continue
        catalog = self.runtime.catalog
        return PrepareSpec(
            source_id=self.source.source_id,
            secret=self.secret,
            fields=tuple(self.source.mapping.columns.values()),
            routes=routes,
            specs=dict(catalog.fields),
            max_field_bytes=self.runtime.settings.max_field_bytes,
        )

    # -- run -----------------------------------------------------------------------------

    def run(self, on_page: Callable[[int], None] | None = None) -> RunReport:
        """Recover, then move every live source row; return what was done."""
        report = RunReport(recovered_pages=self.recover())
        page_no = self.progress.next_page()
        size = self.page_size
        if self.max_rate:
            size = max(1, min(size, int(self.max_rate)))
        self._release = self.progress.has_quarantine()
        started = time.monotonic()
        spec = self.prepare_spec()
        with (
            _Lanes() as self._lanes,
            futures.ThreadPoolExecutor(1, thread_name_prefix="migrate-finish") as self._finisher,
            prepared_pages(
                self.source, spec, size, process=self.preparing_process, workers=self.preparers
            ) as pages,
        ):
            copying: _Copying | None = None
            for page in pages:
                planned = self._intend(page_no, page, report)
                # This page's copy queues behind the previous one's in each database's
                # lane, so it starts the moment that one is written; meanwhile the
                # previous page is settled (its activation is on the control database).
                started_copy = self._start_copy(page_no, page, planned) if planned else None
                if copying is not None:
                    self._settle(copying, report)
                copying = started_copy
                page_no += 1
                report.seen += page.rows
                if on_page is not None:
                    on_page(page.rows)
                self._throttle(report.seen, started)
            if copying is not None:
                self._settle(copying, report)
            self._await_finish()
        return report

    def _throttle(self, done: int, started: float) -> None:
        if not self.max_rate:
            return
        ahead = done / self.max_rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)

    def _intend(
        self, page_no: int, page: PreparedPage, report: RunReport
    ) -> list[tuple[Batch, PreparedBatch]]:
        """Record the page's intent and quarantine (the previous page may be copying)."""
        planned = [
            (Batch(uuid.uuid4().hex, page_no, b.region, "copying", len(b.keys), b.root), b)
            for b in page.batches
        ]
        self.progress.begin_page(planned, page.quarantined, release=self._release)
        report.quarantined += len(page.quarantined)
        return planned

    def _start_copy(
        self, page_no: int, page: PreparedPage, planned: list[tuple[Batch, PreparedBatch]]
    ) -> _Copying:
        """Every region's keys and vault rows, side by side, in the copy threads.

        Each goes to a database of its own (a region's keyring, a region's vault), and
        all of them are undone together if the page is still `copying` after a crash,
        so neither their order nor their interleaving matters; SQLite works on each
        without the GIL. The page becomes `moved` only after every one is verified.
        """
        jobs: list[futures.Future[None]] = []
        for batch, prepared in planned:
            region = batch.region
            jobs.append(self._lanes.submit(f"keys-{region}", self._keep_keys, batch, prepared))
            jobs.append(self._lanes.submit(f"vault-{region}", self._store, batch, prepared))
        batches = [batch for batch, _ in planned]
        return _Copying(page_no, batches, [key for b in page.batches for key in b.keys], jobs)

    def _settle(self, copying: _Copying, report: RunReport) -> None:
        """Wait for a page's copy, mark it moved, and hand it to the finishing thread."""
        futures.wait(copying.jobs)
        for job in copying.jobs:
            job.result()  # the first failure, once nothing is running any more
        batches = copying.batches
        self.progress.mark_moved(
            copying.page_no, self._log_sizes(batches), [b.batch_id for b in batches]
        )
        self._await_finish()
        self._finishing = self._finisher.submit(
            self._finish_page, copying.page_no, batches, copying.keys
        )
        for batch in batches:
            report.moved += batch.count
            report.per_region[batch.region] = report.per_region.get(batch.region, 0) + batch.count

    def _finish_page(self, page_no: int, batches: list[Batch], keys: list[str]) -> None:
        """Ledger entries, source rows gone, page done: behind the next page's copy.

        Pages overlap (the next one's intent is recorded while this one copies, and
        this one finishes while the next one copies), but each page's own steps stay
        in order and no step of one page depends on another page, so a crash leaves
        each page in a state `recover` finishes or undoes on its own. A page notes its
        log size before its own entries are appended, whatever others append meanwhile.
        """
        indices = self.gateway.record([self._event(b) for b in batches])
        self.source.remove(keys)
        self.progress.mark_done(
            page_no, {b.batch_id: i for b, i in zip(batches, indices, strict=True)}
        )

    def _await_finish(self) -> None:
        """Wait for the previous page's finish; raise what it raised."""
        finishing, self._finishing = self._finishing, None
        if finishing is not None:
            finishing.result()

    def _keep_keys(self, batch: Batch, prepared: PreparedBatch) -> None:
        """The custodian wraps the batch's data keys under its KEK and keeps them."""
        store = self.gateway.regions[batch.region]
        keys = dict(zip(prepared.subject_ids, prepared.data_keys, strict=True))
        _import_keys(store.custodian, keys, Authorization(f"migration-{batch.batch_id}", "migrate"))

    def _store(self, batch: Batch, prepared: PreparedBatch) -> None:
        """Sealed values in, then read back: the vault must hold exactly what was sealed."""
        region = batch.region
        vault = self.gateway.regions[region].vault
        ids = prepared.subject_ids
        vault.insert_packed(ids, prepared.stored, self.runtime.catalog.version)
        if vault.stored_values(ids) != dict(zip(ids, prepared.stored, strict=True)):
            raise IntegrityError(f"copy of batch `{batch.batch_id}` in `{region}` differs")
        # Sealing is the gateway's own; opening one record per batch proves it and the
        # key fit together.
        first = ids[0]
        fields = vault.fetch(first).fields
        opened = self.gateway.open_values(region, first, prepared.data_keys[0], fields)
        if opened != prepared.sample:
            raise IntegrityError(f"copy of subject `{first}` in `{region}` does not open")

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
            # moved again under new subject ids. Shred the keys and drop the vault rows
            # (either may not exist yet), then the reservations and the intent.
            for batch in batches:
                ids = [r.subject_id for r in self.progress.rows(batch.batch_id)]
                store = self.gateway.regions[batch.region]
                _destroy_keys(store.custodian, ids)
                store.vault.discard_many(ids)
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


def _import_keys(custodian: Custodian, keys: dict[str, bytes], auth: Authorization) -> None:
    """Have the custodian wrap and keep keys the preparing side made (it never sees the KEK)."""
    custodian.import_data_keys(keys, auth)


def _destroy_keys(custodian: Custodian, subject_ids: list[str]) -> None:
    """Shred the keys of a copy never made authoritative (idempotent)."""
    custodian.destroy_data_keys(subject_ids, _RECOVERY)
