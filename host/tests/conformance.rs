//! Wire conformance against the real binary: every example payload of
//! contract §1.4 and every event type of §1.6, with all-string values and
//! with native types, over HTTP and over MQTT; the stored, normalised
//! events are checked field by field.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use opm_model::{Event, EventKind, Stance, Team};
use serde_json::{Map, Value, json};

const A1: &str = r#"[{"type":"player_kill","match_id":"no_match","session_id":"sess_f88106789e6e168b","timestamp":"9.8","attacker_name":"Daichi","attacker_guid":"unauth_39","attacker_team":"american","attacker_x":"-67.0411","attacker_y":"1504.86","attacker_z":"384.125","attacker_pitch":"0","attacker_yaw":"253.74","attacker_stance":"stand","victim_name":"Daichi","victim_guid":"unauth_39","victim_team":"american","victim_x":"-67.0411","victim_y":"1504.86","victim_z":"384.125","victim_pitch":"0","victim_yaw":"253.74","victim_stance":"stand","weapon":"grenade","damage":"112.487","hitloc":"general","mod":"grenade"}]"#;
const A2: &str = r#"[{"type":"player_spawn","match_id":"no_match","session_id":"sess_a2","timestamp":"12.35","player_name":"Elgan","player_guid":"42","player_smf_id":"42","player_team":"american","player_x":"10.5","player_y":"-20","player_z":"0","player_pitch":"0","player_yaw":"90","player_stance":"stand"},{"type":"weapon_change","match_id":"no_match","session_id":"sess_a2","timestamp":"12.4","player_name":"Elgan","player_guid":"42","player_smf_id":"42","player_team":"american","player_x":"10.5","player_y":"-20","player_z":"0","player_pitch":"0","player_yaw":"90","player_stance":"stand","old_weapon":"none","new_weapon":"Thompson"}]"#;
const A3: &str = r#"[{"type":"distance","match_id":"no_match","session_id":"sess_a3","timestamp":"30.0","player_name":"Elgan","player_guid":"42","player_team":"american","player_x":"1","player_y":"2","player_z":"3","player_pitch":"0","player_yaw":"0","player_stance":"stand","distance":1534.2,"walked":42.7,"total_distance":1534.2,"delta_distance":42.7},{"type":"jump","match_id":"no_match","session_id":"sess_a3","timestamp":"30.5","player_guid":"42","jump_height":48.5}]"#;
const A4: &str = r#"[{"type":"player_auth","match_id":"no_match","session_id":"sess_a4","timestamp":"40.25","player_name":"Elgan","player_guid":"42","player_smf_id":"42","player_team":"american","player_x":"0","player_y":"0","player_z":"0","player_pitch":"0","player_yaw":"0","player_stance":"stand","smf_member_id":"42","smf_member_name":"Elgan"}]"#;
const B1: &str = "type=player_kill&match_id=no_match&timestamp=73.6&session_id=sess_ab12&map_name=obj/obj_team2&attacker_name=Elgan&attacker_guid=42&attacker_smf_id=42&attacker_team=allies&attacker_x=-67.0&attacker_y=1504.8&attacker_z=384.1&attacker_pitch=0&attacker_yaw=253.7&attacker_stance=stand&victim_name=Bob&victim_guid=unauth_3&victim_team=axis&victim_x=0&victim_y=0&victim_z=0&inflictor=grenade_ent&hitlocation=head&mod=bullet&server_token=TOKEN&server_id=spoofed";
const B2: &str = "type=weapon_fire&player_guid=7&player_name=Tester&weapon=Thompson&ammo_remaining=29&server_token=TOKEN&server_id=test-server-01";
const C1: &str = "{\"type\":\"player_kill\",\"timestamp\":\"2026-02-02T17:30:04Z\",\"match_id\":\"bruno_mega_test\",\"attacker\":{\"guid\":\"test_p1\",\"name\":\"Player1\"},\"victim\":{\"guid\":\"test_p2\",\"name\":\"Player2\"},\"weapon\":\"M1 Garand\",\"hitloc\":\"head\"}\n{\"type\":\"chat\",\"timestamp\":\"2026-02-02T17:30:05Z\",\"match_id\":\"bruno_mega_test\",\"player_guid\":\"test_p1\",\"message\":\"gg\",\"team_only\":false}\n";
const D1: &str = r#"[{"type":"player_kill","match_id":"bruno_match","timestamp":1738540800.0,"attacker_guid":"bruno_guid","victim_guid":"victim_abc123","weapon":"Colt 45","damage":100,"hitloc":"head","mod":"MOD_PISTOL","distance":15.5}]"#;

