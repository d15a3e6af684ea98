-- raw_events kept a unique index on (server, event_id). Nothing reads by
-- it, and the writer already inserts a row only above its server's
-- high-water mark, moved in the same transaction, so the pair is a key by
-- construction. Maintaining the index was a B-tree seek and insert per
-- raw row, over a tenth of the analytics writer's work. Idempotent.
DROP INDEX IF EXISTS raw_events_id;
