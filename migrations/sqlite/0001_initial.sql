-- Relational store, SQLite. Times are milliseconds since the epoch
-- (BIGINT), identical to migrations/postgres, so one set of queries serves
-- both backends (opm_store::relational::sql).

CREATE TABLE IF NOT EXISTS servers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    ip_address TEXT NOT NULL,
    port INTEGER NOT NULL,
    token_hash TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'pending', 'disabled')),
    created_ms BIGINT NOT NULL,
    last_seen_ms BIGINT,
    UNIQUE (ip_address, port)
);
CREATE INDEX IF NOT EXISTS servers_token_hash ON servers (token_hash);

CREATE TABLE IF NOT EXISTS users (
    member_id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS identities (
    guid TEXT PRIMARY KEY,
    member_id BIGINT NOT NULL,
    verified BOOLEAN NOT NULL DEFAULT FALSE,
    linked_ms BIGINT NOT NULL,
    verified_ms BIGINT
);
CREATE INDEX IF NOT EXISTS identities_member ON identities (member_id);

CREATE TABLE IF NOT EXISTS login_tokens (
    token_hash TEXT PRIMARY KEY,
    member_id BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    used_ms BIGINT,
    used_guid TEXT,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS login_tokens_member ON login_tokens (member_id, created_ms);

CREATE TABLE IF NOT EXISTS teams (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    tag TEXT NOT NULL,
    owner_member_id BIGINT,
    created_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS team_members (
    team_id BIGINT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    member_id BIGINT NOT NULL,
    role TEXT NOT NULL,
    joined_ms BIGINT NOT NULL,
    PRIMARY KEY (team_id, member_id)
);

CREATE TABLE IF NOT EXISTS tournaments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    format TEXT NOT NULL,
    status TEXT NOT NULL,
    starts_ms BIGINT,
    created_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS tournament_teams (
    tournament_id BIGINT NOT NULL REFERENCES tournaments (id) ON DELETE CASCADE,
    team_id BIGINT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    seed INTEGER,
    PRIMARY KEY (tournament_id, team_id)
);

CREATE TABLE IF NOT EXISTS tournament_matches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tournament_id BIGINT NOT NULL REFERENCES tournaments (id) ON DELETE CASCADE,
    bracket TEXT NOT NULL,
    round INTEGER NOT NULL,
    position INTEGER NOT NULL,
    team_a BIGINT,
    team_b BIGINT,
    winner BIGINT,
    match_id TEXT,
    next_match BIGINT,
    scheduled_ms BIGINT,
    status TEXT NOT NULL,
    UNIQUE (tournament_id, bracket, round, position)
);

CREATE TABLE IF NOT EXISTS achievements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    pack TEXT NOT NULL,
    pack_version TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    category TEXT NOT NULL,
    tier INTEGER NOT NULL,
    points INTEGER NOT NULL,
    icon TEXT NOT NULL,
    metric TEXT NOT NULL,
    target BIGINT,
    is_hidden BOOLEAN NOT NULL,
    active BOOLEAN NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS achievements_pack ON achievements (pack);

-- Every (code, pack version) ever declared, as JSON.
CREATE TABLE IF NOT EXISTS achievement_versions (
    code TEXT NOT NULL,
    pack TEXT NOT NULL,
    pack_version TEXT NOT NULL,
    definition TEXT NOT NULL,
    recorded_ms BIGINT NOT NULL,
    PRIMARY KEY (code, pack, pack_version)
);

-- The unlock ledger: one row per (player, code), written once.
CREATE TABLE IF NOT EXISTS unlocks (
    player TEXT NOT NULL,
    code TEXT NOT NULL,
    pack TEXT NOT NULL,
    pack_version TEXT NOT NULL,
    unlocked_ms BIGINT NOT NULL,
    event_id BIGINT NOT NULL,
    match_id TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('live', 'backfill', 'admin')),
    PRIMARY KEY (player, code)
);
CREATE INDEX IF NOT EXISTS unlocks_time ON unlocks (unlocked_ms);
CREATE INDEX IF NOT EXISTS unlocks_code ON unlocks (code);

CREATE TABLE IF NOT EXISTS progress (
    player TEXT NOT NULL,
    code TEXT NOT NULL,
    current BIGINT NOT NULL,
    target BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (player, code)
);

CREATE TABLE IF NOT EXISTS plugin_state (
    pack TEXT NOT NULL,
    scope TEXT NOT NULL,
    instance TEXT NOT NULL,
    player TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('counter', 'blob', 'set')),
    counter BIGINT,
    data BLOB,
    PRIMARY KEY (pack, scope, instance, player, key)
);

CREATE TABLE IF NOT EXISTS pack_positions (
    pack TEXT NOT NULL,
    server TEXT NOT NULL,
    event_id BIGINT NOT NULL,
    PRIMARY KEY (pack, server)
);

CREATE TABLE IF NOT EXISTS plugin_failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pack TEXT NOT NULL,
    pack_version TEXT NOT NULL,
    server TEXT NOT NULL,
    event_id BIGINT,
    error TEXT NOT NULL,
    time_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS plugin_failures_pack ON plugin_failures (pack, time_ms);
