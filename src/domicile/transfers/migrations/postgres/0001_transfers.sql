CREATE TABLE transfer_destinations (
    entity TEXT PRIMARY KEY,
    country TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('trusted', 'untrusted', 'suspended')),
    note TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE TABLE transfer_agreements (
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    destination_entity TEXT NOT NULL,
    destination_country TEXT NOT NULL,
    purpose TEXT NOT NULL,
    legal_basis TEXT NOT NULL,
    tia_reference TEXT NOT NULL,
    fields TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    valid_until TEXT NOT NULL,
    max_subjects_per_request BIGINT,
    max_subjects_per_year BIGINT,
    terminated INTEGER NOT NULL CHECK (terminated IN (0, 1)),
    catalog_version TEXT NOT NULL,
    catalog_digest TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE INDEX transfer_agreements_destination
    ON transfer_agreements (destination_entity, destination_country, purpose);
CREATE TABLE transfer_counters (
    scope TEXT NOT NULL,
    data_class TEXT NOT NULL,
    PRIMARY KEY (scope, data_class)
);
CREATE TABLE transfer_subjects (
    scope TEXT NOT NULL,
    data_class TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    last_at BIGINT NOT NULL,
    PRIMARY KEY (scope, data_class, subject_ref)
);
CREATE INDEX transfer_subjects_window ON transfer_subjects (scope, data_class, last_at);
