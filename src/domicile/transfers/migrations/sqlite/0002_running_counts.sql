ALTER TABLE transfer_counters ADD COLUMN total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE transfer_counters ADD COLUMN expired_through INTEGER NOT NULL DEFAULT 0;
CREATE TABLE transfer_buckets (
    scope TEXT NOT NULL,
    data_class TEXT NOT NULL,
    at_s INTEGER NOT NULL,
    subjects INTEGER NOT NULL,
    PRIMARY KEY (scope, data_class, at_s)
);
INSERT INTO transfer_buckets (scope, data_class, at_s, subjects)
    SELECT scope, data_class, last_at, COUNT(*) FROM transfer_subjects
    GROUP BY scope, data_class, last_at;
UPDATE transfer_counters SET total = (
    SELECT COUNT(*) FROM transfer_subjects s
    WHERE s.scope = transfer_counters.scope AND s.data_class = transfer_counters.data_class
);
