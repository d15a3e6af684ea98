//! The write side of the embedded analytics store: one SQLite connection
//! on its own thread, through `rusqlite`.
//!
//! Why a thread of its own and not sqlx: a batch is a thousand raw rows of
//! 49 values plus a few hundred rollup upserts. Through sqlx every value
//! was copied into an owned argument and every statement crossed to the
//! driver's worker thread and back; here the values are bound straight
//! from the events and the statements run where the rows are built, off
//! the async runtime. The connection's page cache stays warm because it
//! is the only one that writes (SQLite drops a connection's cache whenever
//! another connection has written).

use foldhash::HashMap;
use foldhash::HashMapExt as _;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use opm_model::{Event, Participant, Str};
use rusqlite::{Connection, Statement, Transaction, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::super::InsertReport;
use super::super::rows;
use super::deltas::Deltas;
use crate::error::StoreError;
use crate::time;

const B: &str = "sqlite";

/// Page cache of the writer, in KiB (SQLite's negative `cache_size`): the
/// rollup pages a batch updates stay in memory between batches instead of
/// being re-read from the file.
const WRITER_CACHE_KIB: i64 = 256 * 1024;

/// Size the write-ahead log is cut back to when it restarts. The log is
/// rewritten from its start after every complete fold; a log file that
/// keeps its size is overwritten in place, while one that grows makes the
/// kernel allocate and zero new blocks for every frame (a quarter of the
/// writer's time when the log never restarted). Cycles under `loadgen`
/// run B write tens of MiB, so this keeps them in place and still bounds
/// the file after a burst.
const WAL_KEEP_BYTES: i64 = 256 * 1024 * 1024;

pub(super) fn err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::SystemIoFailure
                    | C::DiskFull
                    | C::CannotOpen
            ) =>
        {
            StoreError::Unavailable {
                backend: B,
                message: e.to_string(),
            }
        }
        _ => StoreError::Rejected {
            backend: B,
            message: e.to_string(),
        },
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable {
        backend: B,
        message: "analytics writer thread stopped".into(),
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Handle to the writer thread; the thread ends when the handle drops.
pub(super) struct WriterThread {
    jobs: mpsc::Sender<Job>,
}

impl WriterThread {
    /// Opens the database on a new thread (named `name`) and keeps the
    /// connection there.
    pub async fn open(path: &Path, name: &str) -> Result<WriterThread, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let (jobs, queue) = mpsc::channel::<Job>();
        let (opened_tx, opened) = oneshot::channel();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                opm_model::sched::enter_background();
                let mut conn = match open_connection(&path) {
                    Ok(c) => {
                        let _ = opened_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                for job in queue {
                    // A panicking job drops its reply (the caller sees the
                    // writer as unavailable and retries) and rolls back its
                    // transaction; the thread carries on.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn)));
                }
            })?;
        opened.await.map_err(|_| stopped())??;
        Ok(WriterThread { jobs })
    }

    /// Runs `f` on the writer thread with its connection.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = reply.send(f(conn));
            }))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Queues `f` on the thread without waiting for it.
    pub fn detach(
        &self,
        f: impl FnOnce(&mut Connection) + Send + 'static,
    ) -> Result<(), StoreError> {
        self.jobs.send(Box::new(f)).map_err(|_| stopped())
    }
}

/// WAL with `synchronous = NORMAL` is durable against a crash of this
/// process; `sync` (a checkpoint) covers power loss. The writer never
/// checkpoints on its own (`wal_autocheckpoint = 0`): a checkpoint inside
/// a commit stalls the insert that triggered it (page copies and two
/// fsyncs), so the store checkpoints from `sync` (docs/storage.md,
/// "Durability").
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    crate::sqlite::configure_library();
    let conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Config(format!(
            "analytics database {} cannot use write-ahead logging (journal mode {mode})",
            path.display()
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{WRITER_CACHE_KIB}; PRAGMA wal_autocheckpoint = 0;
         PRAGMA journal_size_limit = {WAL_KEEP_BYTES};"
    ))
    .map_err(err)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

