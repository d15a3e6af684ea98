//! The native test harness: runs a pack without Wasm, the way the host
//! runs it.
//!
//! Events go through the host's own decoding (`opm_model::wire`) and
//! game-state tracker (`opm_model::tracker`), get ids 1, 2, 3… in order,
//! are filtered by the pack's subscriptions and handed over in batches.
//! State is emulated with the host's semantics: transactional per batch,
//! scope instances derived from the event each call names, and the host's
//! limits. Outcomes come back with player GUIDs, ready to compare with a
//! golden file (see [`golden`]).
//!
//! Decoding uses the fixed server id [`SERVER_ID`] and receive time
//! [`RECEIVED_MS`], so game-relative timestamps resolve the same on every
//! run.

mod golden;
mod store;

use std::collections::BTreeMap;

use opm_model::Str;
use opm_model::tracker::{SYNTHETIC_ID_BITS, Tracker};
use opm_model::wire::{DecodeContext, decode_body};
use thiserror::Error;

pub use golden::{
    GoldenOutcome, check_golden, compare, expected_path, golden_dir, read_expected, write_expected,
};
pub use opm_model::plugin::OutcomeKind;
pub use store::{StateKey, StateValue};

use crate::limits;
use crate::state::Level;
use crate::{Batch, Config, EventKind, Outcome, Pack, PackInfo};
use store::{Ended, LifeIndex, Store, Txn};

/// Server id the fixtures are decoded with.
pub const SERVER_ID: &str = "fixture";
/// Receive time the fixtures are decoded with (2023-11-14T22:13:20Z).
pub const RECEIVED_MS: i64 = 1_700_000_000_000;

/// Why a run failed.
#[derive(Debug, Error)]
pub enum HarnessError {
    #[error("events line {line}: {reason}")]
    Decode { line: usize, reason: String },
    #[error("describe failed: {0}")]
    Describe(String),
    #[error("batch {batch} (events {first_id}..={last_id}) failed: {reason}")]
    Batch {
        batch: usize,
        first_id: u64,
        last_id: u64,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}")]
    Golden {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{0}")]
    Mismatch(String),
}

/// Decodes a JSONL fixture (one game wire object per line; empty lines and
/// lines starting with `#` are skipped) and runs the host's tracker over
/// it, as the ingest pipeline does: the n-th decoded event gets the id
/// `n << SYNTHETIC_ID_BITS` (n × 1024, the journal's numbering) and the
/// synthetic lifecycle events the tracker emits (`round_end`, `match_end`,
/// one `match_outcome` per player) take their ids around it.
pub fn prepare(jsonl: &str) -> Result<Vec<opm_model::Event>, HarnessError> {
    let ctx = DecodeContext {
        server_id: Str::from(SERVER_ID),
        received_ms: RECEIVED_MS,
    };
    let mut tracker = Tracker::new();
    let mut events = Vec::new();
    let mut seq = 0u64;
    for (n, line) in jsonl.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let decoded = decode_body(line.as_bytes(), &ctx).map_err(|e| HarnessError::Decode {
            line: n + 1,
            reason: e.to_string(),
        })?;
        if let Some((_, e)) = decoded.errors.first() {
            return Err(HarnessError::Decode {
                line: n + 1,
                reason: e.to_string(),
            });
        }
        for mut ev in decoded.events {
            seq += 1;
            ev.id = event_id(seq);
            tracker.process(ev, &mut events);
        }
    }
    Ok(events)
}

/// The id of the n-th event of a fixture (from 1): `n << 10`.
pub fn event_id(n: u64) -> u64 {
    n << SYNTHETIC_ID_BITS
}

/// How the events are cut into host batches. Each batch hands the pack the
/// events of it the pack subscribed to (none: no call), and at its end the
/// host drops the state of the lives, rounds and matches that ended in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// All events in one batch.
    Whole,
    /// One event per batch.
    Each,
    /// Batches of these sizes, repeated until the events run out.
    Sizes(Vec<usize>),
    /// Pseudo-random sizes from 1 to 16 drawn from a seed.
    Seeded(u64),
}

impl Split {
    fn sizes(&self, total: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut left = total;
        let mut state = match self {
            Split::Seeded(seed) => seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1),
            _ => 0,
        };
        let mut i = 0;
        while left > 0 {
            let n = match self {
                Split::Whole => left,
                Split::Each => 1,
                Split::Sizes(sizes) if sizes.iter().all(|s| *s == 0) || sizes.is_empty() => left,
                Split::Sizes(sizes) => {
                    let s = sizes[i % sizes.len()];
                    i += 1;
                    if s == 0 {
                        continue;
                    }
                    s
                }
                Split::Seeded(_) => {
                    // A 64-bit LCG: deterministic without a dependency.
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    1 + ((state >> 33) % 16) as usize
                }
            };
            let n = n.min(left);
            out.push(n);
            left -= n;
        }
        out
    }
}

