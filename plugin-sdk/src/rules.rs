//! Rule helpers for the patterns most achievements follow: lifetime
//! milestones, filtered counters, per-life streaks, sliding windows on
//! event time, distinct sets and per-match or per-round aggregates.
//!
//! Every helper decides from host state and event fields only, so its
//! outcomes do not depend on how the host splits events into batches.

use crate::Ctx;
use crate::event::{AsPlayer, Event};
use crate::limits;
use crate::table::{Achievement, Rule};

/// Progress is reported each time a counter crosses a multiple of this
/// step, about every 5 % of the target: often enough for a progress bar,
/// rarely enough to stay far below the host's outcome limit.
pub fn progress_step(target: u64) -> u64 {
    (target / 20).max(1)
}

/// What a counter moving from `old` to `new` earns on a ladder of
/// `(code, threshold)` rungs: the codes whose threshold it crossed, and the
/// progress to report towards the next rung not yet reached, if the move
/// crossed a progress step of that rung.
pub fn milestone_outcomes<'r>(
    old: i64,
    new: i64,
    rungs: impl IntoIterator<Item = (&'r str, u64)> + Clone,
) -> (Vec<&'r str>, Option<(&'r str, u64, u64)>) {
    if new <= old {
        return (Vec::new(), None);
    }
    let (old_u, new_u) = (old.max(0) as u64, new.max(0) as u64);
    let unlocked = rungs
        .clone()
        .into_iter()
        .filter(|(_, t)| old_u < *t && *t <= new_u)
        .map(|(code, _)| code)
        .collect();
    let next = rungs
        .into_iter()
        .filter(|(_, t)| *t > new_u)
        .min_by_key(|(_, t)| *t);
    let progress = next.and_then(|(code, target)| {
        let step = progress_step(target);
        (old_u / step < new_u / step).then_some((code, new_u, target))
    });
    (unlocked, progress)
}

fn milestone_rungs<'t>(
    table: &'t [Achievement],
    stat: &'t str,
) -> impl Iterator<Item = (&'t str, u64)> + Clone + 't {
    table.iter().filter_map(move |a| match a.rule {
        Rule::Milestone { stat: s, threshold } if s == stat => Some((a.code, threshold)),
        _ => None,
    })
}

/// A field events can be filtered on, for counters such as "kills with the
/// Thompson" or "headshot kills while prone".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Weapon,
    HitLocation,
    MeansOfDeath,
    Map,
    GameMode,
    /// The actor's stance.
    Stance,
}

impl Filter {
    pub fn name(self) -> &'static str {
        match self {
            Filter::Weapon => "weapon",
            Filter::HitLocation => "hitloc",
            Filter::MeansOfDeath => "mod",
            Filter::Map => "map",
            Filter::GameMode => "mode",
            Filter::Stance => "stance",
        }
    }

    /// The event's value for this field ("" when the game did not send it).
    pub fn value<'a>(self, ev: &Event<'a>) -> &'a str {
        match self {
            Filter::Weapon => ev.weapon(),
            Filter::HitLocation => ev.hit_location(),
            Filter::MeansOfDeath => ev.means_of_death(),
            Filter::Map => ev.map(),
            Filter::GameMode => ev.game_mode(),
            Filter::Stance => ev.actor().map(|a| a.stance().as_str()).unwrap_or(""),
        }
    }

    /// The counter key for `stat` filtered on this field's value in `ev`.
    pub fn key(self, stat: &str, ev: &Event<'_>) -> String {
        filtered_key(stat, self, self.value(ev))
    }
}

/// `"{stat}/{field}={value}"` with the value in lower case, cut to the
/// host's 128-byte key limit: the name to use as a table's `stat` for a
/// filtered milestone, e.g. `"kills/weapon=thompson"`.
pub fn filtered_key(stat: &str, filter: Filter, value: &str) -> String {
    let mut key = format!("{stat}/{}={}", filter.name(), value.trim().to_lowercase());
    if key.len() > limits::MAX_KEY_BYTES {
        let mut end = limits::MAX_KEY_BYTES;
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        key.truncate(end);
    }
    key
}

