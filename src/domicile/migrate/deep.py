"""Deep check: open every moved record in its vault and recompute its keyed digest.

Needs the custodians (the keys are unwrapped against the batch's ledger entry, and
each custodian keeps its own record of the unwraps) and the per-source secret.
"""

from __future__ import annotations

from domicile.errors import IntegrityError
from domicile.keys.custodian import Authorization
from domicile.migrate.digest import record_digest
from domicile.migrate.state import ProgressStore
from domicile.runtime import Runtime
from domicile.vault.store import SealedRecord


def verify_digests(runtime: Runtime, progress: ProgressStore, secret: bytes) -> int:
    """Check every moved record against its digest; return how many were checked."""
    checked = 0
    for batch in progress.batches(state="removed"):
        rows = progress.rows(batch.batch_id)
        store = runtime.gateway.regions[batch.region]
        auth = Authorization(
            f"migration-verify-{batch.batch_id}", "migrate-verify", batch.ledger_index
        )
        keys = store.custodian.unwrap_data_keys([(r.subject_id, auth) for r in rows])
        records = store.vault.fetch_many([r.subject_id for r in rows])
        entries = runtime.directory.lookup_many([r.subject_id for r in rows])
        for row in rows:
            record, key = records.get(row.subject_id), keys.get(row.subject_id)
            entry = entries.get(row.subject_id)
            if not isinstance(record, SealedRecord) or not isinstance(key, bytes):
                raise IntegrityError(f"subject `{row.subject_id}` is missing in `{batch.region}`")
            if entry is None or entry.state != "active" or entry.home_region != batch.region:
                raise IntegrityError(f"subject `{row.subject_id}` is not active in the directory")
            values = runtime.gateway.open_values(batch.region, row.subject_id, key, record.fields)
            digest = record_digest(
                secret, progress.source_id, row.key, batch.region, row.subject_id, values
            )
            if digest != row.digest:
                raise IntegrityError(f"subject `{row.subject_id}` does not match its digest")
            checked += 1
    return checked
