-- Highest stored event id per server, written after every successful
-- insert. Kept apart from raw_events so the mark survives retention
-- dropping every partition of a quiet server. Read with max(event_id).
CREATE TABLE IF NOT EXISTS {db}.high_water (
    server String,
    event_id UInt64
) ENGINE = ReplacingMergeTree(event_id)
ORDER BY server
