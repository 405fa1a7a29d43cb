"""Legacy data relocation with verified deletion (`domicile migrate`).

A legacy store of plaintext user records (a SQLite file or a PostgreSQL table) is
streamed in pages: each row is classified by its home region, sealed into that
region's vault exactly like a registered subject, read back and compared, recorded
in the region's ledger as a `migration-batch` entry (counts and a Merkle root over
keyed record digests), then deleted or tombstoned at the source. Progress lives in
the control database, so a run can be killed at any point and resumed. Rows that
cannot be placed go to a quarantine report. A signed deletion certificate per source
is checked by `domicile migrate verify` against the ledgers and a rescan of the source.
"""
