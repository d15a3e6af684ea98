-- Upgrade of a database created before raw_events became a rowid table.
-- Run by opm_store::analytics::sqlite only when raw_events is still the
-- first layout (WITHOUT ROWID, primary key (server, event_id)), inside the
-- migration's transaction: the old table is moved aside with its indexes
-- dropped, 001 creates the new table, and the rows are copied over in key
-- order before the old table is dropped.
ALTER TABLE raw_events RENAME TO raw_events_without_rowid;
DROP INDEX IF EXISTS raw_events_id;
DROP INDEX IF EXISTS raw_events_month;
