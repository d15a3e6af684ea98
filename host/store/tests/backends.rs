//! One suite, two sets of backends: the embedded defaults (SQLite,
//! SQLite, in-process) and ClickHouse + PostgreSQL + Redis. Every test runs
//! the same assertions on both, checks both against an independent recount
//! of a generated stream, and checks that both give the same answers.
//! External services are skipped with a loud message only when unreachable.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use opm_model::plugin::{Commit, Outcome, OutcomeKind, Scope, StateKey, StateStore, StateValue};
use opm_store::Stores;
use opm_store::analytics::query::{LeaderStat, Period};
use opm_store::analytics::writer::{BatchWriter, WriterConfig};
use opm_store::live::UnlockNotice;
use opm_store::relational::*;
use opm_store::time::now_ms;
use serde_json::{Value, json};

async fn both(tag: &str) -> Vec<Backend> {
    let mut v = vec![embedded().await];
    if let Some(b) = external(tag).await {
        v.push(b);
    }
    v
}

fn fast_writer() -> WriterConfig {
    WriterConfig {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..WriterConfig::default()
    }
}

/// Everything the read side answers, as JSON, for cross-backend equality.
async fn fingerprint(stores: &Stores, now: i64) -> Value {
    let q = stores.stats();
    let mut players = BTreeMap::new();
    for i in 0..PLAYERS {
        let g = format!("guid-{i:02}");
        players.insert(
            g.clone(),
            json!({
                "totals": q.player(&g).await.unwrap(),
                "weapons": q.player_weapons(&g).await.unwrap(),
                "maps": q.player_maps(&g).await.unwrap(),
                "hitlocs": q.player_hit_locations(&g).await.unwrap(),
                "matches": q.player_matches(&g, 20).await.unwrap(),
            }),
        );
    }
    let mut boards = Vec::new();
    for stat in [
        LeaderStat::Kills,
        LeaderStat::Deaths,
        LeaderStat::Headshots,
        LeaderStat::Kd,
        LeaderStat::Accuracy,
        LeaderStat::Damage,
    ] {
        for period in [
            Period::All,
            Period::Day,
            Period::Week,
            Period::Month,
            Period::Year,
        ] {
            boards.push(json!([
                stat,
                period,
                q.leaderboard(stat, period, 10, 2, now).await.unwrap()
            ]));
        }
    }
    let matches = q.recent_matches(500, 0).await.unwrap();
    let mut scoreboards = BTreeMap::new();
    for m in &matches {
        scoreboards.insert(
            m.match_id.clone(),
            q.match_players(&m.match_id).await.unwrap(),
        );
    }
    let mut heat = BTreeMap::new();
    for map in ["mohdm1", "mohdm2", "obj_team2"] {
        heat.insert(
            map,
            json!([
                q.heatmap(map, "kill", 1000).await.unwrap(),
                q.heatmap(map, "death", 1000).await.unwrap()
            ]),
        );
    }
    json!({
        "players": players,
        "boards": boards,
        "matches": matches,
        "scoreboards": scoreboards,
        "heat": heat,
        "maps": q.maps(None).await.unwrap(),
        "weapons": q.weapons(None).await.unwrap(),
        "activity": q.server_activity("srv-a", 0).await.unwrap(),
        "raw": stores.analytics.raw_count().await.unwrap(),
    })
}

