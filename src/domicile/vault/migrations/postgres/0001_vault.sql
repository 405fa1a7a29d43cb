CREATE TABLE subjects (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('active', 'erased', 'relocated')),
    version INTEGER NOT NULL,
    catalog_version TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE fields (
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    name TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    PRIMARY KEY (subject_id, name)
);
