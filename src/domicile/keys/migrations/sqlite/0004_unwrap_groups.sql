-- The custodian's unwrap record in groups. The unwraps of one write that share a
-- decision, an action and a moment (an export page: hundreds of subjects under one
-- decision) are one row holding their subject refs side by side, not one row each:
-- about 33 bytes per unwrap instead of about 121, and one row to insert per page.
-- Records keep one id each: a group holds ids last_id - count + 1 .. last_id.
CREATE TABLE unwrap_groups (
    last_id INTEGER PRIMARY KEY,
    count INTEGER NOT NULL CHECK (count > 0),
    decision_id TEXT NOT NULL,
    ledger_index INTEGER NOT NULL,
    action TEXT NOT NULL,
    unwrapped_at TEXT NOT NULL,
    -- `count` refs of 32 hex digits each, in record order
    subject_refs TEXT NOT NULL CHECK (length(subject_refs) = 32 * count)
);
INSERT INTO unwrap_groups
    (last_id, count, decision_id, ledger_index, action, unwrapped_at, subject_refs)
    SELECT id, 1, decision_id, ledger_index, action, unwrapped_at, subject_ref FROM unwraps;
DROP TABLE unwraps;