const SCHEMA: &str =
    include_str!("../../../../../migrations/analytics-sqlite/001_raw_and_rollups.sql");
/// Applied after `SCHEMA`; idempotent.
const PERIODS: &str =
    include_str!("../../../../../migrations/analytics-sqlite/002_period_leaderboards.sql");
/// Moves a `raw_events` table of the first layout aside; `SCHEMA` then
/// creates the current one and `RAW_EVENTS_COPY` fills it.
const RAW_EVENTS_ASIDE: &str =
    include_str!("../../../../../migrations/analytics-sqlite/003_raw_events_rowid.sql");
const RAW_EVENTS_COPY: &str =
    "INSERT INTO raw_events SELECT * FROM raw_events_without_rowid ORDER BY server, event_id;
    DROP TABLE raw_events_without_rowid;";

/// Creates or upgrades the schema; safe to run on every open.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    // The first layout kept raw events in a WITHOUT ROWID table keyed by
    // (server, event_id); it is copied into the rowid table once.
    let first_layout: bool = tx
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master
             WHERE type = 'table' AND name = 'raw_events' AND sql LIKE '%WITHOUT ROWID%'",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    if first_layout {
        tracing::info!("analytics: moving raw events to the rowid layout (once)");
        tx.execute_batch(RAW_EVENTS_ASIDE).map_err(err)?;
    }
    tx.execute_batch(SCHEMA).map_err(err)?;
    if first_layout {
        tx.execute_batch(RAW_EVENTS_COPY).map_err(err)?;
    }
    tx.execute_batch(PERIODS).map_err(err)?;
    tx.commit().map_err(err)
}

/// What a checkpoint did, in WAL frames (pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Checkpointed {
    /// Another checkpoint held the lock; nothing was copied.
    pub busy: bool,
    /// Frames in the log.
    pub log: i64,
    /// Frames of the log now in the database file.
    pub copied: i64,
}

impl Checkpointed {
    /// Frames still only in the log.
    pub fn behind(&self) -> i64 {
        (self.log - self.copied).max(0)
    }
}

/// Copies the write-ahead log into the database file (fsyncing both) as
/// far as readers allow.
pub(super) fn checkpoint(conn: &mut Connection) -> Result<Checkpointed, StoreError> {
    let done = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok(Checkpointed {
                busy: r.get::<_, i64>(0)? != 0,
                log: r.get(1)?,
                copied: r.get(2)?,
            })
        })
        .map_err(err)?;
    if done.busy {
        tracing::debug!("analytics checkpoint could not take its lock; next sync retries");
    }
    Ok(done)
}

/// Stores the events above their server's high-water mark with their
/// rollup deltas and the new marks, in one transaction.
pub(super) fn insert(conn: &mut Connection, events: &[Event]) -> Result<InsertReport, StoreError> {
    let mut order: Vec<&Event> = events.iter().collect();
    order.sort_by(|a, b| (&*a.server, a.id).cmp(&(&*b.server, b.id)));
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let mut marks: HashMap<Str, u64> = HashMap::new();
    {
        let mut stmt = tx
            .prepare_cached("SELECT event_id FROM high_water WHERE server = ?1")
            .map_err(err)?;
        for e in &order {
            if !marks.contains_key(&e.server) {
                let mark: Option<i64> = stmt
                    .query_row([&*e.server], |r| r.get(0))
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })
                    .map_err(err)?;
                marks.insert(e.server.clone(), mark.unwrap_or(0) as u64);
            }
        }
    }
    let mut report = InsertReport::default();
    let mut deltas = Deltas::default();
    {
        let mut raw = tx.prepare_cached(RAW_INSERT).map_err(err)?;
        for e in order {
            let mark = marks.get_mut(&e.server).expect("loaded above");
            if e.id == 0 || e.id <= *mark {
                report.skipped += 1;
                continue;
            }
            *mark = e.id;
            // Above the high-water mark, committed in the same transaction
            // as the rows, nothing can exist yet: a conflict here would
            // mean the invariant broke, and the plain INSERT fails the
            // batch loudly.
            bind_raw(&mut raw, e)?;
            raw.raw_execute().map_err(err)?;
            report.inserted += 1;
            deltas.add(e);
        }
    }
    apply(&tx, &deltas)?;
    {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO high_water (server, event_id) VALUES (?1, ?2)
                 ON CONFLICT (server) DO UPDATE SET event_id = max(event_id, excluded.event_id)",
            )
            .map_err(err)?;
        for (server, mark) in &marks {
            stmt.execute(params![&**server, *mark as i64])
                .map_err(err)?;
        }
    }
    tx.commit().map_err(err)?;
    let mut high_water: Vec<(String, u64)> =
        marks.into_iter().map(|(s, m)| (s.to_string(), m)).collect();
    high_water.sort();
    report.high_water = high_water;
    Ok(report)
}