/// JSON equality with a relative tolerance on floats (sums in a different
/// order round differently).
fn same(a: &Value, b: &Value, path: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(close(x, y), "{path}: {x} != {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}: lengths differ");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                same(x, y, &format!("{path}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{path}: keys differ"
            );
            for (k, v) in x {
                same(v, &y[k], &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

const DAY_MS: i64 = 86_400_000;

async fn check_recount(b: &Backend, events: &[opm_model::Event], now: i64) {
    let q = b.stores.stats();
    let all = recount(events, None);
    for (guid, t) in &all.players {
        let p = q
            .player(guid)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{}: {guid} missing", b.name));
        let ctx = format!("{} {guid}", b.name);
        assert_eq!(p.player_name, t.name, "{ctx} name");
        assert_eq!(
            (p.kills, p.deaths, p.headshots, p.suicides, p.team_kills),
            (t.kills, t.deaths, t.headshots, t.suicides, t.team_kills),
            "{ctx} kills/deaths/headshots/suicides/team_kills"
        );
        assert_eq!(
            (p.shots_fired, p.shots_hit, p.jumps, p.reloads),
            (t.shots_fired, t.shots_hit, t.jumps, t.reloads),
            "{ctx}"
        );
        assert!(
            close(p.damage_dealt, t.damage_dealt),
            "{ctx} damage_dealt {} vs {}",
            p.damage_dealt,
            t.damage_dealt
        );
        assert!(close(p.damage_taken, t.damage_taken), "{ctx} damage_taken");
        assert!(
            close(p.distance, t.distance),
            "{ctx} distance {} vs {}",
            p.distance,
            t.distance
        );
        assert!(close(p.playtime_seconds, t.playtime), "{ctx} playtime");
        assert_eq!(p.matches_played, t.matches.len() as u64, "{ctx} matches");
        let weapons: BTreeMap<String, u64> = q
            .player_weapons(guid)
            .await
            .unwrap()
            .into_iter()
            .filter(|w| w.kills > 0)
            .map(|w| (w.weapon, w.kills))
            .collect();
        assert_eq!(weapons, t.weapon_kills, "{ctx} weapon kills");
    }
    // Leaderboard by kills, all time and one calendar week: the week of the
    // stream's middle event, so it has players whatever today is.
    let at = events[events.len() / 2].time_ms;
    let day = opm_store::time::day_number(at);
    let monday = (day - (day + 3).rem_euclid(7)) * DAY_MS;
    let week = (
        opm_store::time::day_string(monday),
        opm_store::time::day_string(monday + 6 * DAY_MS),
    );
    assert_eq!(week.0, Period::Week.bucket(at));
    for (period, at, days) in [
        (Period::All, now, None),
        (Period::Week, at, Some((week.0.as_str(), week.1.as_str()))),
    ] {
        let rc = recount(events, days);
        let mut expect: Vec<(u64, String)> = rc
            .players
            .iter()
            .map(|(g, t)| (t.kills, g.clone()))
            .collect();
        expect.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let board = q
            .leaderboard(LeaderStat::Kills, period, 5, 3, at)
            .await
            .unwrap();
        assert_eq!(
            board.total,
            rc.players.len() as u64,
            "{} {period:?} total",
            b.name
        );
        let got: Vec<(u64, String)> = board
            .entries
            .iter()
            .map(|e| (e.kills, e.player_id.clone()))
            .collect();
        assert_eq!(
            got,
            expect[3..8].to_vec(),
            "{} {period:?} leaderboard",
            b.name
        );
        assert_eq!(board.entries[0].rank, 4);
    }
    // Scoreboards.
    for (m, players) in &all.scoreboards {
        let got: BTreeMap<String, (u64, u64)> = q
            .match_players(m)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.player_id, (p.kills, p.deaths)))
            .collect();
        assert_eq!(&got, players, "{} scoreboard {m}", b.name);
        let s = q.match_summary(m).await.unwrap().unwrap();
        assert_eq!(
            s.kills,
            players.values().map(|v| v.0).sum::<u64>(),
            "{} match kills {m}",
            b.name
        );
    }
    // Heatmap: every kill with a killer position is in one cell.
    for (map, n) in &all.kill_cells {
        let cells = q.heatmap(map, "kill", 100_000).await.unwrap();
        assert_eq!(
            cells.iter().map(|c| c.count).sum::<u64>(),
            *n,
            "{} heatmap {map}",
            b.name
        );
    }
    assert_eq!(
        b.stores.analytics.raw_count().await.unwrap(),
        events.len() as u64,
        "{} raw rows",
        b.name
    );
    // Unknown ids: empty, not errors.
    assert!(q.player("nobody").await.unwrap().is_none());
    assert!(q.match_summary("no-such-match").await.unwrap().is_none());
    assert!(q.match_players("no-such-match").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_agree_with_a_recount_and_with_each_other() {
    let now = now_ms();
    let events = stream(20_000, 7, now, 40);
    let mut prints = Vec::new();
    for b in both("analytics").await {
        // Through the batch writer, in uneven chunks.
        let writer = BatchWriter::spawn(b.stores.analytics.clone(), fast_writer());
        for chunk in events.chunks(777) {
            writer.send_many(chunk.to_vec()).await.unwrap();
        }
        let c = writer.close().await.unwrap();
        assert_eq!(c.inserted, events.len() as u64, "{}", b.name);
        assert_eq!(c.high_water, by_server_max(&events), "{}", b.name);
        check_recount(&b, &events, now).await;
        let before = fingerprint(&b.stores, now).await;

        // A crash-and-replay: everything again, directly and through a new
        // writer. Nothing may change.
        let again = b.stores.analytics.insert(&events[..5000]).await.unwrap();
        assert_eq!((again.inserted, again.skipped), (0, 5000), "{}", b.name);
        let writer = BatchWriter::spawn(b.stores.analytics.clone(), fast_writer());
        writer.send_many(events.clone()).await.unwrap();
        let c = writer.close().await.unwrap();
        assert_eq!(
            (c.inserted, c.skipped),
            (0, events.len() as u64),
            "{}",
            b.name
        );
        let after = fingerprint(&b.stores, now).await;
        same(&before, &after, &format!("{} replay", b.name));
        prints.push((b.name, after));
        b.cleanup().await;
    }
    if let [(_, a), (_, b)] = &prints[..] {
        same(a, b, "embedded vs external");
    }
}

/// A SQLite store from before `player_period_stats` existed gets it filled
/// by the migration from the daily rollup, with exactly the rows the
/// inserts maintain (every bucket of every period over 400 days).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_period_backfill_matches_incremental_rollup() {
    let events = stream(6000, 13, now_ms(), 400);
    let b = embedded().await;
    let a = &b.stores.analytics;
    a.insert(&events).await.unwrap();
    let table = "SELECT period, bucket, player_id, player_name, events, kills, deaths, headshots,
        shots_fired, shots_hit, damage_dealt FROM player_period_stats ORDER BY period, bucket, player_id";
    let incremental = a.fetch(table).await.unwrap();
    let periods: std::collections::BTreeSet<String> = incremental
        .iter()
        .map(|r| r["period"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(periods.len(), 5, "every period has rows");
    a.fetch("DELETE FROM player_period_stats").await.unwrap();
    assert!(a.fetch(table).await.unwrap().is_empty());
    a.migrate().await.unwrap();
    let backfilled = a.fetch(table).await.unwrap();
    same(
        &Value::from(
            incremental
                .into_iter()
                .map(Value::Object)
                .collect::<Vec<_>>(),
        ),
        &Value::from(
            backfilled
                .into_iter()
                .map(Value::Object)
                .collect::<Vec<_>>(),
        ),
        "backfill",
    );
    // Migrating again changes nothing (the table is no longer empty).
    let n = a.fetch(table).await.unwrap().len();
    a.migrate().await.unwrap();
    assert_eq!(a.fetch(table).await.unwrap().len(), n);
    b.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_old_raw_months_and_keeps_rollups() {
    let now = now_ms();
    // 400 days of history, so several whole months are beyond 90 days.
    let events = stream(3000, 11, now, 400);
    for b in both("retention").await {
        b.stores.analytics.insert(&events).await.unwrap();
        let q = b.stores.stats();
        let before = q.player("guid-03").await.unwrap().unwrap();
        let dropped = b.stores.apply_retention(now).await.unwrap();
        assert!(!dropped.is_empty(), "{}", b.name);
        let cutoff = now - 90 * 86_400_000;
        let kept = events
            .iter()
            .filter(|e| {
                opm_store::time::month_end_ms(opm_store::time::month_id(e.time_ms)) > cutoff
            })
            .count() as u64;
        assert_eq!(
            b.stores.analytics.raw_count().await.unwrap(),
            kept,
            "{}",
            b.name
        );
        assert!(kept < events.len() as u64 && kept > 0);
        let after = q.player("guid-03").await.unwrap().unwrap();
        assert_eq!(before, after, "{}: rollups are kept", b.name);
        // A replay of the dropped events must not come back.
        let r = b.stores.analytics.insert(&events).await.unwrap();
        assert_eq!(r.inserted, 0, "{}", b.name);
        assert_eq!(
            b.stores.analytics.raw_count().await.unwrap(),
            kept,
            "{}",
            b.name
        );
        b.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_survives_an_outage_without_loss_or_duplicates() {
    let Some(b) = external("outage").await else {
        return;
    };
    let now = now_ms();
    let events = stream(6000, 23, now, 3);
    let proxy = Proxy::start(clickhouse_addr().await).await;
    let db = b
        .config
        .clickhouse_url
        .as_deref()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let via_proxy = Arc::new(
        opm_store::analytics::clickhouse::ClickHouseAnalytics::new(
            opm_store::analytics::clickhouse::ClickHouseConfig::parse(&format!(
                "http://{}/{db}",
                proxy.addr
            ))
            .unwrap(),
        )
        .unwrap(),
    );
    // Down from the start.
    proxy.set(REFUSE);
    let writer = BatchWriter::spawn(via_proxy, fast_writer());
    let mut committed = writer.committed();
    writer.send_many(events[..2000].to_vec()).await.unwrap();
    committed
        .wait_for(|c| c.failed_attempts >= 3)
        .await
        .unwrap();
    assert_eq!(committed.borrow().inserted, 0);
    proxy.set(FORWARD);
    let c = writer.flush().await.unwrap();
    assert_eq!(c.inserted, 2000);

    // The write lands but the reply is lost: the retry must not double it.
    proxy.set(LOSE_REPLY);
    let failed = c.failed_attempts;
    writer.send_many(events[2000..4000].to_vec()).await.unwrap();
    committed
        .wait_for(|c| c.failed_attempts >= failed + 2)
        .await
        .unwrap();
    proxy.set(FORWARD);
    writer.send_many(events[4000..].to_vec()).await.unwrap();
    let c = writer.close().await.unwrap();
    assert_eq!(c.high_water, by_server_max(&events));
    // Every event is accounted for once: the batch whose reply was lost had
    // landed, so its retry found it stored and skipped it.
    assert_eq!(c.inserted + c.skipped, events.len() as u64);
    assert!(
        c.skipped > 0,
        "the lost-reply batch was retried and skipped"
    );

    // Nothing lost, nothing doubled, rollups fed exactly once.
    assert_eq!(
        b.stores.analytics.raw_count().await.unwrap(),
        events.len() as u64
    );
    let raw: u64 = b
        .stores
        .analytics
        .fetch("SELECT count() AS n FROM raw_events")
        .await
        .unwrap()[0]["n"]
        .as_u64()
        .unwrap();
    assert_eq!(raw, events.len() as u64, "physical raw rows");
    check_recount(&b, &events, now).await;
    b.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relational_contract() {
    for b in both("relational").await {
        let r = &b.stores.relational;
        let n = b.name;
        // servers
        let s = r
            .insert_server(&NewServer {
                id: None,
                name: "Main".into(),
                ip_address: "10.0.0.1".into(),
                port: 12203,
                token_hash: "h1".into(),
                status: ServerStatus::Pending,
            })
            .await
            .unwrap();
        assert_eq!(r.server(&s.id).await.unwrap().unwrap(), s, "{n}");
        assert_eq!(
            r.server_by_address("10.0.0.1", 12203)
                .await
                .unwrap()
                .unwrap()
                .id,
            s.id
        );
        assert!(
            r.server_by_address("10.0.0.1", 12204)
                .await
                .unwrap()
                .is_none()
        );
        let dup = r
            .insert_server(&NewServer {
                id: None,
                name: "Dup".into(),
                ip_address: "10.0.0.1".into(),
                port: 12203,
                token_hash: "h2".into(),
                status: ServerStatus::Active,
            })
            .await;
        assert!(
            matches!(dup, Err(opm_store::StoreError::Rejected { .. })),
            "{n}: unique ip+port"
        );
        assert!(r.update_server_token(&s.id, "h3").await.unwrap());
        assert!(r.server_by_token_hash("h1").await.unwrap().is_none());
        assert_eq!(
            r.server_by_token_hash("h3").await.unwrap().unwrap().id,
            s.id
        );
        assert!(
            r.set_server_status(&s.id, ServerStatus::Active)
                .await
                .unwrap()
        );
        assert!(
            !r.set_server_status("missing", ServerStatus::Active)
                .await
                .unwrap()
        );
        assert!(r.touch_server(&s.id, 5000).await.unwrap());
        assert!(
            !r.touch_server(&s.id, 4000).await.unwrap(),
            "{n}: last_seen never moves back"
        );
        let listed = r.list_servers().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].status, listed[0].last_seen_ms),
            (ServerStatus::Active, Some(5000))
        );

        // users, identities, login tokens
        let u = r.upsert_user(42, "Elgan", false).await.unwrap();
        assert_eq!(
            r.upsert_user(42, "Elgan2", true).await.unwrap().created_ms,
            u.created_ms
        );
        assert_eq!(r.user(42).await.unwrap().unwrap().name, "Elgan2");
        let i = r.link_identity("g1", 42, false).await.unwrap();
        assert!(!i.verified);
        assert!(r.verify_identity("g1", 42).await.unwrap());
        assert!(
            !r.verify_identity("g1", 42).await.unwrap(),
            "{n}: verify once"
        );
        assert!(
            r.link_identity("g1", 42, false).await.unwrap().verified,
            "{n}: relinking the same member keeps verification"
        );
        let moved = r.link_identity("g1", 43, false).await.unwrap();
        assert_eq!(
            (moved.member_id, moved.verified),
            (43, false),
            "{n}: moving to another member resets it"
        );
        r.link_identity("g2", 42, true).await.unwrap();
        assert_eq!(r.identities_of_member(42).await.unwrap().len(), 1);
        assert!(r.unlink_identity("g2").await.unwrap());
        assert!(r.identity("g2").await.unwrap().is_none());
        r.insert_login_token("t1", 42, 10_000).await.unwrap();
        assert!(
            r.consume_login_token("t1", 10_000, "g9")
                .await
                .unwrap()
                .is_none(),
            "{n}: expired"
        );
        r.insert_login_token("t2", 42, 20_000).await.unwrap();
        let used = r
            .consume_login_token("t2", 15_000, "g9")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (used.member_id, used.used_guid.as_deref()),
            (42, Some("g9"))
        );
        assert!(
            r.consume_login_token("t2", 15_001, "g9")
                .await
                .unwrap()
                .is_none(),
            "{n}: single use"
        );
        r.insert_login_token("t3", 42, 20_000).await.unwrap();
        assert_eq!(
            r.revoke_login_tokens(42).await.unwrap(),
            2,
            "{n}: t1 and t3 unused"
        );
        assert!(
            r.consume_login_token("t3", 15_000, "g9")
                .await
                .unwrap()
                .is_none(),
            "{n}: revoked"
        );
        assert_eq!(r.login_tokens_of_member(42, 10).await.unwrap().len(), 3);

        // teams, tournaments, brackets
        let t1 = r.create_team("Alpha", "A", Some(42)).await.unwrap();
        let t2 = r.create_team("Bravo", "B", None).await.unwrap();
        let t3 = r.create_team("Charlie", "C", None).await.unwrap();
        let t4 = r.create_team("Delta", "D", None).await.unwrap();
        r.add_team_member(t1.id, 42, "captain").await.unwrap();
        r.add_team_member(t1.id, 43, "member").await.unwrap();
        assert_eq!(r.team_members(t1.id).await.unwrap().len(), 2);
        assert!(r.remove_team_member(t1.id, 43).await.unwrap());
        assert_eq!(
            r.list_teams()
                .await
                .unwrap()
                .iter()
                .map(|t| t.tag.as_str())
                .collect::<Vec<_>>(),
            ["A", "B", "C", "D"]
        );
        let tour = r
            .create_tournament("Cup", "single_elimination", Some(1))
            .await
            .unwrap();
        assert_eq!(tour.status, "draft");
        for (seed, t) in [&t1, &t2, &t3, &t4].iter().enumerate() {
            r.add_tournament_team(tour.id, t.id, Some(seed as i32 + 1))
                .await
                .unwrap();
        }
        assert_eq!(
            r.tournament_teams(tour.id).await.unwrap()[0],
            (t1.id, Some(1))
        );
        let slot = |round, position, a: Option<i64>, b: Option<i64>| NewTournamentMatch {
            bracket: "winners".into(),
            round,
            position,
            team_a: a,
            team_b: b,
            scheduled_ms: None,
        };
        let bracket = r
            .save_bracket(
                tour.id,
                &[
                    slot(1, 0, Some(t1.id), Some(t4.id)),
                    slot(1, 1, Some(t2.id), Some(t3.id)),
                    slot(2, 0, None, None),
                ],
                &[(0, 2), (1, 2)],
            )
            .await
            .unwrap();
        assert_eq!(bracket.len(), 3);
        let fin = bracket[2].id;
        assert_eq!(bracket[0].next_match, Some(fin));
        r.report_tournament_result(bracket[0].id, t4.id, Some("m-1"))
            .await
            .unwrap()
            .unwrap();
        assert!(
            r.report_tournament_result(bracket[1].id, t1.id, None)
                .await
                .unwrap()
                .is_none(),
            "{n}: not a participant"
        );
        r.report_tournament_result(bracket[1].id, t2.id, None)
            .await
            .unwrap();
        let b2 = r.bracket(tour.id).await.unwrap();
        assert_eq!(
            (b2[2].team_a, b2[2].team_b),
            (Some(t4.id), Some(t2.id)),
            "{n}: winners advanced"
        );
        assert!(r.set_tournament_status(tour.id, "running").await.unwrap());
        assert_eq!(r.list_tournaments().await.unwrap()[0].status, "running");

        // achievement definitions, versioned
        let def = |code: &str, target| AchievementDef {
            code: code.into(),
            pack: String::new(),
            pack_version: String::new(),
            name: format!("N {code}"),
            description: "d".into(),
            category: "combat".into(),
            tier: 2,
            points: 10,
            icon: "i.png".into(),
            metric: "kills".into(),
            target,
            is_hidden: false,
        };
        r.sync_definitions(
            "core",
            "1.0.0",
            &[def("KILL_10", Some(10)), def("KILL_100", Some(100))],
        )
        .await
        .unwrap();
        r.sync_definitions("core", "1.1.0", &[def("KILL_10", Some(12))])
            .await
            .unwrap();
        let defs = r.definitions().await.unwrap();
        assert_eq!(defs.len(), 2);
        let k10 = r.definition("KILL_10").await.unwrap().unwrap();
        assert_eq!(
            (k10.def.target, k10.def.pack_version.as_str(), k10.active),
            (Some(12), "1.1.0", true)
        );
        assert!(
            !r.definition("KILL_100").await.unwrap().unwrap().active,
            "{n}: dropped by 1.1.0"
        );
        assert_eq!(defs[0].id, k10.id, "{n}: ids are stable across versions");

        // unlock ledger: insert-if-absent, never overwritten
        let unlock = Unlock {
            player: "g1".into(),
            code: "KILL_10".into(),
            pack: "core".into(),
            pack_version: "1.1.0".into(),
            unlocked_ms: 1000,
            event_id: 7,
            match_id: "m-1".into(),
            source: UnlockSource::Live,
        };
        assert!(r.record_unlock(&unlock).await.unwrap());
        assert!(
            !r.record_unlock(&Unlock {
                unlocked_ms: 9,
                event_id: 99,
                source: UnlockSource::Admin,
                ..unlock.clone()
            })
            .await
            .unwrap()
        );
        assert_eq!(
            r.unlocks_of("g1").await.unwrap(),
            vec![unlock.clone()],
            "{n}: first unlock kept"
        );
        // progress only moves forward
        let p = |current| Progress {
            player: "g1".into(),
            code: "KILL_100".into(),
            current,
            target: 100,
            updated_ms: current as i64,
        };
        assert!(r.record_progress(&p(5)).await.unwrap());
        assert!(!r.record_progress(&p(3)).await.unwrap());
        assert!(r.record_progress(&p(8)).await.unwrap());
        assert_eq!(r.progress_of("g1").await.unwrap()[0].current, 8);

        // plugin state through the synchronous bridge, on a blocking thread
        let state = b.stores.state_store(tokio::runtime::Handle::current());
        let key = |k: &str| StateKey {
            pack: "core".into(),
            scope: Scope::Match,
            instance: "m-1".into(),
            player: "g1".into(),
            key: k.into(),
        };
        let outcome = |code: &str, kind| Outcome {
            pack: "core".into(),
            pack_version: "1.1.0".into(),
            player: "g5".into(),
            code: code.into(),
            kind,
            event_id: 50,
            match_id: "m-1".into(),
            time_ms: 777,
        };
        let commit = Commit {
            pack: "core".into(),
            pack_version: "1.1.0".into(),
            writes: vec![
                (key("kills"), Some(StateValue::Counter(3))),
                (key("blob"), Some(StateValue::Blob(vec![0, 1, 255]))),
                (
                    key("seen"),
                    Some(StateValue::Set(["a".to_string(), "b".to_string()].into())),
                ),
            ],
            outcomes: vec![
                outcome("KILL_10", OutcomeKind::Unlock),
                outcome(
                    "KILL_100",
                    OutcomeKind::Progress {
                        current: 40,
                        target: 100,
                    },
                ),
            ],
            positions: vec![("srv-a".into(), 50)],
        };
        let (loaded, positions) = tokio::task::spawn_blocking(move || {
            state.commit(&commit).unwrap();
            // A later commit deleting a key and moving the position back.
            state
                .commit(&Commit {
                    pack: "core".into(),
                    pack_version: "1.1.0".into(),
                    writes: vec![(key("blob"), None)],
                    outcomes: vec![],
                    positions: vec![("srv-a".into(), 10), ("srv-b".into(), 3)],
                })
                .unwrap();
            (
                state.load_pack("core").unwrap(),
                state.positions("core").unwrap(),
            )
        })
        .await
        .unwrap();
        assert_eq!(loaded.len(), 2, "{n}");
        assert!(loaded.iter().any(|(k, v)| &*k.key == "seen"
            && *v == StateValue::Set(["a".to_string(), "b".to_string()].into())));
        assert_eq!(
            positions
                .into_iter()
                .map(|(s, p)| (s.to_string(), p))
                .collect::<Vec<_>>(),
            vec![("srv-a".to_string(), 50), ("srv-b".to_string(), 3)],
            "{n}: positions never move back"
        );
        assert_eq!(r.unlocks_of("g5").await.unwrap()[0].event_id, 50);
        assert_eq!(r.progress_of("g5").await.unwrap()[0].current, 40);
        assert_eq!(
            r.unlock_counts().await.unwrap(),
            vec![("KILL_10".to_string(), 2)]
        );
        assert_eq!(r.recent_unlocks(1).await.unwrap()[0].player, "g1");

        // One commit touching the same key, unlock and progress row several
        // times (multi-row statements): applied as if one by one.
        let state = b.stores.state_store(tokio::runtime::Handle::current());
        let at = |event_id, kind| Outcome {
            event_id,
            ..outcome("KILL_1000", kind)
        };
        let progress = |current| OutcomeKind::Progress {
            current,
            target: 1000,
        };
        let repeated = Commit {
            pack: "core".into(),
            pack_version: "1.1.0".into(),
            writes: vec![
                (key("kills"), Some(StateValue::Counter(4))),
                (key("gone"), Some(StateValue::Counter(1))),
                (key("kills"), Some(StateValue::Counter(5))),
                (key("gone"), None),
            ],
            outcomes: vec![
                at(60, progress(41)),
                at(61, progress(43)),
                at(62, progress(43)),
                at(63, progress(42)),
                at(64, OutcomeKind::Unlock),
                at(65, OutcomeKind::Unlock),
            ],
            positions: vec![("srv-a".into(), 65)],
        };
        let loaded = tokio::task::spawn_blocking(move || {
            state.commit(&repeated).unwrap();
            state.load_pack("core").unwrap()
        })
        .await
        .unwrap();
        let value = |k: &str| {
            loaded
                .iter()
                .find(|(key, _)| &*key.key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(value("kills"), Some(StateValue::Counter(5)), "{n}");
        assert_eq!(value("gone"), None, "{n}");
        let prog = r.progress_of("g5").await.unwrap();
        let p1000 = prog.iter().find(|p| p.code == "KILL_1000").unwrap();
        assert_eq!(p1000.current, 43, "{n}: highest progress kept");
        let ledger = r.unlocks_of("g5").await.unwrap();
        let u1000 = ledger.iter().find(|u| u.code == "KILL_1000").unwrap();
        assert_eq!(u1000.event_id, 64, "{n}: first unlock kept");

        // plugin failures
        let f = PluginFailure {
            pack: "core".into(),
            pack_version: "1.1.0".into(),
            server: "srv-a".into(),
            event_id: Some(9),
            error: "trap: unreachable".into(),
            time_ms: 5,
        };
        r.record_plugin_failure(&f).await.unwrap();
        r.record_plugin_failure(&PluginFailure {
            pack: "other".into(),
            event_id: None,
            ..f.clone()
        })
        .await
        .unwrap();
        assert_eq!(r.plugin_failures(Some("core"), 10).await.unwrap(), vec![f]);
        assert_eq!(r.plugin_failures(None, 10).await.unwrap().len(), 2);
        b.cleanup().await;
    }
}

/// A live document, as the pipeline hands them over.
fn doc(v: serde_json::Value) -> opm_store::live::LiveJson {
    opm_store::live::live_json(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_contract() {
    for b in both("live").await {
        let l = &b.stores.live;
        let n = b.name;
        b.stores.ready().await.unwrap();
        l.put_match("m1", doc(json!({"allies": 1}))).await.unwrap();
        l.put_match("m2", doc(json!({"allies": 2}))).await.unwrap();
        l.put_match("m1", doc(json!({"allies": 3}))).await.unwrap();
        assert_eq!(
            l.live_match("m1").await.unwrap(),
            Some(json!({"allies": 3})),
            "{n}"
        );
        l.end_match("m2").await.unwrap();
        assert_eq!(
            l.live_matches().await.unwrap(),
            vec![("m1".to_string(), json!({"allies": 3}))],
            "{n}"
        );
        for i in 0..60 {
            l.push_kill("srv", doc(json!({"i": i}))).await.unwrap();
        }
        let feed = l.kill_feed("srv", 100).await.unwrap();
        assert_eq!(feed.len(), opm_store::live::KILL_FEED_LEN, "{n}");
        assert_eq!(feed[0], json!({"i": 59}), "{n}: newest first");
        assert!(l.kill_feed("other", 10).await.unwrap().is_empty());
        l.heartbeat("srv-a", doc(json!({"players": 5})), Duration::from_secs(60))
            .await
            .unwrap();
        l.heartbeat(
            "srv-b",
            doc(json!({"players": 1})),
            Duration::from_millis(50),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            l.online_servers().await.unwrap(),
            vec![("srv-a".to_string(), json!({"players": 5}))],
            "{n}"
        );
        assert!(
            l.server_status("srv-b").await.unwrap().is_none(),
            "{n}: expired"
        );
        l.cache_put("lb:kills:all", "{\"a\":1}", Duration::from_secs(60))
            .await
            .unwrap();
        l.cache_put("lb:kills:week", "{}", Duration::from_secs(60))
            .await
            .unwrap();
        l.cache_put("player:x", "{}", Duration::from_secs(60))
            .await
            .unwrap();
        l.cache_put("short", "{}", Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(
            l.cache_get("lb:kills:all").await.unwrap().as_deref(),
            Some("{\"a\":1}")
        );
        l.cache_invalidate("lb:").await.unwrap();
        assert!(l.cache_get("lb:kills:week").await.unwrap().is_none(), "{n}");
        assert!(l.cache_get("player:x").await.unwrap().is_some(), "{n}");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(l.cache_get("short").await.unwrap().is_none(), "{n}: ttl");
        let window = Duration::from_secs(3600);
        let hits: Vec<u64> = [
            l.rate_hit("ip:1", window).await.unwrap(),
            l.rate_hit("ip:1", window).await.unwrap(),
            l.rate_hit("ip:2", window).await.unwrap(),
        ]
        .to_vec();
        // A window boundary may fall between the calls; then the count restarts.
        assert!(
            hits == vec![1, 2, 1] || hits == vec![1, 1, 1],
            "{n}: {hits:?}"
        );
        let mut rx = l.subscribe_unlocks();
        let notice = UnlockNotice {
            player: "g1".into(),
            code: "KILL_10".into(),
            pack: "core".into(),
            match_id: "m1".into(),
            server: "srv".into(),
            time_ms: 5,
        };
        l.publish_unlock(&notice).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("notice delivered")
            .unwrap();
        assert_eq!(got, notice, "{n}");
        b.cleanup().await;
    }
}

/// The same comparison at scale: `cargo nextest run -p opm-store
/// --run-ignored only -E 'test(million)'` (several minutes in debug builds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "large: 1 000 000 events per backend"]
async fn million_events_agree() {
    let now = now_ms();
    let events = stream(1_000_000, 99, now, 60);
    let mut prints = Vec::new();
    for b in both("million").await {
        let started = std::time::Instant::now();
        let writer = BatchWriter::spawn(
            b.stores.analytics.clone(),
            WriterConfig {
                max_rows: 20_000,
                ..fast_writer()
            },
        );
        for chunk in events.chunks(10_000) {
            writer.send_many(chunk.to_vec()).await.unwrap();
        }
        let c = writer.close().await.unwrap();
        eprintln!(
            "{}: 1 000 000 events stored in {:.1} s",
            b.name,
            started.elapsed().as_secs_f64()
        );
        assert_eq!(c.inserted, events.len() as u64);
        check_recount(&b, &events, now).await;
        prints.push((b.name, fingerprint(&b.stores, now).await));
        b.cleanup().await;
    }
    if let [(_, a), (_, b)] = &prints[..] {
        same(a, b, "embedded vs external, 1M events");
    }
}

/// Delegates to ClickHouse 18.16 and records every read query with its
/// rows, so the same SQL can be replayed on a modern engine.
struct Recording {
    inner: Arc<opm_store::analytics::clickhouse::ClickHouseAnalytics>,
    log: parking_lot::Mutex<Vec<(String, Vec<opm_store::analytics::Row>)>>,
}

#[async_trait::async_trait]
impl opm_store::analytics::AnalyticsStore for Recording {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn dialect(&self) -> opm_store::analytics::Dialect {
        self.inner.dialect()
    }
    async fn migrate(&self) -> Result<(), opm_store::StoreError> {
        self.inner.migrate().await
    }
    async fn insert(
        &self,
        events: &[opm_model::Event],
    ) -> Result<opm_store::analytics::InsertReport, opm_store::StoreError> {
        self.inner.insert(events).await
    }
    async fn high_water_marks(&self) -> Result<Vec<(String, u64)>, opm_store::StoreError> {
        self.inner.high_water_marks().await
    }
    async fn fetch(
        &self,
        sql: &str,
    ) -> Result<Vec<opm_store::analytics::Row>, opm_store::StoreError> {
        let rows = self.inner.fetch(sql).await?;
        self.log.lock().push((sql.to_string(), rows.clone()));
        Ok(rows)
    }
    async fn drop_raw_before(&self, cutoff_ms: i64) -> Result<Vec<u32>, opm_store::StoreError> {
        self.inner.drop_raw_before(cutoff_ms).await
    }
    async fn raw_count(&self) -> Result<u64, opm_store::StoreError> {
        self.inner.raw_count().await
    }
}

fn chdb_python() -> Option<String> {
    let candidates = std::env::var("OPM_CHDB_PYTHON").ok().into_iter().chain([
        "/var/tmp/opm-chdb-venv/bin/python".to_string(),
        "python3".to_string(),
    ]);
    candidates.into_iter().find(|py| {
        std::process::Command::new(py)
            .args(["-c", "import chdb"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Schema, views and every shared read query on a modern ClickHouse (chdb
/// 26.x) give the same rows as on 18.16.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_clickhouse_gives_the_same_answers() {
    let Some(python) = chdb_python() else {
        eprintln!(
            "\n!!!!!!!! SKIPPING modern ClickHouse check: no python with `chdb` (pip install chdb, or set OPM_CHDB_PYTHON).\n"
        );
        return;
    };
    let Some(b) = external("modern").await else {
        return;
    };
    let now = now_ms();
    let events = stream(5000, 5, now, 20);
    b.stores.analytics.insert(&events).await.unwrap();
    let ch = Arc::new(
        opm_store::analytics::clickhouse::ClickHouseAnalytics::new(
            opm_store::analytics::clickhouse::ClickHouseConfig::parse(
                b.config.clickhouse_url.as_deref().unwrap(),
            )
            .unwrap(),
        )
        .unwrap(),
    );
    let rows = ch
        .execute("SELECT * FROM raw_events ORDER BY server, event_id FORMAT JSONEachRow")
        .await
        .unwrap();
    let recording = Arc::new(Recording {
        inner: ch.clone(),
        log: Default::default(),
    });
    let mut stores = b.stores.clone();
    stores.analytics = recording.clone();
    fingerprint(&stores, now).await;
    let log = std::mem::take(&mut *recording.log.lock());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rows.jsonl"), rows).unwrap();
    let queries: Vec<&str> = log.iter().map(|(q, _)| q.as_str()).collect();
    std::fs::write(dir.path().join("queries.sql"), queries.join("\n;;\n")).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../clickhouse/check_modern.py"
    );
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(dir.path().join("rows.jsonl"))
        .arg(dir.path().join("queries.sql"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), log.len());
    for ((sql, old), new) in log.iter().zip(&results) {
        same(
            &Value::Array(old.iter().cloned().map(Value::Object).collect()),
            new,
            sql,
        );
    }
    eprintln!(
        "modern ClickHouse: {} queries gave the same rows as 18.16",
        log.len()
    );
    b.cleanup().await;
}
