-- Embedded analytics store: the same logical tables as clickhouse/, with the
-- same rollup table and column names, so read queries are shared. Rollups
-- are maintained by opm_store::analytics::sqlite in the insert's own
-- transaction, only for events that were actually new.
-- Aggregate-state columns of ClickHouse are plain values here; "last name"
-- and "last team" carry the time they were seen (name_ms, team_ms).

CREATE TABLE IF NOT EXISTS raw_events (
    server TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    month INTEGER NOT NULL,          -- YYYYMM: the retention unit, like a ClickHouse partition
    time_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    type_name TEXT NOT NULL,
    game_time_ms INTEGER,
    session TEXT NOT NULL,
    match_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    map TEXT NOT NULL,
    game_mode TEXT NOT NULL,
    actor_guid TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    actor_smf_id INTEGER NOT NULL,
    actor_team TEXT NOT NULL,
    actor_has_pos INTEGER NOT NULL,
    actor_x REAL NOT NULL,
    actor_y REAL NOT NULL,
    actor_z REAL NOT NULL,
    actor_pitch REAL NOT NULL,
    actor_yaw REAL NOT NULL,
    actor_stance TEXT NOT NULL,
    actor_health INTEGER,
    actor_life INTEGER NOT NULL,
    target_guid TEXT NOT NULL,
    target_name TEXT NOT NULL,
    target_smf_id INTEGER NOT NULL,
    target_team TEXT NOT NULL,
    target_has_pos INTEGER NOT NULL,
    target_x REAL NOT NULL,
    target_y REAL NOT NULL,
    target_z REAL NOT NULL,
    target_pitch REAL NOT NULL,
    target_yaw REAL NOT NULL,
    target_stance TEXT NOT NULL,
    target_health INTEGER,
    target_life INTEGER NOT NULL,
    weapon TEXT NOT NULL,
    means_of_death TEXT NOT NULL,
    hit_location TEXT NOT NULL,
    damage REAL NOT NULL,
    distance REAL NOT NULL,
    headshot INTEGER NOT NULL,
    grenade INTEGER NOT NULL,
    moved REAL NOT NULL,
    playtime REAL NOT NULL,
    extra TEXT NOT NULL,             -- JSON array of [name, value] pairs, in sent order
    raw TEXT NOT NULL
);
-- A rowid table: rows append in arrival order instead of being spread over
-- one insertion point per server (wide rows split pages at each of them).
-- (server, event_id) is a key by construction: a row is inserted only
-- above its server's high-water mark, which moves in the same transaction
-- (004 dropped the unique index that used to enforce it a second time).
CREATE INDEX IF NOT EXISTS raw_events_month ON raw_events (month);

