//! The achievement catalogue with the real binary: the bundled packs'
//! definitions are synced into the relational store at startup, served by
//! `/api/v1/achievements`, and name the unlocks of
//! `/api/v1/achievements/player/{guid}`.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};

fn get(server: &Server, path: &str) -> Value {
    let r = server.client.get(server.url(path)).send().unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().unwrap()
}

fn by_code<'a>(list: &'a [Value], code: &str) -> &'a Value {
    list.iter()
        .find(|d| d["code"] == code)
        .unwrap_or_else(|| panic!("{code} not in {list:?}"))
}

fn ev(kind: &str, ts: &str, extra: Value) -> Value {
    let mut e = json!({"type": kind, "match_id": "m_cat", "session_id": "sess_cat",
        "timestamp": ts, "map_name": "mohdm6"});
    e.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    e
}

#[test]
fn bundled_definitions_are_served_and_name_unlocks() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);

    // The sync runs before the server listens: no waiting needed.
    let list = get(&server, "/api/v1/achievements");
    let list = list.as_array().expect("a plain array");
    let first_blood = by_code(list, "first_blood");
    assert_eq!(first_blood["name"], "First Blood");
    assert_eq!(first_blood["description"], "Get your first kill");
    assert_eq!(first_blood["tier"], 1);
    assert_eq!(first_blood["points"], 5);
    assert_eq!(first_blood["requirement_value"], 1);
    assert_eq!(first_blood["is_hidden"], false);
    assert_eq!(first_blood["pack"], "milestones");
    assert!(first_blood["id_achievement"].is_i64(), "{first_blood}");
    let marksman = by_code(list, "marksman");
    assert_eq!(marksman["requirement_value"], 100);
    assert_eq!(marksman["tier"], 2);
    let double_kill = by_code(list, "double_kill");
    assert_eq!(double_kill["name"], "Double Kill");
    assert_eq!(double_kill["tier"], 2);
    assert_eq!(double_kill["points"], 25);
    assert_eq!(double_kill["pack"], "streaks");
    let ids: std::collections::HashSet<i64> = list
        .iter()
        .map(|d| d["id_achievement"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), list.len(), "ids are unique");
    // The trailing-slash form the forum calls answers the same.
    assert_eq!(
        get(&server, "/api/v1/achievements/").as_array().unwrap(),
        list
    );

    // An unlock now carries the definition's id, name, tier and points.
    let (_, token) = server.register("Catalogue", "10.7.7.7", json!("12203"));
    let kill = |ts: &str, victim: &str| {
        ev(
            "player_kill",
            ts,
            json!({"attacker_guid": "cat_alice", "attacker_name": "Alice",
                "attacker_team": "allies", "victim_guid": victim, "victim_name": victim,
                "victim_team": "axis", "weapon": "Thompson", "hitloc": "torso_upper",
                "mod": "bullet"}),
        )
    };
    let events = json!([
        ev("match_start", "1", json!({})),
        kill("2.0", "cat_bob"),
        kill("3.0", "cat_carl"),
    ]);
    let (status, reply) = server.post(&token, "application/json", events.to_string());
    assert_eq!(status, 202, "{reply}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let player = loop {
        let p = get(&server, "/api/v1/achievements/player/cat_alice");
        let codes: Vec<&str> = p["unlocked"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|u| u["code"].as_str())
            .collect();
        if codes.contains(&"first_blood") && codes.contains(&"double_kill") {
            break p;
        }
        assert!(Instant::now() < deadline, "no unlocks: {p}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let unlocked = player["unlocked"].as_array().unwrap();
    let fb = by_code(unlocked, "first_blood");
    assert_eq!(fb["name"], "First Blood");
    assert_eq!(fb["id_achievement"], first_blood["id_achievement"]);
    assert_eq!(fb["tier"], 1);
    assert_eq!(fb["points"], 5);
    assert_eq!(fb["requirement_value"], 1);
    let dk = by_code(unlocked, "double_kill");
    assert_eq!(dk["name"], "Double Kill");
    assert_eq!(dk["id_achievement"], double_kill["id_achievement"]);
    assert_eq!(player["total"], json!(list.len()));
}
