CREATE TABLE subject_directory (
    id TEXT PRIMARY KEY,
    home_region TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('registering', 'active', 'erased')),
    moving_to TEXT,
    moved_from TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX subject_directory_pending ON subject_directory (state)
    WHERE state = 'registering' OR moving_to IS NOT NULL OR moved_from IS NOT NULL;
