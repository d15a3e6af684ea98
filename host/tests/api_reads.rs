//! The read routes end to end on the embedded stores: events into the
//! analytics store, unlocks and progress into the relational store, JSON
//! out over HTTP in the forum's shapes, cached in the live store.

use opm_model::plugin::{Commit, Outcome, OutcomeKind};
use opm_model::{Event, EventKind, Participant};
use opm_store::relational::{AchievementDef, UnlockSource};
use opm_store::{StoreConfig, Stores};
use serde_json::Value;

fn kill(id: u64, killer: &str, victim: &str, weapon: &str, hitloc: &str, t: i64) -> Event {
    let mut e = Event::new(EventKind::PlayerKill);
    e.id = id;
    e.server = "srv".into();
    e.time_ms = t;
    e.match_id = "m-1".into();
    e.map = "mohdm6".into();
    let mut a = Participant::new(killer);
    a.name = format!("Name {killer}").into();
    let mut v = Participant::new(victim);
    v.name = format!("Name {victim}").into();
    e.actor = Some(a);
    e.target = Some(v);
    e.weapon = weapon.into();
    e.hit_location = hitloc.into();
    e
}

fn fire(id: u64, who: &str, t: i64) -> Event {
    let mut e = Event::new(EventKind::WeaponFire);
    e.id = id;
    e.server = "srv".into();
    e.time_ms = t;
    e.match_id = "m-1".into();
    e.actor = Some(Participant::new(who));
    e.weapon = "Thompson".into();
    e
}

async fn serve(stores: Stores) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, opm_stats::api::router(stores))
            .await
            .unwrap()
    });
    format!("http://{addr}/api/v1")
}

