-- Data keys as a WITHOUT ROWID table keyed by subject id: a batch of ids (an export
-- page, in id order) finds its keys in one B-tree, on neighbouring pages, instead of
-- one primary-key index probe and one rowid lookup each.
CREATE TABLE data_keys_new (
    subject_id TEXT PRIMARY KEY,
    kek_id INTEGER NOT NULL,
    wrapped BLOB NOT NULL,
    -- Per-subject material of the subject's ledger reference; wiped with the key.
    ref_salt BLOB NOT NULL,
    destroyed INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO data_keys_new (subject_id, kek_id, wrapped, ref_salt, destroyed)
    SELECT subject_id, kek_id, wrapped, ref_salt, destroyed FROM data_keys;
DROP TABLE data_keys;
ALTER TABLE data_keys_new RENAME TO data_keys;