/// (content type, body) of every §1.4 example.
fn examples(token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("application/json", A1.to_string()),
        ("application/json", A2.to_string()),
        ("application/json", A3.to_string()),
        ("application/json", A4.to_string()),
        ("text/plain", B1.replace("TOKEN", token)),
        (
            "application/x-www-form-urlencoded",
            B2.replace("TOKEN", token),
        ),
        ("application/x-ndjson", C1.to_string()),
        ("application/json", D1.to_string()),
    ]
}

fn find(events: &[Event], f: impl Fn(&Event) -> bool) -> &Event {
    events.iter().find(|e| f(e)).expect("event stored")
}

fn check_examples(events: &[Event], server_id: &str) {
    let real: Vec<&Event> = events
        .iter()
        .filter(|e| e.extra("synthetic").is_none())
        .collect();
    assert!(
        real.iter().all(|e| &*e.server == server_id),
        "server id comes from the token/topic"
    );
    assert!(
        real.iter()
            .all(|e| e.id > 0 && !e.match_id.is_empty() && &*e.match_id != "no_match")
    );

    // A1: the captured kill, every value a string.
    let k = find(events, |e| &*e.session == "sess_f88106789e6e168b");
    assert_eq!(k.kind, EventKind::PlayerKill);
    assert_eq!(k.game_time_ms, Some(9800));
    assert!(k.match_id.starts_with("sess_f88106789e6e168b-m"));
    let a = k.actor.as_ref().unwrap();
    assert_eq!(
        (&*a.guid, &*a.name, a.team, a.stance),
        ("unauth_39", "Daichi", Team::Allies, Stance::Stand)
    );
    let p = a.position.unwrap();
    assert_eq!((p.x, p.y, p.z), (-67.0411, 1504.86, 384.125));
    assert_eq!((a.pitch, a.yaw), (0.0, 253.74));
    let t = k.target.as_ref().unwrap();
    assert_eq!(
        (&*t.guid, t.team, t.health),
        ("unauth_39", Team::Allies, Some(0))
    );
    assert_eq!(
        (&*k.weapon, &*k.means_of_death, &*k.hit_location),
        ("grenade", "grenade", "general")
    );
    assert!((k.damage - 112.487).abs() < 1e-4);
    assert_eq!(
        k.extra("first_blood"),
        None,
        "a suicide by grenade is no first blood"
    );
    assert_eq!(
        k.raw.as_deref(),
        Some(&A1[1..A1.len() - 1]),
        "the original object is kept"
    );

    // A2: spawn then weapon change.
    let s = find(events, |e| {
        &*e.session == "sess_a2" && e.kind == EventKind::PlayerSpawn
    });
    let a = s.actor.as_ref().unwrap();
    assert_eq!(
        (&*a.guid, a.smf_id, a.team, a.health),
        ("42", Some(42), Team::Allies, Some(100))
    );
    assert_eq!(
        a.position.map(|p| (p.x, p.y, p.z)),
        Some((10.5, -20.0, 0.0))
    );
    assert_eq!(s.game_time_ms, Some(12_350));
    let w = find(events, |e| {
        &*e.session == "sess_a2" && e.kind == EventKind::WeaponChange
    });
    assert_eq!(&*w.weapon, "Thompson");
    assert_eq!(w.extra("old_weapon"), Some("none"));
    assert_eq!(w.match_id, s.match_id);
    assert!(
        w.time_ms - s.time_ms == 50,
        "game time becomes wall time on one anchor"
    );

    // A3: raw movement numbers; `distance` is cumulative, not a kill distance.
    let d = find(events, |e| {
        &*e.session == "sess_a3" && e.kind == EventKind::Distance
    });
    assert_eq!(d.distance, 0.0);
    assert_eq!(d.extra("distance"), Some("1534.2"));
    assert_eq!(d.extra("walked"), Some("42.7"));
    assert_eq!(d.extra("total_distance"), Some("1534.2"));
    assert_eq!(d.extra("delta_distance"), Some("42.7"));
    let j = find(events, |e| {
        &*e.session == "sess_a3" && e.kind == EventKind::Jump
    });
    assert_eq!(j.extra("jump_height"), Some("48.5"));
    assert_eq!(
        j.actor.as_ref().unwrap().team,
        Team::Allies,
        "team remembered from the distance event"
    );

    // A4: login.
    let au = find(events, |e| &*e.session == "sess_a4");
    assert_eq!(au.kind, EventKind::PlayerAuth);
    assert_eq!(au.actor.as_ref().unwrap().smf_id, Some(42));
    assert_eq!(au.extra("smf_member_id"), Some("42"));
    assert_eq!(au.extra("smf_member_name"), Some("Elgan"));

    // B1: legacy URL-encoded line with the token in the body.
    let b = find(events, |e| &*e.session == "sess_ab12");
    assert_eq!(b.kind, EventKind::PlayerKill);
    assert_eq!(&*b.map, "obj/obj_team2");
    assert_eq!((&*b.hit_location, &*b.means_of_death), ("head", "bullet"));
    assert_eq!(b.actor.as_ref().unwrap().smf_id, Some(42));
    assert_eq!(b.actor.as_ref().unwrap().team, Team::Allies);
    assert_eq!(&*b.target.as_ref().unwrap().guid, "unauth_3");
    assert_eq!(b.target.as_ref().unwrap().team, Team::Axis);
    assert_eq!(b.game_time_ms, Some(73_600));
    assert!(
        b.extra("server_token").is_none() && b.extra("server_id").is_none(),
        "credentials never stored"
    );
    assert_eq!(b.extra("inflictor"), Some("grenade_ent"));
    assert_eq!(b.extra("first_blood"), Some("true"));

    // B2: simulator line.
    let f = find(events, |e| {
        e.kind == EventKind::WeaponFire && e.actor.as_ref().is_some_and(|a| &*a.guid == "7")
    });
    assert_eq!(&*f.weapon, "Thompson");
    assert_eq!(f.extra("ammo_remaining"), Some("29"));
    assert_eq!(&*f.actor.as_ref().unwrap().name, "Tester");

    // C1: NDJSON with nested blocks and ISO timestamps.
    let c = find(events, |e| {
        &*e.match_id == "bruno_mega_test" && e.kind == EventKind::PlayerKill
    });
    assert_eq!(c.time_ms, 1_770_053_404_000);
    assert_eq!(c.game_time_ms, None);
    assert_eq!(&*c.actor.as_ref().unwrap().guid, "test_p1");
    assert_eq!(&*c.actor.as_ref().unwrap().name, "Player1");
    assert_eq!(&*c.target.as_ref().unwrap().guid, "test_p2");
    assert_eq!((&*c.weapon, &*c.hit_location), ("M1 Garand", "head"));
    let chat = find(events, |e| {
        &*e.match_id == "bruno_mega_test" && e.kind == EventKind::Chat
    });
    assert_eq!(chat.extra("message"), Some("gg"));
    assert_eq!(chat.extra("team_only"), Some("false"));

    // D1: Bruno native types and upper-case MOD names.
    let n = find(events, |e| &*e.match_id == "bruno_match");
    assert_eq!(n.time_ms, 1_738_540_800_000);
    assert_eq!((n.damage, n.distance), (100.0, 15.5));
    assert_eq!((&*n.means_of_death, &*n.weapon), ("pistol", "Colt 45"));
    assert!(n.is_headshot());
    assert_eq!(&*n.target.as_ref().unwrap().guid, "victim_abc123");
}

