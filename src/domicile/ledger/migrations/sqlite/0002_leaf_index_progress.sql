-- The leaf-hash index is built off the append path: this records how far it reaches.
CREATE TABLE ledger_leaf_progress (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    indexed INTEGER NOT NULL
);
INSERT INTO ledger_leaf_progress (id, indexed) VALUES (1, 0);
