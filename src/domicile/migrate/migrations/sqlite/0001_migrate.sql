CREATE TABLE migrate_sources (
    source_id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE migrate_batches (
    source_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    page INTEGER NOT NULL,
    region TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('copying', 'moved', 'recorded', 'removed')),
    row_count INTEGER NOT NULL,
    root BLOB NOT NULL,
    log_size INTEGER,
    ledger_index INTEGER,
    created_at TEXT NOT NULL,
    PRIMARY KEY (source_id, batch_id)
);
CREATE INDEX migrate_batches_state ON migrate_batches (source_id, state, page);
CREATE TABLE migrate_rows (
    source_id TEXT NOT NULL,
    legacy_key TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    subject_id TEXT NOT NULL,
    region TEXT NOT NULL,
    digest BLOB NOT NULL,
    PRIMARY KEY (source_id, legacy_key)
);
CREATE INDEX migrate_rows_batch ON migrate_rows (source_id, batch_id, seq);
CREATE TABLE migrate_quarantine (
    source_id TEXT NOT NULL,
    legacy_key TEXT NOT NULL,
    reason TEXT NOT NULL,
    seen_at TEXT NOT NULL,
    PRIMARY KEY (source_id, legacy_key)
);