CREATE TABLE IF NOT EXISTS player_stats_daily (
    day TEXT NOT NULL,
    player_id TEXT NOT NULL,
    player_name TEXT NOT NULL DEFAULT '',
    name_ms INTEGER NOT NULL DEFAULT 0,
    events INTEGER NOT NULL DEFAULT 0,
    kills INTEGER NOT NULL DEFAULT 0,
    deaths INTEGER NOT NULL DEFAULT 0,
    headshots INTEGER NOT NULL DEFAULT 0,
    suicides INTEGER NOT NULL DEFAULT 0,
    team_kills INTEGER NOT NULL DEFAULT 0,
    bash_kills INTEGER NOT NULL DEFAULT 0,
    grenade_kills INTEGER NOT NULL DEFAULT 0,
    bot_kills INTEGER NOT NULL DEFAULT 0,
    damage_dealt REAL NOT NULL DEFAULT 0,
    damage_taken REAL NOT NULL DEFAULT 0,
    shots_fired INTEGER NOT NULL DEFAULT 0,
    shots_hit INTEGER NOT NULL DEFAULT 0,
    jumps INTEGER NOT NULL DEFAULT 0,
    reloads INTEGER NOT NULL DEFAULT 0,
    distance REAL NOT NULL DEFAULT 0,
    playtime_seconds REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (player_id, day)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS player_weapon_stats (
    day TEXT NOT NULL,
    player_id TEXT NOT NULL,
    weapon TEXT NOT NULL,
    events INTEGER NOT NULL DEFAULT 0,
    kills INTEGER NOT NULL DEFAULT 0,
    deaths INTEGER NOT NULL DEFAULT 0,
    headshots INTEGER NOT NULL DEFAULT 0,
    shots_fired INTEGER NOT NULL DEFAULT 0,
    shots_hit INTEGER NOT NULL DEFAULT 0,
    damage_dealt REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (player_id, weapon, day)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS player_map_stats (
    day TEXT NOT NULL,
    player_id TEXT NOT NULL,
    map_name TEXT NOT NULL,
    events INTEGER NOT NULL DEFAULT 0,
    kills INTEGER NOT NULL DEFAULT 0,
    deaths INTEGER NOT NULL DEFAULT 0,
    headshots INTEGER NOT NULL DEFAULT 0,
    damage_dealt REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (player_id, map_name, day)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS player_hitloc_stats (
    day TEXT NOT NULL,
    player_id TEXT NOT NULL,
    hit_location TEXT NOT NULL,
    events INTEGER NOT NULL DEFAULT 0,
    hits INTEGER NOT NULL DEFAULT 0,
    kills INTEGER NOT NULL DEFAULT 0,
    damage_dealt REAL NOT NULL DEFAULT 0,
    hits_taken INTEGER NOT NULL DEFAULT 0,
    deaths INTEGER NOT NULL DEFAULT 0,
    damage_taken REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (player_id, hit_location, day)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS heatmap_cells (
    day TEXT NOT NULL,
    map_name TEXT NOT NULL,
    layer TEXT NOT NULL,
    cell_x INTEGER NOT NULL,
    cell_y INTEGER NOT NULL,
    events INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (map_name, layer, cell_x, cell_y, day)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS map_stats_daily (
    day TEXT NOT NULL,
    map_name TEXT NOT NULL,
    events INTEGER NOT NULL DEFAULT 0,
    kills INTEGER NOT NULL DEFAULT 0,
    headshots INTEGER NOT NULL DEFAULT 0,
    damage_dealt REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (map_name, day)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS match_summary (
    match_id TEXT PRIMARY KEY,
    server_id TEXT NOT NULL DEFAULT '',
    map_name TEXT NOT NULL DEFAULT '',
    game_type TEXT NOT NULL DEFAULT '',
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER NOT NULL,
    max_round INTEGER NOT NULL DEFAULT 0,
    events INTEGER NOT NULL DEFAULT 0,
    kills INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS match_summary_started ON match_summary (started_ms);

CREATE TABLE IF NOT EXISTS match_players (
    match_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    player_name TEXT NOT NULL DEFAULT '',
    name_ms INTEGER NOT NULL DEFAULT 0,
    team TEXT NOT NULL DEFAULT '',
    team_ms INTEGER NOT NULL DEFAULT 0,
    events INTEGER NOT NULL DEFAULT 0,
    kills INTEGER NOT NULL DEFAULT 0,
    deaths INTEGER NOT NULL DEFAULT 0,
    headshots INTEGER NOT NULL DEFAULT 0,
    suicides INTEGER NOT NULL DEFAULT 0,
    team_kills INTEGER NOT NULL DEFAULT 0,
    damage_dealt REAL NOT NULL DEFAULT 0,
    damage_taken REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (match_id, player_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS match_players_player ON match_players (player_id);

CREATE TABLE IF NOT EXISTS server_activity (
    hour TEXT NOT NULL,
    server_id TEXT NOT NULL,
    events INTEGER NOT NULL DEFAULT 0,
    kills INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (server_id, hour)
) WITHOUT ROWID;

-- Highest stored event id per server: the idempotency high-water mark.
CREATE TABLE IF NOT EXISTS high_water (
    server TEXT PRIMARY KEY,
    event_id INTEGER NOT NULL
) WITHOUT ROWID;