/// Kinds whose actor/target come from attacker_/victim_ blocks.
fn attacker_victim(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::PlayerKill
            | EventKind::Damage
            | EventKind::PlayerPain
            | EventKind::PlayerBash
            | EventKind::PlayerRoadkill
            | EventKind::PlayerCrushed
            | EventKind::PlayerTelefragged
            | EventKind::BotKilled
            | EventKind::ActorKilled
            | EventKind::Explosion
    )
}

fn num(v: f64, native: bool) -> Value {
    match (native, v.fract() == 0.0) {
        (true, true) => json!(v as i64),
        (true, false) => json!(v),
        (false, _) => Value::String(v.to_string()),
    }
}

/// One event of `type_name` with its §1.6 fields, strings or native.
fn typed_event(type_name: &str, native: bool) -> Map<String, Value> {
    let kind = EventKind::from_wire(type_name);
    let mut m = Map::new();
    let session = if native { "sess_native" } else { "sess_string" };
    m.insert("type".into(), json!(type_name));
    m.insert("case".into(), json!(type_name));
    m.insert("match_id".into(), json!("no_match"));
    m.insert("session_id".into(), json!(session));
    m.insert("timestamp".into(), num(5.5, native));
    let block = |m: &mut Map<String, Value>, prefix: &str, guid: &str, team: &str| {
        m.insert(format!("{prefix}_guid"), json!(guid));
        m.insert(format!("{prefix}_name"), json!(format!("^1{guid}")));
        m.insert(format!("{prefix}_team"), json!(team));
        m.insert(format!("{prefix}_x"), num(1.5, native));
        m.insert(format!("{prefix}_y"), num(2.0, native));
        m.insert(format!("{prefix}_z"), num(-3.25, native));
        m.insert(format!("{prefix}_pitch"), num(4.0, native));
        m.insert(format!("{prefix}_yaw"), num(5.0, native));
        m.insert(format!("{prefix}_stance"), json!("crouch"));
    };
    if attacker_victim(kind) {
        block(&mut m, "attacker", "a1", "american");
        block(&mut m, "victim", "v1", "german");
        m.insert("weapon".into(), json!("Kar98"));
        m.insert("damage".into(), num(55.5, native));
        m.insert("hitloc".into(), json!("head"));
        m.insert("mod".into(), json!("MOD_RIFLE"));
    } else if kind == EventKind::PlayerTeamkill {
        block(&mut m, "killer", "k1", "german");
        block(&mut m, "victim", "v1", "german");
        m.insert("weapon".into(), json!("MP40"));
    } else if kind == EventKind::WeaponHit {
        block(&mut m, "player", "p1", "german");
        block(&mut m, "target", "t1", "american");
        m.insert("weapon".into(), json!("MP40"));
        m.insert("hitloc".into(), json!("torso_upper"));
    } else {
        block(&mut m, "player", "p1", "german");
    }
    match kind {
        EventKind::PlayerSuicide => {
            m.insert("method".into(), json!("MOD_FALLING"));
        }
        EventKind::WeaponChange => {
            m.insert("old_weapon".into(), json!("none"));
            m.insert("new_weapon".into(), json!("Thompson"));
        }
        EventKind::GrenadeThrow | EventKind::GrenadeExplode => {
            m.insert("projectile".into(), json!("Stielhandgranate"));
        }
        EventKind::WeaponFire => {
            m.insert("weapon".into(), json!("MP40"));
            m.insert("ammo_remaining".into(), num(29.0, native));
        }
        EventKind::Distance => {
            m.insert("distance".into(), num(1534.2, native));
            m.insert("walked".into(), num(42.7, native));
        }
        EventKind::Heartbeat => {
            m.insert("round_number".into(), num(2.0, native));
            m.insert("allies_score".into(), num(3.0, native));
        }
        EventKind::MatchEnd => {
            m.insert("winning_team".into(), json!("german"));
        }
        EventKind::MapChangeStart => {
            m.insert("current_map".into(), json!("dm/mohdm1"));
            m.insert("next_map".into(), json!("dm/mohdm2"));
        }
        _ => {}
    }
    m.insert("custom_num".into(), num(29.0, native));
    m.insert(
        "custom_flag".into(),
        if native { json!(true) } else { json!("true") },
    );
    m
}

