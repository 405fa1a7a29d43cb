-- Cosignatures of witnesses (C2SP tlog-cosignature) on this log's checkpoints.
CREATE TABLE ledger_cosignatures (
    size BIGINT NOT NULL,
    witness TEXT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (size, witness)
);
