-- Who holds a `registering` reservation: NULL for a gateway's registration, which a
-- gateway's start-up recovery may undo; 'migration' for a migration page, which only
-- the migration's own recovery finishes or undoes (it may be running right now).
ALTER TABLE subject_directory ADD COLUMN reserved_by TEXT;
