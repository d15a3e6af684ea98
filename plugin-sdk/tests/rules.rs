//! Rule helper semantics against brute-force references, through the
//! native harness with random batch splits.
//!
//! The references read the tracked event stream (what the host hands to
//! packs) and recompute every rule from the whole history, so they share
//! nothing with the helpers' incremental state.

use opm_model::EventKind as HostKind;
use opm_plugin_sdk::prelude::*;
use opm_plugin_sdk::rules::{Timestamps, milestone_outcomes};
use opm_plugin_sdk::testing::{GoldenOutcome, Harness, HarnessError, OutcomeKind, Split, prepare};
use proptest::prelude::*;

const MILESTONES: [(&str, u64); 4] = [("m1", 1), ("m5", 5), ("m20", 20), ("m50", 50)];
const STREAKS: [(&str, u64); 2] = [("s3", 3), ("s7", 7)];
const WINDOWS: [(&str, u32, i64); 3] = [("w2", 2, 1_000), ("w3", 3, 2_500), ("w4", 4, 5_000)];

const TABLE: &[Achievement] = &[
    Achievement::new("m1", "M1", "").rule(Rule::Milestone {
        stat: "kills",
        threshold: 1,
    }),
    Achievement::new("m5", "M5", "").rule(Rule::Milestone {
        stat: "kills",
        threshold: 5,
    }),
    Achievement::new("m20", "M20", "").rule(Rule::Milestone {
        stat: "kills",
        threshold: 20,
    }),
    Achievement::new("m50", "M50", "").rule(Rule::Milestone {
        stat: "kills",
        threshold: 50,
    }),
    Achievement::new("s3", "S3", "").rule(Rule::Streak {
        stat: "streak",
        n: 3,
    }),
    Achievement::new("s7", "S7", "").rule(Rule::Streak {
        stat: "streak",
        n: 7,
    }),
    Achievement::new("w2", "W2", "").rule(Rule::Window {
        stat: "kills",
        n: 2,
        window_ms: 1_000,
    }),
    Achievement::new("w3", "W3", "").rule(Rule::Window {
        stat: "kills",
        n: 3,
        window_ms: 2_500,
    }),
    Achievement::new("w4", "W4", "").rule(Rule::Window {
        stat: "kills",
        n: 4,
        window_ms: 5_000,
    }),
    Achievement::new("d3", "D3", "").rule(Rule::Distinct {
        set: "weapons",
        n: 3,
    }),
    Achievement::new("busy", "Busy", "").rule(Rule::PerMatch {
        stat: "kills",
        min: 3,
        max: i64::MAX,
    }),
    Achievement::new("pacifist", "Pacifist", "").rule(Rule::PerMatch {
        stat: "kills",
        min: 0,
        max: 0,
    }),
];

/// A pack exercising every table-driven helper.
#[derive(Default)]
struct Probe;

impl Pack for Probe {
    fn describe(&mut self, _config: &Config) -> Result<PackInfo, PackError> {
        Ok(PackInfo::new("probe", "0.0.1")
            .achievements(TABLE)
            .subscribe(Subscription::kinds(&[
                EventKind::PlayerKill,
                EventKind::MatchOutcome,
            ])))
    }

