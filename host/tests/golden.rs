//! Loadgen recordings as golden streams: a seed gives the same recording
//! byte for byte, and `opm-stats import` feeds it through the pipeline into
//! the stores with every event and the tracker's lifecycle events.

mod common;

use std::collections::BTreeMap;

use opm_model::EventKind;

fn opm(args: &[&str]) -> String {
    common::opm(args, &[])
}

#[test]
fn recordings_are_deterministic_and_import_completely() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |name: &str, seed: &str| {
        let path = dir.path().join(name);
        opm(&[
            "loadgen",
            "--dry-run",
            "--servers",
            "3",
            "--events",
            "6000",
            "--seed",
            seed,
            "--record",
            path.to_str().unwrap(),
        ]);
        std::fs::read(path).unwrap()
    };
    let a = rec("a.jsonl", "11");
    assert_eq!(a, rec("b.jsonl", "11"), "same seed, same stream");
    assert_ne!(a, rec("c.jsonl", "12"));

    // The recording speaks the game's wire format.
    let mut sent = 0usize;
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    for line in String::from_utf8(a).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let batch = v["batch"].as_array().unwrap();
        assert!(!batch.is_empty() && batch.len() <= 20);
        for e in batch {
            sent += 1;
            *types
                .entry(e["type"].as_str().unwrap().to_string())
                .or_default() += 1;
            assert_eq!(e["match_id"], "no_match");
        }
    }

    let data = dir.path().join("data");
    let out = opm(&[
        "import",
        dir.path().join("a.jsonl").to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--export-events",
    ]);
    assert_eq!(out.trim(), format!("imported {sent} events, rejected 0"));
    let events =
        opm_stats::ingest::event_log::EventLog::read_all(&data.join("events").join("events.jsonl"))
            .unwrap();
    let real: Vec<_> = events
        .iter()
        .filter(|e| e.extra("synthetic").is_none())
        .collect();
    assert_eq!(real.len(), sent, "every recorded event stored once");
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for e in &real {
        *stored.entry(e.type_name.to_string()).or_default() += 1;
    }
    assert_eq!(stored, types);
    // Every explicit match end produced one outcome per player of the match.
    let ends = real
        .iter()
        .filter(|e| e.kind == EventKind::MatchEnd)
        .count();
    let outcomes: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::MatchOutcome)
        .collect();
    assert!(ends > 0, "the recording has complete matches");
    assert!(outcomes.len() >= ends * 8);
    assert!(
        outcomes
            .iter()
            .all(|e| matches!(e.extra("outcome"), Some("win" | "loss" | "draw")))
    );
    assert!(real.iter().any(|e| e.extra("first_blood") == Some("true")));
}
