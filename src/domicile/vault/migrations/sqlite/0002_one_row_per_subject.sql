-- A subject's sealed values move into its own row, as one JSON object of field name to
-- hex ciphertext: a read, a batch or an id range then seeks one row per subject, not
-- one per field (each through an index and then the table). Tombstones hold NULL.
ALTER TABLE subjects ADD COLUMN sealed TEXT;
UPDATE subjects SET sealed = (
    SELECT json_group_object(f.name, lower(hex(f.sealed))) FROM fields f
    WHERE f.subject_id = subjects.id
) WHERE state = 'active';
DROP TABLE fields;