async fn get(url: &str) -> Value {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_routes_answer_in_the_forum_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Stores::open(&StoreConfig::embedded(dir.path()))
        .await
        .unwrap();
    let now = opm_store::time::now_ms();
    let events = vec![
        kill(1, "alice", "bob", "Thompson", "head", now - 3000),
        kill(2, "alice", "bob", "Kar98K", "torso_upper", now - 2000),
        kill(3, "bob", "alice", "Thompson", "helmet", now - 1000),
        fire(4, "alice", now - 900),
        fire(5, "alice", now - 800),
        fire(6, "alice", now - 700),
        fire(7, "alice", now - 600),
    ];
    stores.analytics.insert(&events).await.unwrap();
    let r = &stores.relational;
    let def = |code: &str, points| AchievementDef {
        code: code.into(),
        pack: String::new(),
        pack_version: String::new(),
        name: format!("Name {code}"),
        description: "desc".into(),
        category: "combat".into(),
        tier: 1,
        points,
        icon: "icon.png".into(),
        metric: "kills".into(),
        target: Some(10),
        is_hidden: false,
    };
    r.sync_definitions(
        "core",
        "1.0.0",
        &[def("FIRST_BLOOD", 5), def("KILLS_10", 10)],
    )
    .await
    .unwrap();
    let outcome = |code: &str, kind| Outcome {
        pack: "core".into(),
        pack_version: "1.0.0".into(),
        player: "alice".into(),
        code: code.into(),
        kind,
        event_id: 1,
        match_id: "m-1".into(),
        time_ms: now - 3000,
    };
    r.commit_pack(
        &Commit {
            pack: "core".into(),
            pack_version: "1.0.0".into(),
            writes: vec![],
            outcomes: vec![
                outcome("FIRST_BLOOD", OutcomeKind::Unlock),
                outcome(
                    "KILLS_10",
                    OutcomeKind::Progress {
                        current: 2,
                        target: 10,
                    },
                ),
            ],
            positions: vec![("srv".into(), 7)],
        },
        UnlockSource::Live,
    )
    .await
    .unwrap();
    let base = serve(stores.clone()).await;

    let p = get(&format!("{base}/stats/player/alice")).await;
    for v in [&p, &p["player"]] {
        assert_eq!(v["kills"], 2);
        assert_eq!(v["deaths"], 1);
        assert_eq!(v["headshots"], 1);
        assert_eq!(v["kd_ratio"], 2.0);
        assert_eq!(v["accuracy"], 0.0);
        assert_eq!(v["name"], "Name alice");
    }
    let weapons = p["player"]["weapons"].as_array().unwrap();
    assert_eq!(weapons.len(), 2);
    // Ties on kills go by name.
    assert_eq!(weapons[0]["weapon"], "Kar98K");
    let thompson = &weapons[1];
    assert_eq!(
        (
            thompson["name"].as_str(),
            &thompson["kills"],
            &thompson["shots_fired"]
        ),
        (Some("Thompson"), &Value::from(1), &Value::from(4))
    );
    assert_eq!(p["player"]["recent_matches"][0]["match_id"], "m-1");
    assert_eq!(p["player"]["achievements"][0]["code"], "FIRST_BLOOD");
    assert!(
        stores
            .live
            .cache_get("player:alice")
            .await
            .unwrap()
            .is_some(),
        "cached"
    );

    // Unknown player: 200 and zeros.
    let nobody = get(&format!("{base}/stats/player/nobody")).await;
    assert_eq!(
        (
            nobody["kills"].clone(),
            nobody["player"]["weapons"].as_array().unwrap().len()
        ),
        (Value::from(0), 0)
    );

    let lb = get(&format!(
        "{base}/stats/leaderboard?stat=kills&period=week&limit=10&offset=0"
    ))
    .await;
    assert_eq!(lb["total"], 2);
    assert_eq!(lb["stat"], "kills");
    assert_eq!(lb["page"], 1);
    assert_eq!(lb["players"][0]["player_id"], "alice");
    assert_eq!(lb["players"][0]["value"], 2.0);
    // The forum's path form with `global` honours the `stat` query.
    let lb = get(&format!(
        "{base}/stats/leaderboard/global?stat=deaths&limit=1&offset=0"
    ))
    .await;
    assert_eq!(
        (
            lb["players"][0]["player_id"].as_str(),
            lb["players"].as_array().unwrap().len()
        ),
        (Some("bob"), 1)
    );
    let count = get(&format!("{base}/stats/leaderboard/global?count_only=1")).await;
    assert_eq!(count["total"], 2);
    let lb = get(&format!("{base}/stats/leaderboard?stat=kd&period=day")).await;
    assert_eq!(lb["players"][0]["player_id"], "alice");

    let m = get(&format!("{base}/stats/match/m-1")).await;
    assert_eq!(m["summary"]["total_kills"], 3);
    assert_eq!(m["summary"]["map_name"], "mohdm6");
    assert_eq!(m["scoreboard"][0]["player_id"], "alice");
    assert_eq!(m["scoreboard"].as_array().unwrap().len(), 2);
    let none = get(&format!("{base}/stats/match/nope")).await;
    assert_eq!(none["scoreboard"], Value::Array(vec![]));

    let a = get(&format!("{base}/achievements/player/alice")).await;
    let unlocked = a["unlocked"].as_array().unwrap();
    assert_eq!(unlocked.len(), 1);
    assert_eq!(unlocked[0]["code"], "FIRST_BLOOD");
    assert_eq!(unlocked[0]["points"], 5);
    assert_eq!(unlocked[0]["unlocked_date"], (now - 3000).div_euclid(1000));
    assert!(unlocked[0]["id_achievement"].is_i64());
    assert_eq!(a["progress"][0]["current_progress"], 2);
    assert_eq!(a["progress"][0]["requirement_value"], 10);
    assert_eq!(
        (
            a["total"].clone(),
            a["earned_points"].clone(),
            a["total_points"].clone()
        ),
        (Value::from(2), Value::from(5), Value::from(15))
    );
    let empty = get(&format!("{base}/achievements/player/nobody")).await;
    assert_eq!(empty["unlocked"], Value::Array(vec![]));
}