/// A pack under test, with its emulated host state.
pub struct Harness<P: Pack> {
    pack: P,
    config: Config,
    info: PackInfo,
    store: Store,
    /// Every appearance of every player so far, for the life rule.
    lives: LifeIndex,
    logs: Vec<(Level, String)>,
    /// Build a new instance (Default + describe) before every batch, as
    /// the host may after recycling one.
    fresh_instances: bool,
}

impl<P: Pack> Harness<P> {
    /// Loads the pack with an empty configuration.
    pub fn new() -> Result<Harness<P>, HarnessError> {
        Harness::with_config(Vec::new())
    }

    /// Loads the pack with the admin's settings.
    pub fn with_config(config: Vec<(String, String)>) -> Result<Harness<P>, HarnessError> {
        let config = Config::new(config);
        let (pack, info) = instantiate::<P>(&config)?;
        Ok(Harness {
            pack,
            config,
            info,
            store: Store::default(),
            lives: LifeIndex::default(),
            logs: Vec::new(),
            fresh_instances: false,
        })
    }

    /// Makes every batch run on a fresh instance, to prove the pack keeps
    /// nothing that matters in guest memory.
    pub fn fresh_instances(mut self, fresh: bool) -> Harness<P> {
        self.fresh_instances = fresh;
        self
    }

    pub fn info(&self) -> &PackInfo {
        &self.info
    }

    /// Lines the pack logged so far.
    pub fn logs(&self) -> &[(Level, String)] {
        &self.logs
    }

    /// Committed state, sorted by key.
    pub fn state(&self) -> &BTreeMap<StateKey, StateValue> {
        &self.store.committed
    }

    /// Runs a JSONL fixture.
    pub fn run_jsonl(
        &mut self,
        jsonl: &str,
        split: &Split,
    ) -> Result<Vec<GoldenOutcome>, HarnessError> {
        let events = prepare(jsonl)?;
        self.run(&events, split)
    }

    /// Runs prepared events (see [`prepare`]) in host batches, delivers the
    /// subscribed ones and returns every outcome in emission order. State
    /// carries over between calls, as on a live server.
    pub fn run(
        &mut self,
        events: &[opm_model::Event],
        split: &Split,
    ) -> Result<Vec<GoldenOutcome>, HarnessError> {
        for ev in events {
            self.lives.observe(ev);
        }
        let lives = std::mem::take(&mut self.lives);
        let result = self.run_chunks(events, split, &lives);
        self.lives = lives;
        result
    }

    fn run_chunks(
        &mut self,
        events: &[opm_model::Event],
        split: &Split,
        lives: &LifeIndex,
    ) -> Result<Vec<GoldenOutcome>, HarnessError> {
        let mut outcomes = Vec::new();
        let mut start = 0;
        for (n, size) in split.sizes(events.len()).into_iter().enumerate() {
            let chunk = &events[start..start + size];
            start += size;
            let delivered: Vec<&opm_model::Event> = chunk
                .iter()
                .filter(|e| {
                    self.info
                        .delivers(EventKind::from_wire(e.kind.as_str()), &e.weapon, &e.map)
                })
                .collect();
            if !delivered.is_empty() {
                outcomes.extend(self.run_batch(n, &delivered, lives)?);
            }
            self.store.drop_ended(&Ended::within(chunk));
        }
        Ok(outcomes)
    }

    fn run_batch(
        &mut self,
        n: usize,
        events: &[&opm_model::Event],
        lives: &LifeIndex,
    ) -> Result<Vec<GoldenOutcome>, HarnessError> {
        let fail = |reason: String| HarnessError::Batch {
            batch: n,
            first_id: events.first().map_or(0, |e| e.id),
            last_id: events.last().map_or(0, |e| e.id),
            reason,
        };
        if self.fresh_instances {
            let (pack, info) = instantiate::<P>(&self.config)?;
            if info != self.info {
                return Err(fail(
                    "describe() gave a different answer on a fresh instance".to_string(),
                ));
            }
            self.pack = pack;
        }
        let batch = to_batch(events);
        let mut txn = Txn::new(&self.store, &batch, lives);
        // The same path as the component: the SDK's counter cache in front
        // of the (emulated) host.
        let result = crate::cache::run_batch(&mut self.pack, &mut txn, &batch);
        let outcomes = result.map_err(|e| fail(format!("the pack returned an error: {e}")))?;
        if let Some(v) = txn.violation.take() {
            return Err(fail(format!("the host would refuse a state call: {v}")));
        }
        let limit = batch.len() + limits::OUTCOME_SLACK;
        if outcomes.len() > limit {
            return Err(fail(format!(
                "{} outcomes, more than the limit of {limit}",
                outcomes.len()
            )));
        }
        let mut golden = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            let (player, code, kind, event_id) = match o {
                Outcome::Unlock {
                    player,
                    code,
                    event_id,
                } => (player, code, OutcomeKind::Unlock, event_id),
                Outcome::Progress {
                    player,
                    code,
                    current,
                    target,
                    event_id,
                } => (
                    player,
                    code,
                    OutcomeKind::Progress { current, target },
                    event_id,
                ),
            };
            let Some(info) = batch.player_info(player) else {
                return Err(fail(format!(
                    "outcome for player ref {player}, which is not in the batch"
                )));
            };
            if self.info.find(&code).is_none() {
                return Err(fail(format!(
                    "outcome for code {code:?}, which describe() does not declare"
                )));
            }
            if !events.iter().any(|e| e.id == event_id) {
                return Err(fail(format!(
                    "outcome names event {event_id}, which is not in the batch"
                )));
            }
            golden.push(GoldenOutcome {
                player: info.0.to_string(),
                code,
                kind,
                event_id,
            });
        }
        self.logs.append(&mut txn.logs);
        let writes = txn.into_writes();
        for (k, v) in writes {
            match v {
                Some(v) => {
                    self.store.committed.insert(k, v);
                }
                None => {
                    self.store.committed.remove(&k);
                }
            }
        }
        Ok(golden)
    }
}

