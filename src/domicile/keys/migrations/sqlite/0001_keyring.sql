CREATE TABLE data_keys (
    subject_id TEXT PRIMARY KEY,
    kek_id INTEGER NOT NULL,
    wrapped BLOB NOT NULL,
    -- Per-subject material of the subject's ledger reference; wiped with the key.
    ref_salt BLOB NOT NULL,
    destroyed INTEGER NOT NULL DEFAULT 0
);
