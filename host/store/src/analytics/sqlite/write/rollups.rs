//! The rollup rows a batch changes: one upsert per row, of what the
//! batch's events added to it ([`Deltas`]).

use foldhash::HashMap;
use foldhash::HashMapExt as _;
use rusqlite::{Transaction, params};

use super::super::deltas::{Deltas, Id, Names};
use super::err;
use crate::error::StoreError;
use crate::time;

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
    names: &Names,
    rows: &HashMap<(i64, Id, Id), [f64; N]>,
) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare_cached(&upsert_sql(head, tail, N + 3))
        .map_err(err)?;
    for ((day, player, name), values) in rows {
        (|| {
            stmt.raw_bind_parameter(1, days.text(*day))?;
            stmt.raw_bind_parameter(2, names.text(*player))?;
            stmt.raw_bind_parameter(3, names.text(*name))?;
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
pub(super) fn apply(tx: &Transaction<'_>, d: &Deltas) -> Result<(), StoreError> {
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
    let names = &d.names;
    for ((period, bucket, player), (name, v)) in d.periods() {
        stmt.execute(params![
            period,
            bucket,
            names.text(player),
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
            names.text(*player),
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
        names,
        &d.weapon,
    )?;
    sum_rows(
        tx,
        &mut days,
        "player_map_stats (day, player_id, map_name, events, kills, deaths, headshots, damage_dealt)",
        "ON CONFLICT (player_id, map_name, day) DO UPDATE SET events = events + excluded.events,
            kills = kills + excluded.kills, deaths = deaths + excluded.deaths,
            headshots = headshots + excluded.headshots, damage_dealt = damage_dealt + excluded.damage_dealt",
        names,
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
        names,
        &d.hitloc,
    )?;

    let mut stmt = run(
        "heatmap_cells (day, map_name, layer, cell_x, cell_y, events)",
        "ON CONFLICT (map_name, layer, cell_x, cell_y, day) DO UPDATE SET events = events + excluded.events",
        6,
    )?;
    for ((day, map, layer, x, y), n) in &d.heat {
        stmt.execute(params![
            days.text(*day),
            names.text(*map),
            *layer,
            *x,
            *y,
            *n as i64
        ])
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
            names.text(*map),
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
            names.text(*id),
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
            names.text(*match_id),
            names.text(*player),
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
            names.text(*server),
            v[0] as i64,
            v[1] as i64
        ])
        .map_err(err)?;
    }
    Ok(())
}