/// Event times kept for a sliding window, stored as a blob of little-endian
/// `i64`s (at most [`WINDOW_CAPACITY`] of them, the newest kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timestamps(Vec<i64>);

/// How many times fit in one 4 KiB blob.
pub const WINDOW_CAPACITY: usize = limits::MAX_BLOB_BYTES / 8;

impl Timestamps {
    pub fn decode(bytes: &[u8]) -> Timestamps {
        Timestamps(
            bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8")))
                .collect(),
        )
    }

    pub fn encode(&self) -> Vec<u8> {
        self.0.iter().flat_map(|t| t.to_le_bytes()).collect()
    }

    /// Records `t`, forgets times more than `keep_ms` before it, and keeps
    /// at most [`WINDOW_CAPACITY`] times.
    pub fn push(&mut self, t: i64, keep_ms: i64) {
        self.0.retain(|&x| x >= t - keep_ms);
        self.0.push(t);
        if self.0.len() > WINDOW_CAPACITY {
            let excess = self.0.len() - WINDOW_CAPACITY;
            self.0.drain(..excess);
        }
    }

    /// How many recorded times lie in `[t - window_ms, t]`.
    pub fn count_within(&self, t: i64, window_ms: i64) -> u32 {
        self.0
            .iter()
            .filter(|&&x| x >= t - window_ms && x <= t)
            .count() as u32
    }

    pub fn as_slice(&self) -> &[i64] {
        &self.0
    }
}

impl Ctx<'_> {
    /// Adds `delta` to the player's lifetime counter `stat` and evaluates
    /// every [`Rule::Milestone`] of `table` on that stat: unlocks the rungs
    /// crossed and reports progress towards the next one. Returns the new
    /// value. For a filtered counter pass a key from [`Filter::key`].
    pub fn count(
        &mut self,
        ev: &Event<'_>,
        player: impl AsPlayer,
        stat: &str,
        delta: i64,
        table: &[Achievement],
    ) -> i64 {
        let player = player.player();
        let new = self.lifetime(ev, player).add(stat, delta);
        self.award_milestones(ev, player, new - delta, new, milestone_rungs(table, stat));
        new
    }

    /// Like [`Ctx::count`] with an explicit ladder of `(code, threshold)`
    /// instead of a table, for thresholds that come from configuration.
    pub fn count_ladder(
        &mut self,
        ev: &Event<'_>,
        player: impl AsPlayer,
        stat: &str,
        delta: i64,
        rungs: &[(&str, u64)],
    ) -> i64 {
        let player = player.player();
        let new = self.lifetime(ev, player).add(stat, delta);
        self.award_milestones(ev, player, new - delta, new, rungs.iter().copied());
        new
    }

    fn award_milestones<'r>(
        &mut self,
        ev: &Event<'_>,
        player: crate::Player,
        old: i64,
        new: i64,
        rungs: impl IntoIterator<Item = (&'r str, u64)> + Clone,
    ) {
        let (unlocked, progress) = milestone_outcomes(old, new, rungs);
        for code in unlocked {
            self.unlock(player, code, ev);
        }
        if let Some((code, current, target)) = progress {
            self.progress(player, code, current, target, ev);
        }
    }

    /// Counts one `stat` in the player's current life and unlocks every
    /// [`Rule::Streak`] of `table` on that stat the streak reaches. The
    /// counter lives in the life scope, so it starts again after every
    /// death or respawn. Returns the streak.
    pub fn streak(
        &mut self,
        ev: &Event<'_>,
        player: impl AsPlayer,
        stat: &str,
        table: &[Achievement],
    ) -> i64 {
        let player = player.player();
        let new = self.per_life(ev, player).add(stat, 1);
        for a in table {
            if let Rule::Streak { stat: s, n } = a.rule
                && s == stat
                && new == n as i64
            {
                self.unlock(player, a.code, ev);
            }
        }
        new
    }

    /// Records one `stat` at the event's time in a sliding window and
    /// unlocks every [`Rule::Window`] of `table` on that stat whose run
    /// reaches its `n`: the count within the window of this event is at
    /// least `n` and the count within the window of the player's previous
    /// one was below it. So five kills in three seconds award 2, 3, 4 and 5
    /// once each, and a sixth does not award 5 again. Times are kept in a
    /// lifetime blob, pruned to the longest window. Returns the count
    /// within the longest window. Assumes event time does not run
    /// backwards for a player, which the host's tracker guarantees.
    pub fn window(
        &mut self,
        ev: &Event<'_>,
        player: impl AsPlayer,
        stat: &str,
        table: &[Achievement],
    ) -> u32 {
        let player = player.player();
        let windows: Vec<(&str, u32, i64)> = table
            .iter()
            .filter_map(|a| match a.rule {
                Rule::Window {
                    stat: s,
                    n,
                    window_ms,
                } if s == stat => Some((a.code, n, window_ms)),
                _ => None,
            })
            .collect();
        let keep = windows.iter().map(|w| w.2).max().unwrap_or(0);
        let key = format!("{stat}.times");
        let t = ev.time_ms();
        let mut state = self.lifetime(ev, player);
        let mut times = Timestamps::decode(&state.blob(&key));
        let previous = times.as_slice().last().copied();
        let before: Vec<u32> = windows
            .iter()
            .map(|w| previous.map_or(0, |p| times.count_within(p, w.2)))
            .collect();
        times.push(t, keep);
        state.put_blob(&key, &times.encode());
        for ((code, n, window_ms), before) in windows.into_iter().zip(before) {
            if before < n && n <= times.count_within(t, window_ms) {
                self.unlock(player, code, ev);
            }
        }
        times.count_within(t, keep)
    }

    /// Adds `member` to the player's lifetime set `set` and unlocks every
    /// [`Rule::Distinct`] of `table` on that set the count reaches, with
    /// progress towards the next. Returns the number of distinct members.
    pub fn distinct(
        &mut self,
        ev: &Event<'_>,
        player: impl AsPlayer,
        set: &str,
        member: &str,
        table: &[Achievement],
    ) -> u32 {
        let player = player.player();
        let mut state = self.lifetime(ev, player);
        let new = state.insert(set, member);
        let count = state.count(set);
        if new {
            let rungs = table.iter().filter_map(|a| match a.rule {
                Rule::Distinct { set: s, n } if s == set => Some((a.code, n as u64)),
                _ => None,
            });
            self.award_milestones(ev, player, count as i64 - 1, count as i64, rungs);
        }
        count
    }
}

