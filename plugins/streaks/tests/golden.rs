//! Golden fixtures: `tests/golden/NAME.events.jsonl` in,
//! `NAME.expected.jsonl` out, checked whole, event by event on fresh
//! instances and with pseudo-random batch splits.

use opm_pack_streaks::Streaks;
use opm_plugin_sdk::testing::{Harness, Split, event_id, golden_dir, prepare};
use proptest::prelude::*;

#[test]
fn golden_fixtures() {
    golden_dir::<Streaks>(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"));
}

/// One line per step: `Some(gap_ms)` is a bot kill by player 1 that long
/// after the previous step, `None` is player 1's suicide.
fn fixture(steps: &[Option<u32>]) -> String {
    let mut t = 1_000u64;
    let mut out = String::new();
    for step in steps {
        match step {
            Some(gap) => {
                t += u64::from(*gap);
                out.push_str(&format!(
                    r#"{{"type":"bot_killed","attacker_guid":"1","attacker_team":"axis","victim_guid":"bot","timestamp":"{}.{:03}"}}"#,
                    t / 1000,
                    t % 1000
                ));
            }
            None => {
                t += 1;
                out.push_str(&format!(
                    r#"{{"type":"player_suicide","player_guid":"1","player_team":"axis","method":"MOD_FALLING","timestamp":"{}.{:03}"}}"#,
                    t / 1000,
                    t % 1000
                ));
            }
        }
        out.push('\n');
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Streak unlocks follow a reference that counts kills since the last
    /// death, and no batch split changes any outcome.
    #[test]
    fn streaks_reset_on_death_whatever_the_split(
        steps in proptest::collection::vec(prop_oneof![9 => (4_000u32..9_000).prop_map(Some), 1 => Just(None)], 1..120),
        seed in any::<u64>(),
    ) {
        let events = prepare(&fixture(&steps)).unwrap();
        let whole = Harness::<Streaks>::new().unwrap().run(&events, &Split::Whole).unwrap();
        let split = Harness::<Streaks>::new().unwrap().run(&events, &Split::Seeded(seed)).unwrap();
        prop_assert_eq!(&whole, &split);
        // Gaps of 4 s or more: no multi-kills, only streaks.
        let mut expected = Vec::new();
        let mut streak = 0;
        for (i, step) in steps.iter().enumerate() {
            match step {
                Some(_) => {
                    streak += 1;
                    let code = match streak { 5 => "killing_spree", 10 => "unstoppable", 15 => "rampage", 25 => "godlike", _ => "" };
                    if !code.is_empty() {
                        expected.push((code.to_string(), event_id(i as u64 + 1)));
                    }
                }
                None => streak = 0,
            }
        }
        let got: Vec<(String, u64)> = whole.iter().map(|o| (o.code.clone(), o.event_id)).collect();
        prop_assert_eq!(got, expected);
    }
}