fn instantiate<P: Pack>(config: &Config) -> Result<(P, PackInfo), HarnessError> {
    let mut pack = P::default();
    let info = pack
        .describe(config)
        .map_err(|e| HarnessError::Describe(e.to_string()))?;
    info.validate()
        .map_err(|e| HarnessError::Describe(e.to_string()))?;
    Ok((pack, info))
}

/// The batch the host would send for `events`: the host's own lowering.
fn to_batch(events: &[&opm_model::Event]) -> Batch {
    let l = opm_plugin_abi::lower::lower(events.iter().copied());
    Batch::from_wire(l.events, l.symbol_text, l.symbol_ends, l.players, l.extras)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_every_event_once() {
        for split in [
            Split::Whole,
            Split::Each,
            Split::Sizes(vec![3, 0, 1]),
            Split::Sizes(vec![]),
            Split::Seeded(7),
        ] {
            for total in [0, 1, 5, 40] {
                let sizes = split.sizes(total);
                assert_eq!(sizes.iter().sum::<usize>(), total, "{split:?}");
                assert!(sizes.iter().all(|s| *s > 0), "{split:?}");
            }
        }
        assert_eq!(Split::Sizes(vec![2, 3]).sizes(9), vec![2, 3, 2, 2]);
        assert_ne!(Split::Seeded(1).sizes(200), Split::Seeded(2).sizes(200));
    }

    #[test]
    fn prepare_assigns_ids_and_tracks_lives() {
        let events = prepare(
            "# a comment\n{\"type\":\"player_spawn\",\"player_guid\":\"1\",\"timestamp\":\"1\"}\n\n{\"type\":\"player_kill\",\"attacker_guid\":\"1\",\"victim_guid\":\"2\",\"timestamp\":\"2.5\"}\n{\"type\":\"match_end\",\"timestamp\":\"3\"}\n",
        )
        .unwrap();
        let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
        // Three real events; after the match end the tracker closes the
        // round and reports one outcome per player.
        assert_eq!(ids[..3], [1024, 2048, 3072]);
        assert_eq!(ids[3..], [3073, 3074, 3075]);
        assert_eq!(events[3].kind, opm_model::EventKind::RoundEnd);
        assert!(
            events[4..]
                .iter()
                .all(|e| e.kind == opm_model::EventKind::MatchOutcome)
        );
        assert_eq!(events[1].actor.as_ref().unwrap().life, 1);
        assert_eq!(events[1].time_ms - events[0].time_ms, 1500);
        assert_eq!(events[0].time_ms, RECEIVED_MS);
        assert!(matches!(
            prepare("{\"type\":\"player_kill\",\"damage\":\"lots\"}"),
            Err(HarnessError::Decode { line: 1, .. })
        ));
    }

    #[test]
    fn life_index_follows_the_host_rule() {
        let events = prepare(
            "{\"type\":\"player_kill\",\"attacker_guid\":\"a\",\"victim_guid\":\"b\",\"timestamp\":\"1\"}\n{\"type\":\"jump\",\"player_guid\":\"a\",\"timestamp\":\"2\"}\n",
        )
        .unwrap();
        let mut idx = LifeIndex::default();
        for e in &events {
            idx.observe(e);
        }
        let s = &*events[0].session;
        // b died at the first event: from then on b is in the next life.
        assert_eq!(idx.at("b", s, event_id(1)), 1);
        assert_eq!(idx.at("b", s, event_id(2)), 2);
        assert_eq!(idx.at("a", s, event_id(2)), 1);
        assert_eq!(idx.at("c", s, event_id(2)), 1);
        assert_eq!(idx.at("b", "other-session", event_id(2)), 1);
    }
}
