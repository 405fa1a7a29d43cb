-- Transfer decisions record the country their agreement sends the data to
-- (`input.context.destination_country`); the index keeps it as `destination_country`:
-- NULL for decisions that are not transfers, '' for transfers under no agreement (and
-- for those recorded before decisions carried it).
ALTER TABLE console_decisions ADD COLUMN destination_country TEXT;
CREATE INDEX console_decisions_destination_country ON console_decisions (destination_country, idx) WHERE destination_country IS NOT NULL;
-- Rows indexed before this version lack it: the index is built again from the start of
-- the log. Rows are upserted, so those already there stay searchable meanwhile.
UPDATE console_progress SET indexed = 0;
