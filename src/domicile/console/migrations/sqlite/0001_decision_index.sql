-- The console's index of decision entries, built from the region's own log on demand.
-- One row per `decision` entry; `categories` and `policy_ids` are comma-framed lists
-- (",a,b,") so one LIKE finds a member. `destination` is set only for transfers.
CREATE TABLE console_decisions (
    idx INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    principal TEXT NOT NULL,
    purpose TEXT NOT NULL,
    action TEXT NOT NULL,
    result TEXT NOT NULL,
    categories TEXT NOT NULL,
    policy_ids TEXT NOT NULL,
    destination TEXT
);
CREATE INDEX console_decisions_principal ON console_decisions (principal, idx);
CREATE INDEX console_decisions_purpose ON console_decisions (purpose, idx);
CREATE INDEX console_decisions_result ON console_decisions (result, idx);
CREATE INDEX console_decisions_flows ON console_decisions (time) WHERE destination IS NOT NULL;
-- How far into the log the index reaches (the high-water mark).
CREATE TABLE console_progress (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    indexed INTEGER NOT NULL
);
INSERT INTO console_progress (id, indexed) VALUES (1, 0);
