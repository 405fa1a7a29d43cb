CREATE TABLE data_keys (
    subject_id TEXT PRIMARY KEY,
    kek_id INTEGER NOT NULL,
    wrapped BLOB NOT NULL,
    destroyed INTEGER NOT NULL DEFAULT 0
);
