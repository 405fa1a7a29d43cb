-- The counted refs as a WITHOUT ROWID table: one B-tree keyed by (scope, data_class,
-- subject_ref) instead of a rowid table and its primary-key index. An export counts
-- its refs in sorted chunks, so the upserts walk that one tree in order, and the
-- window index, whose entries now end in the ref rather than a rowid, in order too.
CREATE TABLE transfer_subjects_new (
    scope TEXT NOT NULL,
    data_class TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (scope, data_class, subject_ref)
) WITHOUT ROWID;
INSERT INTO transfer_subjects_new (scope, data_class, subject_ref, last_at)
    SELECT scope, data_class, subject_ref, last_at FROM transfer_subjects;
DROP TABLE transfer_subjects;
ALTER TABLE transfer_subjects_new RENAME TO transfer_subjects;
CREATE INDEX transfer_subjects_window ON transfer_subjects (scope, data_class, last_at);