    fn on_batch(&mut self, ctx: &mut Ctx<'_>, batch: &Batch) -> Result<(), PackError> {
        for ev in batch.events() {
            if ctx.finish_match(&ev, TABLE).is_some() {
                continue;
            }
            let Some(killer) = ev.credited_kill() else {
                continue;
            };
            ctx.count(&ev, killer, "kills", 1, TABLE);
            ctx.streak(&ev, killer, "streak", TABLE);
            ctx.window(&ev, killer, "kills", TABLE);
            ctx.distinct(&ev, killer, "weapons", ev.weapon(), TABLE);
            ctx.count_in_match(&ev, killer, "kills", 1);
            if ev.extra("fail") == Some("1") {
                return Err(PackError::Internal("asked to fail".into()));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// `killer` kills `victim` (a suicide when equal) `gap` ms later.
    Kill {
        killer: u8,
        victim: u8,
        gap: u32,
        weapon: u8,
    },
    Spawn {
        player: u8,
    },
    NewMatch,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => (0u8..3, 0u8..3, 0u32..3_000, 0u8..4).prop_map(|(killer, victim, gap, weapon)| Step::Kill { killer, victim, gap, weapon }),
        2 => (0u8..3).prop_map(|player| Step::Spawn { player }),
        1 => Just(Step::NewMatch),
    ]
}

fn fixture(steps: &[Step]) -> String {
    let mut t = 10_000u64;
    let mut out = String::new();
    let ts = |t: u64| format!("{}.{:03}", t / 1000, t % 1000);
    for s in steps {
        let line = match s {
            Step::Kill {
                killer,
                victim,
                gap,
                weapon,
            } => {
                t += u64::from(*gap);
                format!(
                    r#"{{"type":"player_kill","attacker_guid":"p{killer}","victim_guid":"p{victim}","weapon":"w{weapon}","timestamp":"{}"}}"#,
                    ts(t)
                )
            }
            Step::Spawn { player } => {
                t += 1;
                format!(
                    r#"{{"type":"player_spawn","player_guid":"p{player}","timestamp":"{}"}}"#,
                    ts(t)
                )
            }
            Step::NewMatch => {
                t += 1;
                format!(r#"{{"type":"match_start","timestamp":"{}"}}"#, ts(t))
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn unlock(player: &str, code: &str, event_id: u64) -> GoldenOutcome {
    GoldenOutcome {
        player: player.to_string(),
        code: code.to_string(),
        kind: OutcomeKind::Unlock,
        event_id,
    }
}

/// Recomputes every rule from the whole history at each event.
fn reference(events: &[opm_model::Event]) -> Vec<GoldenOutcome> {
    let credited = |e: &opm_model::Event| -> Option<String> {
        let (a, t) = (e.actor.as_ref()?, e.target.as_ref()?);
        (e.kind == HostKind::PlayerKill && a.guid != t.guid).then(|| a.guid.to_string())
    };
    let mut out = Vec::new();
    for (k, ev) in events.iter().enumerate() {
        let history = &events[..=k];
        if ev.kind == HostKind::MatchOutcome {
            let p = &ev.actor.as_ref().unwrap().guid;
            let kills = history
                .iter()
                .filter(|e| e.match_id == ev.match_id && credited(e).as_deref() == Some(&**p))
                .count();
            if kills >= 3 {
                out.push(unlock(p, "busy", ev.id));
            }
            if kills == 0 {
                out.push(unlock(p, "pacifist", ev.id));
            }
            continue;
        }
        let Some(p) = credited(ev) else {
            continue;
        };
        let mine: Vec<&opm_model::Event> = history
            .iter()
            .filter(|e| credited(e).as_deref() == Some(&p))
            .collect();
        // Lifetime milestones, progress every 5 % of the next rung.
        let c = mine.len() as u64;
        for (code, t) in MILESTONES {
            if c == t {
                out.push(unlock(&p, code, ev.id));
            }
        }
        if let Some((code, t)) = MILESTONES
            .iter()
            .copied()
            .filter(|(_, t)| *t > c)
            .min_by_key(|(_, t)| *t)
        {
            let step = (t / 20).max(1);
            if (c - 1) / step < c / step {
                out.push(GoldenOutcome {
                    player: p.clone(),
                    code: code.to_string(),
                    kind: OutcomeKind::Progress {
                        current: c,
                        target: t,
                    },
                    event_id: ev.id,
                });
            }
        }
        // Streak: kills in the same life of the same session.
        let life = ev.actor.as_ref().unwrap().life;
        let streak = mine
            .iter()
            .filter(|e| e.session == ev.session && e.actor.as_ref().unwrap().life == life)
            .count() as u64;
        for (code, n) in STREAKS {
            if streak == n {
                out.push(unlock(&p, code, ev.id));
            }
        }
        // Windows: runs reaching n, from counts at this kill and the last.
        let count_at = |i: usize, w: i64| {
            let t = mine[i].time_ms;
            mine[..=i]
                .iter()
                .filter(|e| e.time_ms >= t - w && e.time_ms <= t)
                .count() as u32
        };
        let last = mine.len() - 1;
        for (code, n, w) in WINDOWS {
            let before = if last == 0 { 0 } else { count_at(last - 1, w) };
            if before < n && n <= count_at(last, w) {
                out.push(unlock(&p, code, ev.id));
            }
        }
        // Distinct weapons, progress towards 3 at each new one.
        let weapons = |es: &[&opm_model::Event]| {
            let mut w: Vec<&str> = es.iter().map(|e| &*e.weapon).collect();
            w.sort();
            w.dedup();
            w.len() as u64
        };
        let (before, after) = (weapons(&mine[..last]), weapons(&mine));
        if after > before {
            if after == 3 {
                out.push(unlock(&p, "d3", ev.id));
            } else if after < 3 {
                out.push(GoldenOutcome {
                    player: p.clone(),
                    code: "d3".to_string(),
                    kind: OutcomeKind::Progress {
                        current: after,
                        target: 3,
                    },
                    event_id: ev.id,
                });
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn helpers_match_the_reference_whatever_the_split(steps in proptest::collection::vec(step(), 1..160), seed in any::<u64>()) {
        let events = prepare(&fixture(&steps)).unwrap();
        let expected = reference(&events);
        let whole = Harness::<Probe>::new().unwrap().run(&events, &Split::Whole).unwrap();
        prop_assert_eq!(&whole, &expected);
        let split = Harness::<Probe>::new().unwrap().fresh_instances(true).run(&events, &Split::Seeded(seed)).unwrap();
        prop_assert_eq!(&split, &expected);
    }

    /// However a counter's increments are grouped, each rung is crossed
    /// exactly once, at the increment that reaches it.
    #[test]
    fn milestones_unlock_once(deltas in proptest::collection::vec(1i64..30, 1..60)) {
        let rungs = [("a", 1u64), ("b", 7), ("c", 40), ("d", 100)];
        let mut total = 0i64;
        let mut seen: Vec<(&str, i64)> = Vec::new();
        for d in &deltas {
            let (unlocked, _) = milestone_outcomes(total, total + d, rungs);
            total += d;
            seen.extend(unlocked.into_iter().map(|c| (c, total)));
        }
        for (code, t) in rungs {
            let hits: Vec<i64> = seen.iter().filter(|(c, _)| *c == code).map(|(_, at)| *at).collect();
            if total >= t as i64 {
                prop_assert_eq!(hits.len(), 1);
                // Reached by the increment that ended at hits[0].
                prop_assert!(hits[0] >= t as i64);
            } else {
                prop_assert!(hits.is_empty());
            }
        }
    }

    /// The window blob counts exactly what a brute-force scan counts.
    #[test]
    fn window_counts_match_brute_force(gaps in proptest::collection::vec(0i64..2_000, 1..200), w in 1i64..6_000) {
        let mut times = Timestamps::default();
        let mut all = Vec::new();
        let mut t = 0;
        for g in gaps {
            t += g;
            all.push(t);
            times = Timestamps::decode(&times.encode());
            times.push(t, w);
            let brute = all.iter().filter(|&&x| x >= t - w && x <= t).count() as u32;
            prop_assert_eq!(times.count_within(t, w), brute);
        }
    }
}

#[test]
fn a_failed_batch_leaves_no_trace() {
    let mut h = Harness::<Probe>::new().unwrap();
    let ok = r#"{"type":"player_kill","attacker_guid":"a","victim_guid":"b","weapon":"w","timestamp":"1"}"#;
    let bad = r#"{"type":"player_kill","attacker_guid":"a","victim_guid":"b","weapon":"w","timestamp":"2","fail":"1"}"#;
    let events = prepare(&format!("{ok}\n{bad}\n")).unwrap();
    let first = h.run(&events[..1], &Split::Whole).unwrap();
    assert_eq!(first[0].code, "m1");
    let before = h.state().clone();
    let err = h.run(&events[1..], &Split::Whole).unwrap_err();
    assert!(matches!(err, HarnessError::Batch { .. }), "{err}");
    assert_eq!(h.state(), &before);
}

#[test]
fn the_host_limits_are_enforced() {
    #[derive(Default)]
    struct LongKey;
    impl Pack for LongKey {
        fn describe(&mut self, _config: &Config) -> Result<PackInfo, PackError> {
            Ok(PackInfo::new("long-key", "0.0.1")
                .achievement(Achievement::new("never", "Never", "").info())
                .subscribe(Subscription::kinds(&[EventKind::Jump])))
        }
        fn on_batch(&mut self, ctx: &mut Ctx<'_>, batch: &Batch) -> Result<(), PackError> {
            for ev in batch.events() {
                let p = ev.actor().unwrap();
                ctx.lifetime(&ev, p).add(&"k".repeat(129), 1);
            }
            Ok(())
        }
    }
    let err = Harness::<LongKey>::new()
        .unwrap()
        .run_jsonl(r#"{"type":"jump","player_guid":"1"}"#, &Split::Whole)
        .unwrap_err();
    assert!(err.to_string().contains("129 bytes"), "{err}");
}

#[test]
fn round_aggregates_close_on_the_next_round() {
    #[derive(Default)]
    struct Rounds;
    const KILLS: Aggregate = Aggregate {
        key: "round",
        per: Per::Round,
        fields: 1,
    };
    impl Pack for Rounds {
        fn describe(&mut self, _config: &Config) -> Result<PackInfo, PackError> {
            Ok(PackInfo::new("rounds", "0.0.1")
                .achievement(Achievement::new("round_3", "Three", "").info())
                .subscribe(Subscription::kinds(&[EventKind::PlayerKill])))
        }
        fn on_batch(&mut self, ctx: &mut Ctx<'_>, batch: &Batch) -> Result<(), PackError> {
            for ev in batch.events() {
                let Some(k) = ev.credited_kill() else {
                    continue;
                };
                if let Some(closed) = KILLS.add(ctx, &ev, k, 0, 1)
                    && closed.values[0] >= 3
                {
                    ctx.unlock(k, "round_3", &ev);
                }
            }
            Ok(())
        }
    }
    let kill = |t: u32| {
        format!(
            r#"{{"type":"player_kill","attacker_guid":"a","victim_guid":"b","timestamp":"{t}"}}"#
        )
    };
    let round = |n: u32, t: u32| {
        format!(r#"{{"type":"round_start","round_number":"{n}","timestamp":"{t}"}}"#)
    };
    let jsonl = [
        round(1, 1),
        kill(2),
        kill(3),
        kill(4),
        round(2, 5),
        kill(6),
        kill(7),
        round(3, 8),
        kill(9),
    ]
    .join("\n");
    let out = Harness::<Rounds>::new()
        .unwrap()
        .run_jsonl(&jsonl, &Split::Each)
        .unwrap();
    // Round 1 (three kills) is closed by the first kill of round 2; round 2
    // had two.
    assert_eq!(
        out,
        vec![unlock("a", "round_3", opm_plugin_sdk::testing::event_id(6))]
    );
}

#[test]
fn describe_is_validated_like_the_host_does() {
    #[derive(Default)]
    struct Empty;
    impl Pack for Empty {
        fn describe(&mut self, _config: &Config) -> Result<PackInfo, PackError> {
            Ok(PackInfo::new("Empty Pack", "0.0.1")
                .subscribe(Subscription::kinds(&[EventKind::Jump])))
        }
        fn on_batch(&mut self, _ctx: &mut Ctx<'_>, _batch: &Batch) -> Result<(), PackError> {
            Ok(())
        }
    }
    let err = Harness::<Empty>::new().err().expect("refused");
    assert!(err.to_string().contains("lower case"), "{err}");
}