/// How a player's match ended, from the host's `match_outcome` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchResult {
    Win,
    Loss,
    Draw,
}

impl MatchResult {
    /// The result a `match_outcome` event reports for its actor.
    pub fn of(ev: &Event<'_>) -> Option<MatchResult> {
        if ev.kind() != crate::EventKind::MatchOutcome {
            return None;
        }
        match ev.extra("outcome")? {
            "win" => Some(MatchResult::Win),
            "loss" => Some(MatchResult::Loss),
            "draw" => Some(MatchResult::Draw),
            _ => None,
        }
    }
}

/// A player's counters for one match, kept in one lifetime blob tagged with
/// the match id. Not in the match scope: the host drops match-scope state
/// when the batch holding `match_end` commits, and the `match_outcome`
/// events that follow it may arrive in the next batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct MatchTally {
    match_id: String,
    stats: Vec<(String, i64)>,
}

const MATCH_TALLY_KEY: &str = "sdk.match_tally";

impl MatchTally {
    fn decode(bytes: &[u8]) -> MatchTally {
        fn parse(bytes: &[u8]) -> Option<MatchTally> {
            let len = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
            let match_id = std::str::from_utf8(bytes.get(2..2 + len)?)
                .ok()?
                .to_string();
            let mut rest = &bytes[2 + len..];
            let mut stats = Vec::new();
            while let Some((&n, tail)) = rest.split_first() {
                let name = std::str::from_utf8(tail.get(..n as usize)?)
                    .ok()?
                    .to_string();
                let value =
                    i64::from_le_bytes(tail.get(n as usize..n as usize + 8)?.try_into().ok()?);
                stats.push((name, value));
                rest = &tail[n as usize + 8..];
            }
            Some(MatchTally { match_id, stats })
        }
        parse(bytes).unwrap_or_default()
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.match_id.len() as u16).to_le_bytes());
        out.extend_from_slice(self.match_id.as_bytes());
        for (name, value) in &self.stats {
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
        out
    }

    fn get(&self, stat: &str) -> i64 {
        self.stats
            .iter()
            .find(|(n, _)| n == stat)
            .map_or(0, |(_, v)| *v)
    }
}