const RAW_INSERT: &str = "INSERT INTO raw_events (server, event_id, month, time_ms, kind, type_name, game_time_ms, session, match_id, round, map, game_mode,
    actor_guid, actor_name, actor_smf_id, actor_team, actor_has_pos, actor_x, actor_y, actor_z, actor_pitch, actor_yaw, actor_stance, actor_health, actor_life,
    target_guid, target_name, target_smf_id, target_team, target_has_pos, target_x, target_y, target_z, target_pitch, target_yaw, target_stance, target_health, target_life,
    weapon, means_of_death, hit_location, damage, distance, headshot, grenade, moved, playtime, extra, raw)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,
    ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25,
    ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38,
    ?39, ?40, ?41, ?42, ?43, ?44, ?45, ?46, ?47, ?48, ?49)";

fn bind_participant(
    stmt: &mut Statement<'_>,
    first: usize,
    p: &Option<Participant>,
) -> rusqlite::Result<()> {
    let none = Participant::default();
    let p = p.as_ref().unwrap_or(&none);
    let pos = p.position.unwrap_or_default();
    stmt.raw_bind_parameter(first, &*p.guid)?;
    stmt.raw_bind_parameter(first + 1, &*p.name)?;
    stmt.raw_bind_parameter(first + 2, p.smf_id.unwrap_or(0) as i64)?;
    stmt.raw_bind_parameter(first + 3, p.team.as_str())?;
    stmt.raw_bind_parameter(first + 4, p.position.is_some() as i64)?;
    stmt.raw_bind_parameter(first + 5, pos.x as f64)?;
    stmt.raw_bind_parameter(first + 6, pos.y as f64)?;
    stmt.raw_bind_parameter(first + 7, pos.z as f64)?;
    stmt.raw_bind_parameter(first + 8, p.pitch as f64)?;
    stmt.raw_bind_parameter(first + 9, p.yaw as f64)?;
    stmt.raw_bind_parameter(first + 10, p.stance.as_str())?;
    stmt.raw_bind_parameter(first + 11, p.health.map(|h| h as i64))?;
    stmt.raw_bind_parameter(first + 12, p.life as i64)
}

