CREATE TABLE principals (
    id TEXT PRIMARY KEY,
    entity TEXT NOT NULL,
    country TEXT NOT NULL,
    roles TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals (id),
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
