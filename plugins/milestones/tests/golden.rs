//! Golden fixtures: `tests/golden/NAME.events.jsonl` in,
//! `NAME.expected.jsonl` out, checked whole, event by event on fresh
//! instances and with pseudo-random batch splits.

use opm_pack_milestones::{ACHIEVEMENTS, Milestones};
use opm_plugin_sdk::testing::{Harness, OutcomeKind, Split, event_id, golden_dir, prepare};
use proptest::prelude::*;

#[test]
fn golden_fixtures() {
    golden_dir::<Milestones>(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"));
}

#[test]
fn describes_the_catalogue_codes() {
    let h = Harness::<Milestones>::new().unwrap();
    let codes: Vec<&str> = h
        .info()
        .achievements
        .iter()
        .map(|a| a.code.as_str())
        .collect();
    for code in [
        "first_blood",
        "marksman",
        "soldier",
        "veteran",
        "war_hero",
        "legend",
        "immortal",
        "god_of_war",
        "headhunter",
        "executioner",
    ] {
        assert!(codes.contains(&code), "{code} missing");
    }
    assert_eq!(h.info().find("veteran").unwrap().target, 1_000);
    assert_eq!(ACHIEVEMENTS.len(), h.info().achievements.len());
}

fn kill(ts: f64, headshot: bool) -> String {
    format!(
        r#"{{"type":"player_kill","attacker_guid":"5","attacker_team":"axis","victim_guid":"6","victim_team":"allies","hitloc":"{}","timestamp":"{ts:.1}"}}"#,
        if headshot { "head" } else { "torso_lower" }
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Whatever the batch sizes, the outcomes are those of one batch, and
    /// each rung unlocks exactly once, at the kill that reaches it.
    #[test]
    fn batch_split_independent(heads in proptest::collection::vec(any::<bool>(), 1..140), sizes in proptest::collection::vec(1usize..40, 1..6)) {
        let jsonl: String = heads.iter().enumerate().map(|(i, h)| kill(10.0 + i as f64, *h) + "\n").collect();
        let events = prepare(&jsonl).unwrap();
        let whole = Harness::<Milestones>::new().unwrap().run(&events, &Split::Whole).unwrap();
        let split = Harness::<Milestones>::new().unwrap().run(&events, &Split::Sizes(sizes)).unwrap();
        prop_assert_eq!(&whole, &split);
        let unlocks: Vec<(&str, u64)> = whole.iter().filter(|o| o.kind == OutcomeKind::Unlock).map(|o| (o.code.as_str(), o.event_id)).collect();
        let mut expected = vec![("first_blood", event_id(1))];
        if heads.len() >= 100 { expected.push(("marksman", event_id(100))); }
        let mut hs = 0;
        for (i, h) in heads.iter().enumerate() {
            if *h { hs += 1; if hs == 10 { expected.push(("headshot_rookie", event_id(i as u64 + 1))); } }
        }
        expected.sort_by_key(|e| (e.1, e.0));
        let mut got = unlocks;
        got.sort_by_key(|e| (e.1, e.0));
        prop_assert_eq!(got, expected);
    }
}
