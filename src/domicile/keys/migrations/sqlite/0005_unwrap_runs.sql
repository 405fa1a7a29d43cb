-- Runs of unwraps: a batch read unwraps each record against its own decision, and the
-- decisions sit at consecutive ledger entries. Such a run is one group as well: with
-- `decision_ids` set, record k of the group (k = 0 .. count - 1) was unwrapped against
-- decision `decision_ids[32k : 32k + 32]` at ledger entry `ledger_index + k`, and
-- `decision_id` holds the first of them. A group without it shares one decision.
ALTER TABLE unwrap_groups ADD COLUMN decision_ids TEXT
    CHECK (decision_ids IS NULL OR length(decision_ids) = 32 * count);
