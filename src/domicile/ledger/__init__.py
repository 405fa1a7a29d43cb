"""Each region's append-only Merkle ledger: RFC 9162 hashing, C2SP notes, checkpoints and tiles."""
