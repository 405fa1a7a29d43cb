-- Threshold counters (docs/transfers.md, "Running counts"), in their own database.
-- Before, they lived in the control database's `transfers` component;
-- `move_legacy_counts` copies them from there once (`transfer_counts_moved`).
CREATE TABLE transfer_counters (
    scope TEXT NOT NULL,
    data_class TEXT NOT NULL,
    total BIGINT NOT NULL DEFAULT 0,
    expired_through BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, data_class)
);
CREATE TABLE transfer_subjects (
    scope TEXT NOT NULL,
    data_class TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    last_at BIGINT NOT NULL,
    PRIMARY KEY (scope, data_class, subject_ref)
);
CREATE INDEX transfer_subjects_window ON transfer_subjects (scope, data_class, last_at);
CREATE TABLE transfer_buckets (
    scope TEXT NOT NULL,
    data_class TEXT NOT NULL,
    at_s BIGINT NOT NULL,
    subjects BIGINT NOT NULL,
    PRIMARY KEY (scope, data_class, at_s)
);
CREATE TABLE transfer_counts_moved (
    moved_at TEXT NOT NULL,
    subjects BIGINT NOT NULL
);