fn all_types() -> Vec<String> {
    let mut v: Vec<String> = EventKind::ALL
        .iter()
        .filter(|k| **k != EventKind::Other)
        .map(|k| k.as_str().to_string())
        .collect();
    v.push("zz_custom_event".into());
    v
}

/// Bodies (arrays of at most 20, as the game sends) of every type.
fn type_bodies(native: bool) -> Vec<String> {
    let events: Vec<Value> = all_types()
        .iter()
        .map(|t| Value::Object(typed_event(t, native)))
        .collect();
    events
        .chunks(20)
        .map(|c| serde_json::to_string(c).unwrap())
        .collect()
}

fn check_types(events: &[Event]) {
    let by_case = |native: bool, t: &str| -> Event {
        let session = if native { "sess_native" } else { "sess_string" };
        events
            .iter()
            .find(|e| &*e.session == session && e.extra("case") == Some(t))
            .unwrap_or_else(|| panic!("{t} ({session}) not stored"))
            .clone()
    };
    for t in all_types() {
        let kind = EventKind::from_wire(&t);
        let s = by_case(false, &t);
        let n = by_case(true, &t);
        for e in [&s, &n] {
            assert_eq!(e.kind, kind, "{t}");
            assert_eq!(&*e.type_name, t);
            assert_eq!(e.game_time_ms, Some(5500), "{t}");
            assert_eq!(
                e.extra("custom_num"),
                Some("29"),
                "{t}: numbers stored as their text"
            );
            assert_eq!(e.extra("custom_flag"), Some("true"), "{t}");
            let a = e
                .actor
                .as_ref()
                .unwrap_or_else(|| panic!("{t} has an actor"));
            let (guid, team) = if attacker_victim(kind) {
                ("a1", Team::Allies)
            } else if kind == EventKind::PlayerTeamkill {
                ("k1", Team::Axis)
            } else {
                ("p1", Team::Axis)
            };
            assert_eq!((&*a.guid, a.team), (guid, team), "{t}");
            assert_eq!(&*a.name, guid, "{t}: colour codes stripped");
            assert_eq!(
                a.position.map(|p| (p.x, p.y, p.z)),
                Some((1.5, 2.0, -3.25)),
                "{t}"
            );
            assert_eq!(
                (a.pitch, a.yaw, a.stance),
                (4.0, 5.0, Stance::Crouch),
                "{t}"
            );
            if attacker_victim(kind) {
                assert_eq!(&*e.target.as_ref().unwrap().guid, "v1", "{t}");
                assert_eq!((&*e.weapon, e.damage), ("Kar98", 55.5), "{t}");
                assert_eq!(
                    (&*e.hit_location, &*e.means_of_death),
                    ("head", "rifle"),
                    "{t}"
                );
            }
        }
        match kind {
            EventKind::PlayerTeamkill => assert_eq!(&*s.target.as_ref().unwrap().guid, "v1"),
            EventKind::WeaponHit => {
                assert_eq!(&*s.target.as_ref().unwrap().guid, "t1");
                assert_eq!(&*s.hit_location, "torso_upper");
            }
            EventKind::PlayerSuicide => assert_eq!(&*s.means_of_death, "falling"),
            EventKind::WeaponChange => assert_eq!(&*s.weapon, "Thompson"),
            EventKind::GrenadeThrow | EventKind::GrenadeExplode => {
                assert_eq!(&*s.weapon, "Stielhandgranate")
            }
            EventKind::WeaponFire => assert_eq!(s.extra("ammo_remaining"), Some("29")),
            EventKind::Distance => {
                assert_eq!((s.distance, s.extra("distance")), (0.0, Some("1534.2")))
            }
            EventKind::Heartbeat => assert_eq!((s.round, s.extra("allies_score")), (2, Some("3"))),
            EventKind::MapChangeStart => assert_eq!(s.extra("next_map"), Some("dm/mohdm2")),
            _ => {}
        }
        // Strings and native types normalise to the same event.
        let strip = |e: &Event| {
            let mut e = e.clone();
            e.id = 0;
            e.raw = None;
            e.time_ms = 0;
            e.session = "".into();
            e.match_id = "".into();
            e
        };
        assert_eq!(strip(&s), strip(&n), "{t}: string and native forms differ");
    }
    // The explicit match_end produced per-player outcomes.
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::MatchOutcome && e.extra("outcome").is_some())
    );
}

