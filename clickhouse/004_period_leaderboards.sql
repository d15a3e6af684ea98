-- Leaderboards read one small rollup: per player and calendar period
-- bucket (all time; the UTC day, ISO week from Monday, month and year,
-- each named by its first day as text; '' for all time). The SQLite
-- schema (migrations/analytics-sqlite/002_period_leaderboards.sql) has
-- the same table. Read with sum() / argMaxMerge() GROUP BY player_id
-- within one (period, bucket).
-- A store created before this table is filled once from
-- player_stats_daily by opm_store::analytics::clickhouse (migrate), after
-- the table and before the views exist.
CREATE TABLE IF NOT EXISTS {db}.player_period_stats (
    period String,
    bucket String,
    player_id String,
    player_name AggregateFunction(argMax, String, Int64),
    events UInt64,
    kills UInt64,
    deaths UInt64,
    headshots UInt64,
    shots_fired UInt64,
    shots_hit UInt64,
    damage_dealt Float64
) ENGINE = SummingMergeTree()
ORDER BY (period, bucket, player_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_player_period_stats_actor TO {db}.player_period_stats AS
SELECT
    period,
    bucket,
    actor_guid AS player_id,
    argMaxState(actor_name, if(actor_name = '', toInt64(0), time_ms)) AS player_name,
    count() AS events,
    sum(kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid) AS kills,
    sum(kind = 'player_kill' AND (target_guid = '' OR target_guid = actor_guid)) AS deaths,
    sum(kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid AND headshot = 1) AS headshots,
    sum(kind = 'weapon_fire') AS shots_fired,
    sum(kind = 'weapon_hit') AS shots_hit,
    sum(if(kind = 'damage' AND target_guid != actor_guid, toFloat64(damage), 0.)) AS damage_dealt
FROM {db}.raw_events
ARRAY JOIN
    ['all', 'day', 'week', 'month', 'year'] AS period,
    ['', toString(toDate(time)), toString(toMonday(time)), toString(toStartOfMonth(time)), toString(toStartOfYear(time))] AS bucket
WHERE actor_guid != ''
GROUP BY period, bucket, player_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_player_period_stats_target TO {db}.player_period_stats AS
SELECT
    period,
    bucket,
    target_guid AS player_id,
    argMaxState(target_name, if(target_name = '', toInt64(0), time_ms)) AS player_name,
    count() AS events,
    sum(kind = 'player_kill') AS deaths,
    toUInt64(0) AS kills,
    toUInt64(0) AS headshots,
    toUInt64(0) AS shots_fired,
    toUInt64(0) AS shots_hit,
    toFloat64(0) AS damage_dealt
FROM {db}.raw_events
ARRAY JOIN
    ['all', 'day', 'week', 'month', 'year'] AS period,
    ['', toString(toDate(time)), toString(toMonday(time)), toString(toStartOfMonth(time)), toString(toStartOfYear(time))] AS bucket
WHERE target_guid != '' AND target_guid != actor_guid
GROUP BY period, bucket, player_id
