-- Raw events: every canonical column of opm_model::Event, the original
-- object (`raw`) and the fields without a column (`extra_keys`/`extra_values`).
-- Keyed by (server, event_id): the host-assigned id makes a re-insert of
-- the same event a duplicate key that ReplacingMergeTree collapses, and the
-- batch writer never re-inserts ids it already stored (docs/storage.md).
-- Portable to ClickHouse 18.16: DateTime + milliseconds column, no TTL
-- (retention drops monthly partitions), no LowCardinality.
CREATE TABLE IF NOT EXISTS {db}.raw_events (
    event_id UInt64,
    server String,
    time DateTime('UTC'),
    ms UInt16,
    time_ms Int64,
    kind String,
    type_name String,
    game_time_ms Nullable(Int64),
    session String,
    match_id String,
    round UInt32,
    map String,
    game_mode String,
    actor_guid String,
    actor_name String,
    actor_smf_id UInt64,
    actor_team String,
    actor_has_pos UInt8,
    actor_x Float32,
    actor_y Float32,
    actor_z Float32,
    actor_pitch Float32,
    actor_yaw Float32,
    actor_stance String,
    actor_health Nullable(Int32),
    actor_life UInt32,
    target_guid String,
    target_name String,
    target_smf_id UInt64,
    target_team String,
    target_has_pos UInt8,
    target_x Float32,
    target_y Float32,
    target_z Float32,
    target_pitch Float32,
    target_yaw Float32,
    target_stance String,
    target_health Nullable(Int32),
    target_life UInt32,
    weapon String,
    means_of_death String,
    hit_location String,
    damage Float32,
    distance Float32,
    -- derived by the host (opm_store::analytics::rows), one definition for all backends
    headshot UInt8,
    grenade UInt8,
    moved Float64,
    playtime Float64,
    extra_keys Array(String),
    extra_values Array(String),
    raw String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (server, event_id);

-- Applied migrations, for `opm-stats migrate` to report.
CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime('UTC')
) ENGINE = ReplacingMergeTree()
ORDER BY version;
