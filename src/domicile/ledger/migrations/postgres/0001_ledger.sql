-- Hash tiles: every node of a tile's 8 Merkle levels, bottom row first (its first
-- `width` hashes are the C2SP tlog-tiles tile itself).
CREATE TABLE ledger_tiles (
    level INTEGER NOT NULL,
    idx BIGINT NOT NULL,
    width INTEGER NOT NULL,
    nodes BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);
-- Entry bundles in the C2SP encoding (big-endian uint16 length + entry, repeated).
CREATE TABLE ledger_bundles (
    idx BIGINT PRIMARY KEY,
    width INTEGER NOT NULL,
    data BYTEA NOT NULL
);
-- Every checkpoint ever signed: one per size, so two roots for one size cannot coexist.
CREATE TABLE ledger_checkpoints (
    size BIGINT PRIMARY KEY,
    root BYTEA NOT NULL,
    note TEXT NOT NULL,
    signed_at TEXT NOT NULL
);
-- The integrated tree size; written in the same transaction as the tiles and bundles.
CREATE TABLE ledger_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL
);
INSERT INTO ledger_state (id, size) VALUES (1, 0);
-- Leaf-hash lookup: the first 8 bytes of a leaf hash (as a signed integer) -> index.
-- Candidates are confirmed against the entry itself, so collisions cost a read, not a lie.
CREATE TABLE ledger_leaves (
    prefix BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    PRIMARY KEY (prefix, idx)
);
