-- The custodian's own record of every unwrap, for the monitor to cross-check against
-- the decisions in the region ledger.
CREATE TABLE unwraps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_ref TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    ledger_index INTEGER NOT NULL,
    action TEXT NOT NULL,
    unwrapped_at TEXT NOT NULL
);