impl Ctx<'_> {
    fn match_tally(&mut self, ev: &Event<'_>, player: crate::Player) -> MatchTally {
        let tally = MatchTally::decode(&self.lifetime(ev, player).blob(MATCH_TALLY_KEY));
        if tally.match_id == ev.match_id() {
            tally
        } else {
            MatchTally {
                match_id: ev.match_id().to_string(),
                stats: Vec::new(),
            }
        }
    }

    /// Adds to the player's counter `stat` for the event's match and
    /// returns its value in this match. Stat names are at most 255 bytes;
    /// all of a player's match stats share one 4 KiB blob.
    pub fn count_in_match(
        &mut self,
        ev: &Event<'_>,
        player: impl AsPlayer,
        stat: &str,
        delta: i64,
    ) -> i64 {
        let player = player.player();
        let mut tally = self.match_tally(ev, player);
        let value = match tally.stats.iter_mut().find(|(n, _)| n == stat) {
            Some((_, v)) => {
                *v += delta;
                *v
            }
            None => {
                tally.stats.push((stat.chars().take(255).collect(), delta));
                delta
            }
        };
        self.lifetime(ev, player)
            .put_blob(MATCH_TALLY_KEY, &tally.encode());
        value
    }

    /// The player's counter `stat` for the event's match (0 when absent).
    pub fn match_stat(&mut self, ev: &Event<'_>, player: impl AsPlayer, stat: &str) -> i64 {
        let player = player.player();
        self.match_tally(ev, player).get(stat)
    }

    /// On a `match_outcome` event (the host emits one per player whenever
    /// a match ends, explicitly or not), evaluates every [`Rule::PerMatch`]
    /// of `table` against the actor's [`Ctx::count_in_match`] counters of
    /// that match and unlocks the ones met. Returns the player's result;
    /// `None` for other events. Subscribe to
    /// [`EventKind::MatchOutcome`](crate::EventKind::MatchOutcome) to use it.
    pub fn finish_match(&mut self, ev: &Event<'_>, table: &[Achievement]) -> Option<MatchResult> {
        let result = MatchResult::of(ev)?;
        let player = ev.actor()?.player();
        let tally = self.match_tally(ev, player);
        for a in table {
            if let Rule::PerMatch { stat, min, max } = a.rule
                && (min..=max).contains(&tally.get(stat))
            {
                self.unlock(player, a.code, ev);
            }
        }
        Some(result)
    }
}

/// Which instance an [`Aggregate`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    Match,
    Round,
}

/// A per-round (or per-match) aggregate of a player: a few counters that
/// are evaluated once, when the player's round is over.
///
/// For matches prefer [`Ctx::count_in_match`] and [`Ctx::finish_match`]:
/// the host ends every match with a `match_outcome` per player. Rounds
/// have no per-player end event (`round_end` names no players, and state
/// calls reach a player only through an event of the batch), so a round
/// aggregate is closed per player: explicitly by [`Aggregate::close`] on
/// an event that names the player, or implicitly by the player's first
/// event in a later round, which hands back the closed aggregate to
/// evaluate. The counters live in one lifetime blob tagged with the round
/// (or match) they belong to.
#[derive(Debug, Clone, Copy)]
pub struct Aggregate {
    pub key: &'static str,
    pub per: Per,
    /// Number of counters.
    pub fields: usize,
}

/// An aggregate whose match is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Match id, or `"{match}#{round}"`.
    pub instance: String,
    pub values: Vec<i64>,
}

impl Aggregate {
    fn instance(&self, ev: &Event<'_>) -> String {
        match self.per {
            Per::Match => ev.match_id().to_string(),
            Per::Round => format!("{}#{}", ev.match_id(), ev.round()),
        }
    }

