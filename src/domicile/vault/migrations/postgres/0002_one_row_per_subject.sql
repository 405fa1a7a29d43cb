-- A subject's sealed values move into its own row, as one JSON object of field name to
-- hex ciphertext: a read, a batch or an id range then reads one row per subject, not
-- one per field. Tombstones hold NULL.
ALTER TABLE subjects ADD COLUMN sealed TEXT;
UPDATE subjects SET sealed = COALESCE((
    SELECT json_object_agg(f.name, encode(f.sealed, 'hex'))::text FROM fields f
    WHERE f.subject_id = subjects.id
), '{}') WHERE state = 'active';
DROP TABLE fields;
