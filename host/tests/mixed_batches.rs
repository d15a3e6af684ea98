//! Property: in any mix of valid and corrupt events, sent as a JSON array
//! or as NDJSON, every valid event is accepted and stored, and every bad
//! one is rejected and named by its index.

mod common;

use common::Server;
use proptest::prelude::*;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
enum Item {
    Valid {
        kind: &'static str,
        numeric: bool,
    },
    /// A field that must be a number is not.
    BadNumber,
    /// No `type`.
    NoType,
    /// A timestamp that is no time.
    BadTimestamp,
    /// An array element that is not an object.
    NotObject,
    /// A line that is not JSON at all (NDJSON only).
    Garbage,
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        4 => (prop::sample::select(vec!["player_kill", "jump", "weapon_fire", "chat", "something_new"]), any::<bool>())
            .prop_map(|(kind, numeric)| Item::Valid { kind, numeric }),
        1 => Just(Item::BadNumber),
        1 => Just(Item::NoType),
        1 => Just(Item::BadTimestamp),
        1 => Just(Item::NotObject),
        1 => Just(Item::Garbage),
    ]
}

fn render(item: &Item, marker: &str) -> Value {
    match item {
        Item::Valid { kind, numeric } => {
            let damage = if *numeric { json!(33.5) } else { json!("33.5") };
            json!({"type": kind, "session_id": "sess_prop", "timestamp": "4.5", "attacker_guid": "a",
                   "victim_guid": "v", "player_guid": "p", "damage": damage, "marker": marker})
        }
        Item::BadNumber => json!({"type": "player_kill", "damage": "a lot", "marker": marker}),
        Item::NoType => json!({"player_guid": "p", "marker": marker}),
        Item::BadTimestamp => json!({"type": "jump", "timestamp": "yesterday", "marker": marker}),
        Item::NotObject => json!(42),
        Item::Garbage => unreachable!("rendered as text"),
    }
}

#[test]
fn valid_events_survive_any_mix() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--durability", "batch"]);
    let (_, token) = server.register("proptest", "192.0.2.77", json!("12203"));
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let run = std::sync::atomic::AtomicU64::new(0);
    let strategy = (prop::collection::vec(item(), 1..30), any::<bool>());
    let result = runner.run(&strategy, |(items, ndjson)| {
        let n = run.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        check_mix(&server, &token, items, ndjson, n)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn check_mix(
    server: &Server,
    token: &str,
    items: Vec<Item>,
    ndjson: bool,
    run: u64,
) -> Result<(), TestCaseError> {
    // Broken JSON text can only be isolated line by line.
    let items: Vec<Item> = items
        .into_iter()
        .map(|i| {
            if !ndjson && matches!(i, Item::Garbage) {
                Item::NotObject
            } else {
                i
            }
        })
        .collect();
    let markers: Vec<String> = (0..items.len()).map(|i| format!("r{run}-{i}")).collect();
    let texts: Vec<String> = items
        .iter()
        .zip(&markers)
        .map(|(it, m)| match it {
            Item::Garbage => format!("{{\"type\":\"jump\",\"marker\":\"{m}\""),
            other => render(other, m).to_string(),
        })
        .collect();
    let body = if ndjson {
        texts.join("\n")
    } else {
        format!("[{}]", texts.join(","))
    };
    let (status, reply) = server.post(token, "application/json", body);
    prop_assert_eq!(status, 202, "{}", reply);
    let bad: Vec<u64> = items
        .iter()
        .enumerate()
        .filter(|(_, i)| !matches!(i, Item::Valid { .. }))
        .map(|(i, _)| i as u64)
        .collect();
    let named: Vec<u64> = reply["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    prop_assert_eq!(&named, &bad);
    prop_assert!(
        reply["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["error"].as_str().unwrap().is_empty())
    );
    let valid = items.len() - bad.len();
    prop_assert_eq!(reply["processed"].as_u64(), Some(valid as u64));
    if valid > 0 {
        server.wait_for(reply["last_id"].as_u64().unwrap());
        let stored: Vec<String> = server
            .events()
            .iter()
            .filter_map(|e| e.extra("marker").map(str::to_string))
            .filter(|m| m.starts_with(&format!("r{run}-")))
            .collect();
        let expected: Vec<String> = items
            .iter()
            .zip(&markers)
            .filter(|(i, _)| matches!(i, Item::Valid { .. }))
            .map(|(_, m)| m.clone())
            .collect();
        prop_assert_eq!(stored, expected, "valid events stored once, in order");
    }
    Ok(())
}