    fn decode(&self, bytes: &[u8]) -> Option<Closed> {
        let len = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
        let instance = std::str::from_utf8(bytes.get(2..2 + len)?)
            .ok()?
            .to_string();
        let mut values: Vec<i64> = bytes[2 + len..]
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8")))
            .collect();
        values.resize(self.fields, 0);
        Some(Closed { instance, values })
    }

    fn encode(&self, open: &Closed) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + open.instance.len() + 8 * open.values.len());
        out.extend_from_slice(&(open.instance.len() as u16).to_le_bytes());
        out.extend_from_slice(open.instance.as_bytes());
        for v in &open.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Adds `delta` to counter `field` of the player's aggregate for the
    /// event's match. If the stored aggregate belongs to an earlier match,
    /// it is returned, closed, and a new one is started.
    pub fn add(
        &self,
        ctx: &mut Ctx<'_>,
        ev: &Event<'_>,
        player: impl AsPlayer,
        field: usize,
        delta: i64,
    ) -> Option<Closed> {
        let instance = self.instance(ev);
        let mut state = ctx.lifetime(ev, player);
        let stored = self.decode(&state.blob(self.key));
        let (closed, mut open) = match stored {
            Some(s) if s.instance == instance => (None, s),
            other => (
                other,
                Closed {
                    instance,
                    values: vec![0; self.fields],
                },
            ),
        };
        if let Some(v) = open.values.get_mut(field) {
            *v += delta;
        }
        state.put_blob(self.key, &self.encode(&open));
        closed
    }

    /// Closes the player's open aggregate, whatever match it belongs to.
    pub fn close(
        &self,
        ctx: &mut Ctx<'_>,
        ev: &Event<'_>,
        player: impl AsPlayer,
    ) -> Option<Closed> {
        let mut state = ctx.lifetime(ev, player);
        let stored = self.decode(&state.blob(self.key));
        if stored.is_some() {
            state.put_blob(self.key, &[]);
        }
        stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_tally_round_trips() {
        let t = MatchTally {
            match_id: "sess-m3".into(),
            stats: vec![("kills".into(), 12), ("deaths".into(), -1)],
        };
        assert_eq!(MatchTally::decode(&t.encode()), t);
        assert_eq!(MatchTally::decode(&[1, 2, 3]), MatchTally::default());
        assert_eq!(t.get("deaths"), -1);
        assert_eq!(t.get("nope"), 0);
    }

    #[test]
    fn filtered_keys() {
        assert_eq!(
            filtered_key("kills", Filter::Weapon, " Thompson "),
            "kills/weapon=thompson"
        );
        assert_eq!(
            filtered_key("hs", Filter::HitLocation, "head"),
            "hs/hitloc=head"
        );
        let long = filtered_key("kills", Filter::Map, &"é".repeat(100));
        assert!(long.len() <= limits::MAX_KEY_BYTES && long.starts_with("kills/map=é"));
    }

    #[test]
    fn progress_every_five_percent_of_the_next_rung() {
        let rungs = [("a", 1u64), ("b", 100), ("c", 500)];
        assert_eq!(milestone_outcomes(0, 1, rungs), (vec!["a"], None));
        assert_eq!(
            milestone_outcomes(4, 5, rungs),
            (vec![], Some(("b", 5, 100)))
        );
        assert_eq!(milestone_outcomes(5, 6, rungs), (vec![], None));
        assert_eq!(
            milestone_outcomes(99, 100, rungs),
            (vec!["b"], Some(("c", 100, 500)))
        );
        assert_eq!(
            milestone_outcomes(0, 600, rungs),
            (vec!["a", "b", "c"], None)
        );
        assert_eq!(milestone_outcomes(5, 5, rungs), (vec![], None));
        assert_eq!(milestone_outcomes(5, 3, rungs), (vec![], None));
    }

    #[test]
    fn timestamps_round_trip_and_cap() {
        let mut t = Timestamps::default();
        for i in 0..(WINDOW_CAPACITY as i64 + 10) {
            t.push(i, 1_000_000);
        }
        assert_eq!(t.as_slice().len(), WINDOW_CAPACITY);
        assert_eq!(t.as_slice()[0], 10);
        assert_eq!(Timestamps::decode(&t.encode()), t);
        assert!(t.encode().len() <= limits::MAX_BLOB_BYTES);
    }
}