#[test]
fn http_examples_and_every_event_type() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--durability", "fsync"]);
    let (id, token) = server.register("conformance", "203.0.113.1", json!("12203"));
    let mut last = 0;
    for (ct, body) in examples(&token) {
        let (status, reply) = server.post(&token, ct, body.clone());
        assert_eq!(status, 202, "{body}: {reply}");
        assert_eq!(reply["status"], "accepted");
        assert_eq!(reply["rejected"], 0, "{reply}");
        last = last.max(reply["last_id"].as_u64().unwrap());
    }
    for native in [false, true] {
        for body in type_bodies(native) {
            let (status, reply) = server.post(&token, "application/json", body);
            assert_eq!(status, 202, "{reply}");
            assert_eq!(reply["rejected"], 0, "{reply}");
            last = last.max(reply["last_id"].as_u64().unwrap());
        }
    }
    server.wait_for(last);
    let events = server.events();
    check_examples(&events, &id);
    check_types(&events);
    let metrics = server.metrics();
    assert!(metrics.contains("mohaa_events_ingested_total{event_type=\"player_kill\"}"));
    assert!(metrics.contains("mohaa_events_processed_total{event_type=\"match_outcome\"}"));
    assert!(
        metrics.contains(
            "mohaa_api_requests_total{endpoint=\"/api/v1/ingest/events\",status=\"202\"}"
        )
    );
    assert!(metrics.contains("mohaa_journal_fsync_duration_seconds_bucket"));
}

