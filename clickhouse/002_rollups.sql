-- Rollups fed by materialized views on raw_events. Table and column names
-- are identical in the SQLite analytics schema (migrations/analytics-sqlite)
-- so the read queries are shared. Rules: opm_store::analytics::rows.
-- Reading: sum() the counters GROUP BY the key (rows collapse lazily), and
-- *Merge() the aggregate-state columns.
-- Each view fires once per inserted block; the batch writer inserts every
-- event id once (docs/storage.md, "Idempotency").

CREATE TABLE IF NOT EXISTS {db}.player_stats_daily (
    day Date,
    player_id String,
    player_name AggregateFunction(argMax, String, Int64),
    events UInt64,
    kills UInt64,
    deaths UInt64,
    headshots UInt64,
    suicides UInt64,
    team_kills UInt64,
    bash_kills UInt64,
    grenade_kills UInt64,
    bot_kills UInt64,
    damage_dealt Float64,
    damage_taken Float64,
    shots_fired UInt64,
    shots_hit UInt64,
    jumps UInt64,
    reloads UInt64,
    distance Float64,
    playtime_seconds Float64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (player_id, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_player_stats_daily_actor TO {db}.player_stats_daily AS
SELECT
    toDate(time) AS day,
    actor_guid AS player_id,
    argMaxState(actor_name, if(actor_name = '', toInt64(0), time_ms)) AS player_name,
    count() AS events,
    sum(kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid) AS kills,
    sum(kind = 'player_kill' AND (target_guid = '' OR target_guid = actor_guid)) AS deaths,
    sum(kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid AND headshot = 1) AS headshots,
    sum((kind = 'player_kill' AND (target_guid = '' OR target_guid = actor_guid)) OR kind = 'player_suicide') AS suicides,
    sum(kind = 'player_teamkill') AS team_kills,
    sum(kind = 'player_bash') AS bash_kills,
    sum(kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid AND grenade = 1) AS grenade_kills,
    sum(kind = 'bot_killed') AS bot_kills,
    sum(if(kind = 'damage' AND target_guid != actor_guid, toFloat64(damage), 0.)) AS damage_dealt,
    sum(kind = 'weapon_fire') AS shots_fired,
    sum(kind = 'weapon_hit') AS shots_hit,
    sum(kind = 'jump') AS jumps,
    sum(kind = 'reload') AS reloads,
    sum(moved) AS distance,
    sum(playtime) AS playtime_seconds,
    toFloat64(0) AS damage_taken
FROM {db}.raw_events
WHERE actor_guid != ''
GROUP BY day, player_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_player_stats_daily_target TO {db}.player_stats_daily AS
SELECT
    toDate(time) AS day,
    target_guid AS player_id,
    argMaxState(target_name, if(target_name = '', toInt64(0), time_ms)) AS player_name,
    count() AS events,
    sum(kind = 'player_kill') AS deaths,
    sum(actor_guid = '' AND kind IN ('player_kill', 'player_suicide')) AS suicides,
    sum(if(kind = 'damage', toFloat64(damage), 0.)) AS damage_taken,
    toUInt64(0) AS kills,
    toUInt64(0) AS headshots,
    toUInt64(0) AS team_kills,
    toUInt64(0) AS bash_kills,
    toUInt64(0) AS grenade_kills,
    toUInt64(0) AS bot_kills,
    toFloat64(0) AS damage_dealt,
    toUInt64(0) AS shots_fired,
    toUInt64(0) AS shots_hit,
    toUInt64(0) AS jumps,
    toUInt64(0) AS reloads,
    toFloat64(0) AS distance,
    toFloat64(0) AS playtime_seconds
FROM {db}.raw_events
WHERE target_guid != '' AND target_guid != actor_guid
GROUP BY day, player_id;

CREATE TABLE IF NOT EXISTS {db}.player_weapon_stats (
    day Date,
    player_id String,
    weapon String,
    events UInt64,
    kills UInt64,
    deaths UInt64,
    headshots UInt64,
    shots_fired UInt64,
    shots_hit UInt64,
    damage_dealt Float64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (player_id, weapon, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_player_weapon_stats_actor TO {db}.player_weapon_stats AS
SELECT
    toDate(time) AS day,
    actor_guid AS player_id,
    weapon,
    count() AS events,
    sum(kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid) AS kills,
    sum(kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid AND headshot = 1) AS headshots,
    sum(kind = 'weapon_fire') AS shots_fired,
    sum(kind = 'weapon_hit') AS shots_hit,
    sum(if(kind = 'damage' AND target_guid != actor_guid, toFloat64(damage), 0.)) AS damage_dealt,
    toUInt64(0) AS deaths
FROM {db}.raw_events
WHERE actor_guid != '' AND weapon != '' AND kind IN ('player_kill', 'weapon_fire', 'weapon_hit', 'damage')
GROUP BY day, player_id, weapon;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_player_weapon_stats_target TO {db}.player_weapon_stats AS
SELECT
    toDate(time) AS day,
    target_guid AS player_id,
    weapon,
    count() AS events,
    count() AS deaths,
    toUInt64(0) AS kills,
    toUInt64(0) AS headshots,
    toUInt64(0) AS shots_fired,
    toUInt64(0) AS shots_hit,
    toFloat64(0) AS damage_dealt
FROM {db}.raw_events
WHERE target_guid != '' AND target_guid != actor_guid AND weapon != '' AND kind = 'player_kill'
GROUP BY day, player_id, weapon;

CREATE TABLE IF NOT EXISTS {db}.player_map_stats (
    day Date,
    player_id String,
    map_name String,
    events UInt64,
    kills UInt64,
    deaths UInt64,
    headshots UInt64,
    damage_dealt Float64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (player_id, map_name, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_player_map_stats_actor TO {db}.player_map_stats AS
SELECT
    toDate(time) AS day,
    actor_guid AS player_id,
    map AS map_name,
    count() AS events,
    sum(kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid) AS kills,
    sum(kind = 'player_kill' AND (target_guid = '' OR target_guid = actor_guid)) AS deaths,
    sum(kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid AND headshot = 1) AS headshots,
    sum(if(kind = 'damage' AND target_guid != actor_guid, toFloat64(damage), 0.)) AS damage_dealt
FROM {db}.raw_events
WHERE actor_guid != '' AND map != ''
GROUP BY day, player_id, map_name;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_player_map_stats_target TO {db}.player_map_stats AS
SELECT
    toDate(time) AS day,
    target_guid AS player_id,
    map AS map_name,
    count() AS events,
    sum(kind = 'player_kill') AS deaths,
    toUInt64(0) AS kills,
    toUInt64(0) AS headshots,
    toFloat64(0) AS damage_dealt
FROM {db}.raw_events
WHERE target_guid != '' AND target_guid != actor_guid AND map != ''
GROUP BY day, player_id, map_name;

CREATE TABLE IF NOT EXISTS {db}.player_hitloc_stats (
    day Date,
    player_id String,
    hit_location String,
    events UInt64,
    hits UInt64,
    kills UInt64,
    damage_dealt Float64,
    hits_taken UInt64,
    deaths UInt64,
    damage_taken Float64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (player_id, hit_location, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_player_hitloc_stats_actor TO {db}.player_hitloc_stats AS
SELECT
    toDate(time) AS day,
    actor_guid AS player_id,
    hit_location,
    count() AS events,
    sum(kind = 'weapon_hit') AS hits,
    sum(kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid) AS kills,
    sum(if(kind = 'damage' AND target_guid != actor_guid, toFloat64(damage), 0.)) AS damage_dealt,
    toUInt64(0) AS hits_taken,
    toUInt64(0) AS deaths,
    toFloat64(0) AS damage_taken
FROM {db}.raw_events
WHERE actor_guid != '' AND hit_location != '' AND kind IN ('player_kill', 'weapon_hit', 'damage')
GROUP BY day, player_id, hit_location;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_player_hitloc_stats_target TO {db}.player_hitloc_stats AS
SELECT
    toDate(time) AS day,
    target_guid AS player_id,
    hit_location,
    count() AS events,
    sum(kind = 'weapon_hit') AS hits_taken,
    sum(kind = 'player_kill') AS deaths,
    sum(if(kind = 'damage', toFloat64(damage), 0.)) AS damage_taken,
    toUInt64(0) AS hits,
    toUInt64(0) AS kills,
    toFloat64(0) AS damage_dealt
FROM {db}.raw_events
WHERE target_guid != '' AND target_guid != actor_guid AND hit_location != '' AND kind IN ('player_kill', 'weapon_hit', 'damage')
GROUP BY day, player_id, hit_location;

CREATE TABLE IF NOT EXISTS {db}.heatmap_cells (
    day Date,
    map_name String,
    layer String,
    cell_x Int32,
    cell_y Int32,
    events UInt64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (map_name, layer, cell_x, cell_y, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_heatmap_kills TO {db}.heatmap_cells AS
SELECT
    toDate(time) AS day,
    map AS map_name,
    'kill' AS layer,
    toInt32(floor(actor_x / 100)) AS cell_x,
    toInt32(floor(actor_y / 100)) AS cell_y,
    count() AS events
FROM {db}.raw_events
WHERE kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid AND actor_has_pos = 1
GROUP BY day, map_name, cell_x, cell_y;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_heatmap_deaths TO {db}.heatmap_cells AS
SELECT
    toDate(time) AS day,
    map AS map_name,
    'death' AS layer,
    toInt32(floor(target_x / 100)) AS cell_x,
    toInt32(floor(target_y / 100)) AS cell_y,
    count() AS events
FROM {db}.raw_events
WHERE kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid AND target_has_pos = 1
GROUP BY day, map_name, cell_x, cell_y;

CREATE TABLE IF NOT EXISTS {db}.map_stats_daily (
    day Date,
    map_name String,
    events UInt64,
    kills UInt64,
    headshots UInt64,
    damage_dealt Float64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (map_name, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_map_stats_daily TO {db}.map_stats_daily AS
SELECT
    toDate(time) AS day,
    map AS map_name,
    count() AS events,
    sum(kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid) AS kills,
    sum(kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid AND headshot = 1) AS headshots,
    sum(if(kind = 'damage' AND target_guid != actor_guid, toFloat64(damage), 0.)) AS damage_dealt
FROM {db}.raw_events
WHERE map != ''
GROUP BY day, map_name;

CREATE TABLE IF NOT EXISTS {db}.match_summary (
    match_id String,
    server_id AggregateFunction(max, String),
    map_name AggregateFunction(max, String),
    game_type AggregateFunction(max, String),
    started_ms AggregateFunction(min, Int64),
    ended_ms AggregateFunction(max, Int64),
    max_round AggregateFunction(max, UInt32),
    events UInt64,
    kills UInt64
) ENGINE = SummingMergeTree()
ORDER BY match_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_match_summary TO {db}.match_summary AS
SELECT
    match_id,
    maxState(server) AS server_id,
    maxState(map) AS map_name,
    maxState(game_mode) AS game_type,
    minState(time_ms) AS started_ms,
    maxState(time_ms) AS ended_ms,
    maxState(round) AS max_round,
    count() AS events,
    sum(kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid) AS kills
FROM {db}.raw_events
WHERE match_id != ''
GROUP BY match_id;

CREATE TABLE IF NOT EXISTS {db}.match_players (
    match_id String,
    player_id String,
    player_name AggregateFunction(argMax, String, Int64),
    team AggregateFunction(argMax, String, Int64),
    events UInt64,
    kills UInt64,
    deaths UInt64,
    headshots UInt64,
    suicides UInt64,
    team_kills UInt64,
    damage_dealt Float64,
    damage_taken Float64
) ENGINE = SummingMergeTree()
ORDER BY (match_id, player_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_match_players_actor TO {db}.match_players AS
SELECT
    match_id,
    actor_guid AS player_id,
    argMaxState(actor_name, if(actor_name = '', toInt64(0), time_ms)) AS player_name,
    argMaxState(actor_team, if(actor_team = '', toInt64(0), time_ms)) AS team,
    count() AS events,
    sum(kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid) AS kills,
    sum(kind = 'player_kill' AND (target_guid = '' OR target_guid = actor_guid)) AS deaths,
    sum(kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid AND headshot = 1) AS headshots,
    sum((kind = 'player_kill' AND (target_guid = '' OR target_guid = actor_guid)) OR kind = 'player_suicide') AS suicides,
    sum(kind = 'player_teamkill') AS team_kills,
    sum(if(kind = 'damage' AND target_guid != actor_guid, toFloat64(damage), 0.)) AS damage_dealt,
    toFloat64(0) AS damage_taken
FROM {db}.raw_events
WHERE match_id != '' AND actor_guid != ''
GROUP BY match_id, player_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_match_players_target TO {db}.match_players AS
SELECT
    match_id,
    target_guid AS player_id,
    argMaxState(target_name, if(target_name = '', toInt64(0), time_ms)) AS player_name,
    argMaxState(target_team, if(target_team = '', toInt64(0), time_ms)) AS team,
    count() AS events,
    sum(kind = 'player_kill') AS deaths,
    sum(actor_guid = '' AND kind IN ('player_kill', 'player_suicide')) AS suicides,
    sum(if(kind = 'damage', toFloat64(damage), 0.)) AS damage_taken,
    toUInt64(0) AS kills,
    toUInt64(0) AS headshots,
    toUInt64(0) AS team_kills,
    toFloat64(0) AS damage_dealt
FROM {db}.raw_events
WHERE match_id != '' AND target_guid != '' AND target_guid != actor_guid
GROUP BY match_id, player_id;

CREATE TABLE IF NOT EXISTS {db}.server_activity (
    hour DateTime('UTC'),
    server_id String,
    events UInt64,
    kills UInt64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (server_id, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_server_activity TO {db}.server_activity AS
SELECT
    toStartOfHour(time) AS hour,
    server AS server_id,
    count() AS events,
    sum(kind = 'player_kill' AND actor_guid != '' AND target_guid != '' AND target_guid != actor_guid) AS kills
FROM {db}.raw_events
WHERE server != ''
GROUP BY hour, server_id
