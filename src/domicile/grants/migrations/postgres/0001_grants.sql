CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    region TEXT NOT NULL,
    subjects TEXT NOT NULL,
    categories TEXT NOT NULL,
    purpose TEXT NOT NULL,
    justification TEXT NOT NULL,
    duration_seconds INTEGER NOT NULL,
    steps_required INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'revoked')),
    created_at TEXT NOT NULL,
    approved_at TEXT,
    expires_at TEXT,
    closed_at TEXT,
    closed_by TEXT
);
CREATE INDEX grants_requester ON grants (requester, region, state);
CREATE TABLE grant_steps (
    grant_id TEXT NOT NULL REFERENCES grants (id),
    approver TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('approve', 'deny')),
    at TEXT NOT NULL,
    PRIMARY KEY (grant_id, approver)
);