#[test]
fn mqtt_examples_and_every_event_type() {
    if !common::mosquitto_available() {
        eprintln!("skipped: no Mosquitto on 127.0.0.1:1883");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let client_id = format!("opm-test-{}-{}", std::process::id(), common::free_port());
    let server = Server::start(
        dir.path(),
        &[
            "--mqtt-url",
            "mqtt://127.0.0.1:1883",
            "--mqtt-client-id",
            &client_id,
        ],
    );
    let (id, token) = server.register("conformance-mqtt", "203.0.113.2", json!(12203));
    let topic = format!("openmohaa/events/{id}");
    server.wait_subscribed();
    let mut messages: Vec<(String, Vec<u8>)> = examples(&token)
        .into_iter()
        .map(|(_, body)| (topic.clone(), body.into_bytes()))
        .collect();
    for native in [false, true] {
        for body in type_bodies(native) {
            messages.push((topic.clone(), body.into_bytes()));
        }
    }
    // A message for a server that is not registered is dropped and counted.
    messages.push((
        "openmohaa/events/not-registered".into(),
        A1.as_bytes().to_vec(),
    ));
    let expected = {
        let mut n = 0;
        for (t, b) in &messages {
            if t == &topic {
                let text = opm_model::wire::body_text(b).unwrap();
                n += opm_model::wire::split_body(&text).unwrap().len();
            }
        }
        n
    };
    common::mqtt_publish(&messages);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        server.settle();
        let stored = server
            .events()
            .iter()
            .filter(|e| e.extra("synthetic").is_none())
            .count();
        if stored >= expected {
            assert_eq!(stored, expected);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {stored} of {expected} events arrived over MQTT"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = server.events();
    check_examples(&events, &id);
    check_types(&events);
    assert!(
        server
            .metrics()
            .contains("mohaa_mqtt_messages_dropped_total{reason=\"unknown_server\"}")
    );
}

#[test]
fn http_errors_auth_and_registration() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--admin-token", "admin-secret"]);
    let (id, token) = server.register("errors", "198.51.100.1", json!(27960));
    let c = &server.client;

    // Missing and wrong tokens: 401 with an error (the game re-registers).
    let r = c
        .post(server.url("/api/v1/ingest/events"))
        .body(A1)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().unwrap()["error"], "Missing server token");
    let (status, reply) = server.post("wrong", "application/json", A1);
    assert_eq!(
        (status, reply["error"].as_str()),
        (401, Some("Invalid server token"))
    );

    // Bearer and query tokens work too.
    let r = c
        .post(server.url("/api/v1/ingest/events"))
        .bearer_auth(&token)
        .body(A1)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .post(server.url(&format!("/api/v1/ingest/events?server_token={token}")))
        .body(A1)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);

    // One bad event is rejected alone, by index.
    let body = r#"[{"type":"jump","player_guid":"1"},{"type":"player_kill","damage":"lots","attacker_guid":"1"},42,{"no_type":1},{"type":"brand_new_thing","player_guid":"2","x":"y"}]"#;
    let (status, reply) = server.post(&token, "application/json", body);
    assert_eq!(status, 202);
    assert_eq!(
        (reply["processed"].as_u64(), reply["rejected"].as_u64()),
        (Some(2), Some(3))
    );
    let idx: Vec<u64> = reply["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![1, 2, 3]);
    assert!(
        reply["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("damage")
    );
    server.wait_for(reply["last_id"].as_u64().unwrap());
    let other = server
        .events()
        .into_iter()
        .find(|e| &*e.type_name == "brand_new_thing")
        .expect("unknown types are stored");
    assert_eq!(
        (other.kind, other.extra("x")),
        (EventKind::Other, Some("y"))
    );
    assert_eq!(&*other.server, id);

    // A line-based Content-Type frames by lines even when a line is an array.
    let body = "[{\"type\":\"jump\",\"player_guid\":\"1\"},{\"type\":\"crouch\",\"player_guid\":\"1\"}]\n{\"type\":\"prone\",\"player_guid\":\"1\"}\n[{\"type\":";
    let (status, reply) = server.post(&token, "application/x-ndjson", body);
    assert_eq!(status, 202, "{reply}");
    assert_eq!(
        (reply["processed"].as_u64(), reply["rejected"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(reply["errors"][0]["index"], 3);
    let (status, _) = server.post(&token, "application/json", body);
    assert_eq!(status, 400, "sniffed as one JSON array without the hint");

    // Unreadable body: 400 naming the problem. Too large: 413.
    let (status, reply) = server.post(&token, "application/json", "[{\"type\":");
    assert_eq!(status, 400);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("invalid JSON array"),
        "{reply}"
    );
    let (status, reply) = server.post(&token, "application/json", "   ");
    assert_eq!(status, 400);
    assert!(reply["error"].as_str().unwrap().contains("empty"));
    let big = format!(
        "[{}]",
        vec![r#"{"type":"jump","player_guid":"1"}"#; 40_000].join(",")
    );
    assert!(big.len() > 1 << 20);
    let (status, reply) = server.post(&token, "application/json", big);
    assert_eq!(
        (status, reply["error"].as_str()),
        (413, Some("Request body too large"))
    );

    // Registration: port as a number or a string; a re-registration keeps
    // the id and rotates only for the token holder or an admin.
    let reg = |port: Value, token: Option<&str>, admin: Option<&str>| {
        let mut r = c
            .post(server.url("/api/v1/servers/register"))
            .json(&json!({"name": "errors", "ip_address": "198.51.100.1", "port": port}));
        if let Some(t) = token {
            r = r.header("X-Server-Token", t);
        }
        if let Some(a) = admin {
            r = r.header("X-Admin-Token", a);
        }
        let r = r.send().unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    let (status, reply) = reg(json!("27960"), None, None);
    assert_eq!(status, 409, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("already registered")
    );
    let (status, reply) = reg(json!(27960), Some(&token), None);
    assert_eq!(status, 200);
    assert_eq!(reply["server_id"], id.as_str());
    let rotated = reply["token"].as_str().unwrap().to_string();
    assert_ne!(rotated, token);
    assert_eq!(
        server.post(&token, "application/json", A1).0,
        401,
        "old token revoked"
    );
    assert_eq!(server.post(&rotated, "application/json", A1).0, 202);
    let (status, reply) = reg(json!("27960"), None, Some("admin-secret"));
    let current = reply["token"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        (status, reply["server_id"].as_str()),
        (200, Some(id.as_str()))
    );
    let (status, _) = reg(json!("not a port"), None, None);
    assert_eq!(status, 400);
    let r = c
        .post(server.url("/api/v1/servers/register"))
        .json(&json!({"ip_address": "1.2.3.4"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().unwrap()["error"],
        "Name and IP address are required"
    );

    // Tokens are stored hashed only, and a token sent in a legacy body line
    // is scrubbed from the stored original.
    let b1 = B1.replace("TOKEN", &current);
    let (status, reply) = server.post(&current, "text/plain", b1);
    assert_eq!(status, 202);
    server.wait_for(reply["last_id"].as_u64().unwrap());
    server.settle();
    let mut files = vec![dir.path().to_path_buf()];
    let mut scanned = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&p).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            for t in [&token, &rotated, &current] {
                assert!(!text.contains(t.as_str()), "{} holds a token", p.display());
            }
            scanned += 1;
        }
    }
    assert!(scanned > 3);
}

#[test]
fn approval_policy_needs_an_admin() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--registration", "approval", "--admin-token", "root"],
    );
    let (id, token) = server.register("pending", "192.0.2.9", json!("12203"));
    let (status, reply) = server.post(&token, "application/json", A1);
    assert_eq!(status, 403, "pending servers keep their token: {reply}");
    let approve = |admin: &str| {
        server
            .client
            .post(server.url(&format!("/api/v1/admin/servers/{id}/approve")))
            .bearer_auth(admin)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(approve("wrong"), 401);
    assert_eq!(approve("root"), 200);
    assert_eq!(server.post(&token, "application/json", A1).0, 202);
    let list: Value = server
        .client
        .get(server.url("/api/v1/admin/servers"))
        .header("X-Admin-Token", "root")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list["servers"][0]["status"], "active");
}