fn bind_raw(stmt: &mut Statement<'_>, e: &Event) -> Result<(), StoreError> {
    let extra = if e.extra.is_empty() {
        String::from("[]")
    } else {
        serde_json::to_string(
            &e.extra
                .iter()
                .map(|(k, v)| [&**k, &**v])
                .collect::<Vec<_>>(),
        )
        .unwrap_or_else(|_| "[]".into())
    };
    (|| {
        stmt.raw_bind_parameter(1, &*e.server)?;
        stmt.raw_bind_parameter(2, e.id as i64)?;
        stmt.raw_bind_parameter(3, time::month_id(e.time_ms) as i64)?;
        stmt.raw_bind_parameter(4, e.time_ms)?;
        stmt.raw_bind_parameter(5, e.kind.as_str())?;
        stmt.raw_bind_parameter(6, &*e.type_name)?;
        stmt.raw_bind_parameter(7, e.game_time_ms)?;
        stmt.raw_bind_parameter(8, &*e.session)?;
        stmt.raw_bind_parameter(9, &*e.match_id)?;
        stmt.raw_bind_parameter(10, e.round as i64)?;
        stmt.raw_bind_parameter(11, &*e.map)?;
        stmt.raw_bind_parameter(12, &*e.game_mode)?;
        bind_participant(stmt, 13, &e.actor)?;
        bind_participant(stmt, 26, &e.target)?;
        stmt.raw_bind_parameter(39, &*e.weapon)?;
        stmt.raw_bind_parameter(40, &*e.means_of_death)?;
        stmt.raw_bind_parameter(41, &*e.hit_location)?;
        stmt.raw_bind_parameter(42, e.damage as f64)?;
        stmt.raw_bind_parameter(43, e.distance as f64)?;
        stmt.raw_bind_parameter(
            44,
            (rows::is_kill(e) && rows::is_headshot(&e.hit_location)) as i64,
        )?;
        stmt.raw_bind_parameter(45, rows::is_grenade(e) as i64)?;
        stmt.raw_bind_parameter(46, rows::moved(e))?;
        stmt.raw_bind_parameter(47, rows::playtime(e))?;
        stmt.raw_bind_parameter(48, extra.as_str())?;
        stmt.raw_bind_parameter(49, e.raw.as_deref().unwrap_or(""))
    })()
    .map_err(err)
}

/// `INSERT INTO {head} VALUES (?1, …) {tail}` for a row of `width` values.
fn upsert_sql(head: &str, tail: &str, width: usize) -> String {
    let marks: Vec<String> = (1..=width).map(|i| format!("?{i}")).collect();
    format!("INSERT INTO {head} VALUES ({}) {tail}", marks.join(", "))
}

/// A day number's `YYYY-MM-DD`, made once per distinct day of a batch.
struct Days(HashMap<i64, String>);

impl Days {
    fn text(&mut self, day: i64) -> &str {
        self.0
            .entry(day)
            .or_insert_with(|| time::day_string(day * 86_400_000))
    }
}

fn u(x: f64) -> i64 {
    x as i64
}

/// Upserts a rollup keyed by (day, player, name) whose other columns are
/// sums. Counts travel as floats: the columns' INTEGER affinity stores a
/// whole float as an integer.
fn sum_rows<const N: usize>(
    tx: &Transaction<'_>,
    days: &mut Days,
    head: &str,
    tail: &str,
    rows: &HashMap<(i64, Str, Str), [f64; N]>,
) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare_cached(&upsert_sql(head, tail, N + 3))
        .map_err(err)?;
    for ((day, player, name), values) in rows {
        (|| {
            stmt.raw_bind_parameter(1, days.text(*day))?;
            stmt.raw_bind_parameter(2, &**player)?;
            stmt.raw_bind_parameter(3, &**name)?;
            for (i, v) in values.iter().enumerate() {
                stmt.raw_bind_parameter(i + 4, *v)?;
            }
            stmt.raw_execute()
        })()
        .map_err(err)?;
    }
    Ok(())
}

