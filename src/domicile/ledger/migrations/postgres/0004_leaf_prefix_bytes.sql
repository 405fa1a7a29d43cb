-- Leaf-hash lookup keyed by the first 8 bytes of the leaf hash as bytes, so the index is
-- filled from the level-0 tiles by one INSERT … SELECT, with no per-entry work in Python.
-- The old index (integer prefixes) is dropped and rebuilt from the start.
DROP TABLE ledger_leaves;
CREATE TABLE ledger_leaves (
    prefix BYTEA NOT NULL,
    idx BIGINT NOT NULL,
    PRIMARY KEY (prefix, idx)
);
UPDATE ledger_leaf_progress SET indexed = 0 WHERE id = 1;
