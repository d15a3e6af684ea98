-- Leaderboards read one small rollup: per player and calendar period
-- bucket (all time; the UTC day, ISO week from Monday, month and year,
-- each named by its first day; '' for all time), maintained with the
-- other rollups in the insert's transaction. One row per key here, so a
-- leaderboard is a scan of one bucket (at most one row per player)
-- without GROUP BY; ClickHouse (clickhouse/004_period_leaderboards.sql)
-- sums the same rows.
CREATE TABLE IF NOT EXISTS player_period_stats (
    period TEXT NOT NULL,            -- all | day | week | month | year
    bucket TEXT NOT NULL,            -- first day of the period, '' for all
    player_id TEXT NOT NULL,
    player_name TEXT NOT NULL DEFAULT '',
    name_ms INTEGER NOT NULL DEFAULT 0,
    events INTEGER NOT NULL DEFAULT 0,
    kills INTEGER NOT NULL DEFAULT 0,
    deaths INTEGER NOT NULL DEFAULT 0,
    headshots INTEGER NOT NULL DEFAULT 0,
    shots_fired INTEGER NOT NULL DEFAULT 0,
    shots_hit INTEGER NOT NULL DEFAULT 0,
    damage_dealt REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (period, bucket, player_id)
) WITHOUT ROWID;

-- A store created before this table: fill it once from the daily rollup,
-- which has every count it needs. Runs only while the table is empty.
INSERT INTO player_period_stats (period, bucket, player_id, player_name, name_ms, events, kills, deaths,
    headshots, shots_fired, shots_hit, damage_dealt)
SELECT period, bucket, player_id, player_name, max(name_ms), sum(events), sum(kills), sum(deaths),
    sum(headshots), sum(shots_fired), sum(shots_hit), sum(damage_dealt)
FROM (
    SELECT 'all' AS period, '' AS bucket, d.* FROM player_stats_daily d
    UNION ALL SELECT 'day', day, d.* FROM player_stats_daily d
    UNION ALL SELECT 'week', date(day, '-6 days', 'weekday 1'), d.* FROM player_stats_daily d
    UNION ALL SELECT 'month', substr(day, 1, 7) || '-01', d.* FROM player_stats_daily d
    UNION ALL SELECT 'year', substr(day, 1, 4) || '-01-01', d.* FROM player_stats_daily d
)
WHERE NOT EXISTS (SELECT 1 FROM player_period_stats)
GROUP BY period, bucket, player_id;

-- Nothing reads raw events by match, and leaderboards no longer filter the
-- daily rollup by day: both indexes only slowed every insert down.
DROP INDEX IF EXISTS raw_events_match;
DROP INDEX IF EXISTS player_stats_daily_day;
