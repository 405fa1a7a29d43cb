-- The threshold counters move to a database of their own (component `thresholds`,
-- `domicile.transfers.counts`), so that counting a large export does not hold the
-- control schema's counter rows with the rest. The tables are kept under another name
-- (their key indexes too, so the new tables can take theirs) until
-- `move_legacy_counts` has copied them across, and dropped then.
DROP INDEX IF EXISTS transfer_subjects_window;
ALTER TABLE transfer_counters RENAME TO legacy_transfer_counters;
ALTER TABLE transfer_subjects RENAME TO legacy_transfer_subjects;
ALTER TABLE transfer_buckets RENAME TO legacy_transfer_buckets;
ALTER INDEX IF EXISTS transfer_counters_pkey RENAME TO legacy_transfer_counters_pkey;
ALTER INDEX IF EXISTS transfer_subjects_pkey RENAME TO legacy_transfer_subjects_pkey;
ALTER INDEX IF EXISTS transfer_buckets_pkey RENAME TO legacy_transfer_buckets_pkey;