/// Writes the batch's rollup deltas: one upsert per rollup row.
fn apply(tx: &Transaction<'_>, d: &Deltas) -> Result<(), StoreError> {
    let mut days = Days(HashMap::new());
    let run = |head: &str, tail: &str, width: usize| {
        tx.prepare_cached(&upsert_sql(head, tail, width))
            .map_err(err)
    };

    let mut stmt = run(
        "player_period_stats (period, bucket, player_id, player_name, name_ms, events, kills, deaths, headshots,
            shots_fired, shots_hit, damage_dealt)",
        "ON CONFLICT (period, bucket, player_id) DO UPDATE SET
            player_name = CASE WHEN excluded.name_ms > name_ms THEN excluded.player_name ELSE player_name END,
            name_ms = max(name_ms, excluded.name_ms),
            events = events + excluded.events, kills = kills + excluded.kills, deaths = deaths + excluded.deaths,
            headshots = headshots + excluded.headshots, shots_fired = shots_fired + excluded.shots_fired,
            shots_hit = shots_hit + excluded.shots_hit, damage_dealt = damage_dealt + excluded.damage_dealt",
        12,
    )?;
    for ((period, bucket, player), (name, v)) in d.periods() {
        stmt.execute(params![
            period,
            bucket,
            &*player,
            &*name.value,
            name.ms,
            u(v[0]),
            u(v[1]),
            u(v[2]),
            u(v[3]),
            u(v[4]),
            u(v[5]),
            v[6],
        ])
        .map_err(err)?;
    }

    let mut stmt = run(
        "player_stats_daily (day, player_id, player_name, name_ms, events, kills, deaths, headshots, suicides, team_kills,
            bash_kills, grenade_kills, bot_kills, damage_dealt, damage_taken, shots_fired, shots_hit, jumps, reloads, distance, playtime_seconds)",
        "ON CONFLICT (player_id, day) DO UPDATE SET
            player_name = CASE WHEN excluded.name_ms > name_ms THEN excluded.player_name ELSE player_name END,
            name_ms = max(name_ms, excluded.name_ms),
            events = events + excluded.events, kills = kills + excluded.kills, deaths = deaths + excluded.deaths,
            headshots = headshots + excluded.headshots, suicides = suicides + excluded.suicides,
            team_kills = team_kills + excluded.team_kills, bash_kills = bash_kills + excluded.bash_kills,
            grenade_kills = grenade_kills + excluded.grenade_kills, bot_kills = bot_kills + excluded.bot_kills,
            damage_dealt = damage_dealt + excluded.damage_dealt, damage_taken = damage_taken + excluded.damage_taken,
            shots_fired = shots_fired + excluded.shots_fired, shots_hit = shots_hit + excluded.shots_hit,
            jumps = jumps + excluded.jumps, reloads = reloads + excluded.reloads,
            distance = distance + excluded.distance, playtime_seconds = playtime_seconds + excluded.playtime_seconds",
        21,
    )?;
    for ((day, player), p) in &d.player_daily {
        let c = &p.counts;
        stmt.execute(params![
            days.text(*day),
            &**player,
            &*p.name.value,
            p.name.ms,
            p.events as i64,
            c.kills as i64,
            c.deaths as i64,
            c.headshots as i64,
            c.suicides as i64,
            c.team_kills as i64,
            c.bash_kills as i64,
            c.grenade_kills as i64,
            c.bot_kills as i64,
            c.damage_dealt,
            c.damage_taken,
            c.shots_fired as i64,
            c.shots_hit as i64,
            c.jumps as i64,
            c.reloads as i64,
            c.distance,
            c.playtime_seconds,
        ])
        .map_err(err)?;
    }

    sum_rows(
        tx,
        &mut days,
        "player_weapon_stats (day, player_id, weapon, events, kills, deaths, headshots, shots_fired, shots_hit, damage_dealt)",
        "ON CONFLICT (player_id, weapon, day) DO UPDATE SET events = events + excluded.events,
            kills = kills + excluded.kills, deaths = deaths + excluded.deaths, headshots = headshots + excluded.headshots,
            shots_fired = shots_fired + excluded.shots_fired, shots_hit = shots_hit + excluded.shots_hit,
            damage_dealt = damage_dealt + excluded.damage_dealt",
        &d.weapon,
    )?;
    sum_rows(
        tx,
        &mut days,
        "player_map_stats (day, player_id, map_name, events, kills, deaths, headshots, damage_dealt)",
        "ON CONFLICT (player_id, map_name, day) DO UPDATE SET events = events + excluded.events,
            kills = kills + excluded.kills, deaths = deaths + excluded.deaths,
            headshots = headshots + excluded.headshots, damage_dealt = damage_dealt + excluded.damage_dealt",
        &d.map,
    )?;
    sum_rows(
        tx,
        &mut days,
        "player_hitloc_stats (day, player_id, hit_location, events, hits, kills, damage_dealt, hits_taken, deaths, damage_taken)",
        "ON CONFLICT (player_id, hit_location, day) DO UPDATE SET events = events + excluded.events,
            hits = hits + excluded.hits, kills = kills + excluded.kills, damage_dealt = damage_dealt + excluded.damage_dealt,
            hits_taken = hits_taken + excluded.hits_taken, deaths = deaths + excluded.deaths,
            damage_taken = damage_taken + excluded.damage_taken",
        &d.hitloc,
    )?;

    let mut stmt = run(
        "heatmap_cells (day, map_name, layer, cell_x, cell_y, events)",
        "ON CONFLICT (map_name, layer, cell_x, cell_y, day) DO UPDATE SET events = events + excluded.events",
        6,
    )?;
    for ((day, map, layer, x, y), n) in &d.heat {
        stmt.execute(params![days.text(*day), &**map, *layer, *x, *y, *n as i64])
            .map_err(err)?;
    }

    let mut stmt = run(
        "map_stats_daily (day, map_name, events, kills, headshots, damage_dealt)",
        "ON CONFLICT (map_name, day) DO UPDATE SET events = events + excluded.events, kills = kills + excluded.kills,
            headshots = headshots + excluded.headshots, damage_dealt = damage_dealt + excluded.damage_dealt",
        6,
    )?;
    for ((day, map), v) in &d.map_daily {
        stmt.execute(params![
            days.text(*day),
            &**map,
            u(v[0]),
            u(v[1]),
            u(v[2]),
            v[3]
        ])
        .map_err(err)?;
    }

    let mut stmt = run(
        "match_summary (match_id, server_id, map_name, game_type, started_ms, ended_ms, max_round, events, kills)",
        "ON CONFLICT (match_id) DO UPDATE SET server_id = max(server_id, excluded.server_id),
            map_name = max(map_name, excluded.map_name), game_type = max(game_type, excluded.game_type),
            started_ms = min(started_ms, excluded.started_ms), ended_ms = max(ended_ms, excluded.ended_ms),
            max_round = max(max_round, excluded.max_round), events = events + excluded.events, kills = kills + excluded.kills",
        9,
    )?;
    for (id, m) in &d.matches {
        stmt.execute(params![
            &**id,
            &*m.server,
            &*m.map,
            &*m.game_type,
            m.started,
            m.ended,
            m.max_round as i64,
            m.events as i64,
            m.kills as i64,
        ])
        .map_err(err)?;
    }

    let mut stmt = run(
        "match_players (match_id, player_id, player_name, name_ms, team, team_ms, events, kills, deaths, headshots,
            suicides, team_kills, damage_dealt, damage_taken)",
        "ON CONFLICT (match_id, player_id) DO UPDATE SET
            player_name = CASE WHEN excluded.name_ms > name_ms THEN excluded.player_name ELSE player_name END,
            name_ms = max(name_ms, excluded.name_ms),
            team = CASE WHEN excluded.team_ms > team_ms THEN excluded.team ELSE team END,
            team_ms = max(team_ms, excluded.team_ms),
            events = events + excluded.events, kills = kills + excluded.kills, deaths = deaths + excluded.deaths,
            headshots = headshots + excluded.headshots, suicides = suicides + excluded.suicides,
            team_kills = team_kills + excluded.team_kills, damage_dealt = damage_dealt + excluded.damage_dealt,
            damage_taken = damage_taken + excluded.damage_taken",
        14,
    )?;
    for ((match_id, player), p) in &d.match_players {
        let v = &p.counts;
        stmt.execute(params![
            &**match_id,
            &**player,
            &*p.name.value,
            p.name.ms,
            p.team.value,
            p.team.ms,
            u(v[0]),
            u(v[1]),
            u(v[2]),
            u(v[3]),
            u(v[4]),
            u(v[5]),
            v[6],
            v[7],
        ])
        .map_err(err)?;
    }

    let mut stmt = run(
        "server_activity (hour, server_id, events, kills)",
        "ON CONFLICT (server_id, hour) DO UPDATE SET events = events + excluded.events, kills = kills + excluded.kills",
        4,
    )?;
    for ((hour, server), v) in &d.activity {
        let ms = hour * 3_600_000;
        stmt.execute(params![
            time::hour_string(ms),
            &**server,
            v[0] as i64,
            v[1] as i64
        ])
        .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opm_model::EventKind;

    fn kill(server: &str, id: u64) -> Event {
        let mut e = Event::new(EventKind::PlayerKill);
        e.server = server.into();
        e.id = id;
        e.time_ms = 1_780_000_000_000 + id as i64;
        e.map = "dm/mohdm6".into();
        e.weapon = "Thompson".into();
        e.actor = Some(Participant::new("a"));
        e.target = Some(Participant::new("b"));
        e
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn inserts_skip_stored_ids_and_sum_rollups_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("a.db")).unwrap();
        migrate(&mut conn).unwrap();
        let r = insert(&mut conn, &[kill("s1", 2), kill("s1", 1), kill("s2", 1)]).unwrap();
        assert_eq!((r.inserted, r.skipped), (3, 0));
        assert_eq!(r.high_water, vec![("s1".into(), 2), ("s2".into(), 1)]);
        // A replay of stored ids and a new one: only the new one counts.
        let r = insert(&mut conn, &[kill("s1", 1), kill("s1", 2), kill("s1", 3)]).unwrap();
        assert_eq!((r.inserted, r.skipped), (1, 2));
        assert_eq!(count(&conn, "SELECT count(*) FROM raw_events"), 4);
        assert_eq!(
            count(
                &conn,
                "SELECT sum(kills) FROM player_stats_daily WHERE player_id = 'a'"
            ),
            4
        );
        assert_eq!(
            count(
                &conn,
                "SELECT kills FROM player_period_stats WHERE period = 'all' AND player_id = 'a'"
            ),
            4
        );
        // (server, event_id) stays a key.
        assert!(
            conn.execute(
                "INSERT INTO raw_events SELECT * FROM raw_events LIMIT 1",
                []
            )
            .is_err()
        );
    }

    #[test]
    fn a_first_layout_database_is_upgraded_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // The first layout: raw_events WITHOUT ROWID with its primary key.
            let conn = open_connection(&path).unwrap();
            let old = SCHEMA
                .replace(
                    "    raw TEXT NOT NULL\n);",
                    "    raw TEXT NOT NULL,\n    PRIMARY KEY (server, event_id)\n) WITHOUT ROWID;",
                )
                .replace(
                    "CREATE UNIQUE INDEX IF NOT EXISTS raw_events_id ON raw_events (server, event_id);",
                    "",
                );
            assert_ne!(old, SCHEMA, "the test must build the first layout");
            conn.execute_batch(&old).unwrap();
            conn.execute_batch(PERIODS).unwrap();
        }
        let mut conn = open_connection(&path).unwrap();
        // Rows written in the first layout by the same code path.
        insert(&mut conn, &[kill("s1", 1), kill("s1", 2)]).unwrap();
        let layout = |c: &Connection| -> String {
            c.query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'raw_events'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert!(layout(&conn).contains("WITHOUT ROWID"));
        migrate(&mut conn).unwrap();
        assert!(!layout(&conn).contains("WITHOUT ROWID"));
        assert_eq!(count(&conn, "SELECT count(*) FROM raw_events"), 2);
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM sqlite_master WHERE name = 'raw_events_without_rowid'"
            ),
            0
        );
        // Idempotent, and the upgraded store goes on where it was.
        migrate(&mut conn).unwrap();
        let r = insert(&mut conn, &[kill("s1", 2), kill("s1", 3)]).unwrap();
        assert_eq!((r.inserted, r.skipped), (1, 1));
        assert_eq!(count(&conn, "SELECT count(*) FROM raw_events"), 3);
    }
}
