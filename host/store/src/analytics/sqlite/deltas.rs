//! What one batch adds to each rollup table, summed per rollup key before
//! anything is written: a batch of 1 000 events touches a few hundred
//! rollup rows, each written once.
//!
//! Keys hold numbers: day or hour numbers, and the batch's strings
//! (guids, weapons, maps, match ids) numbered by [`Names`], so each string
//! of an event is hashed once, not once per rollup it feeds. The
//! `YYYY-MM-DD` text of a day is made once per distinct day when the rows
//! are written.

// foldhash: seeded per process like SipHash (player guids and weapon
// names come from game servers), at a fraction of its cost on the
// writer's hottest loop.
use foldhash::HashMap;
use foldhash::HashMapExt as _;

use opm_model::{Event, EventKind as K, Str};

use super::super::rows::{self, Contribution, Role};
use crate::time;

/// A value with the time it was seen; the later non-empty one wins.
#[derive(Default, Clone)]
pub(super) struct Named<T = Str> {
    pub value: T,
    pub ms: i64,
}

impl<T: AsRef<str> + Clone> Named<T> {
    fn offer(&mut self, value: &T, ms: i64) {
        let ms = if value.as_ref().is_empty() { 0 } else { ms };
        if ms > self.ms {
            self.value = value.clone();
            self.ms = ms;
        }
    }
}

pub(super) struct MatchDelta {
    pub server: Str,
    pub map: Str,
    pub game_type: Str,
    pub started: i64,
    pub ended: i64,
    pub max_round: u32,
    pub events: u64,
    pub kills: u64,
}

/// One player's day: last name, events and counts.
#[derive(Default)]
pub(super) struct PlayerDay {
    pub name: Named,
    pub events: u64,
    pub counts: Contribution,
}

/// One player's match: last name, last team and counts (events, kills,
/// deaths, headshots, suicides, team kills, damage dealt, damage taken).
#[derive(Default)]
pub(super) struct MatchPlayer {
    pub name: Named,
    pub team: Named<&'static str>,
    pub counts: [f64; 8],
}

/// The distinct strings of a batch, numbered in order of first use.
#[derive(Default)]
pub(super) struct Names {
    ids: HashMap<Str, Id>,
    texts: Vec<Str>,
}

/// A string's number in [`Names`].
pub(super) type Id = u32;

impl Names {
    fn id(&mut self, text: &Str) -> Id {
        if let Some(id) = self.ids.get(text) {
            return *id;
        }
        let id = self.texts.len() as Id;
        self.texts.push(text.clone());
        self.ids.insert(text.clone(), id);
        id
    }

    pub fn text(&self, id: Id) -> &str {
        &self.texts[id as usize]
    }
}

/// Days are day numbers (days since 1970-01-01), hours hour numbers;
/// players, weapons, maps, hit locations, matches and servers are [`Id`]s
/// of `names`.
#[derive(Default)]
pub(super) struct Deltas {
    pub names: Names,
    pub player_daily: HashMap<(i64, Id), PlayerDay>,
    /// events, kills, deaths, headshots, shots fired, shots hit, damage.
    pub weapon: HashMap<(i64, Id, Id), [f64; 7]>,
    /// events, kills, deaths, headshots, damage dealt.
    pub map: HashMap<(i64, Id, Id), [f64; 5]>,
    /// events, hits, kills, damage dealt, hits taken, deaths, damage taken.
    pub hitloc: HashMap<(i64, Id, Id), [f64; 7]>,
    pub heat: HashMap<(i64, Id, &'static str, i32, i32), u64>,
    /// events, kills, headshots, damage dealt.
    pub map_daily: HashMap<(i64, Id), [f64; 4]>,
    pub matches: HashMap<Id, MatchDelta>,
    pub match_players: HashMap<(Id, Id), MatchPlayer>,
    /// events, kills.
    pub activity: HashMap<(i64, Id), [u64; 2]>,
}

fn add_contribution(into: &mut Contribution, c: &Contribution) {
    into.kills += c.kills;
    into.deaths += c.deaths;
    into.headshots += c.headshots;
    into.suicides += c.suicides;
    into.team_kills += c.team_kills;
    into.bash_kills += c.bash_kills;
    into.grenade_kills += c.grenade_kills;
    into.bot_kills += c.bot_kills;
    into.damage_dealt += c.damage_dealt;
    into.damage_taken += c.damage_taken;
    into.shots_fired += c.shots_fired;
    into.shots_hit += c.shots_hit;
    into.jumps += c.jumps;
    into.reloads += c.reloads;
    into.distance += c.distance;
    into.playtime_seconds += c.playtime_seconds;
}

fn add<const N: usize>(into: &mut [f64; N], v: [f64; N]) {
    for (a, b) in into.iter_mut().zip(v) {
        *a += b;
    }
}

/// The larger of two strings, keeping the shared one.
fn max_str(into: &mut Str, other: &Str) {
    if **other > **into {
        *into = other.clone();
    }
}

impl Deltas {
    pub fn add(&mut self, e: &Event) {
        let day = time::day_number(e.time_ms);
        let kill = rows::is_kill(e);
        let headshot = kill && rows::is_headshot(&e.hit_location);
        let map = self.names.id(&e.map);
        let match_id = (!e.match_id.is_empty()).then(|| self.names.id(&e.match_id));
        let weapon = (!e.weapon.is_empty()).then(|| self.names.id(&e.weapon));
        let hit_location = (!e.hit_location.is_empty()
            && matches!(e.kind, K::PlayerKill | K::WeaponHit | K::Damage))
        .then(|| self.names.id(&e.hit_location));
        for (role, p) in rows::roles(e) {
            let c = Contribution::of(e, role);
            let player = self.names.id(&p.guid);
            let slot = self.player_daily.entry((day, player)).or_default();
            slot.name.offer(&p.name, e.time_ms);
            slot.events += 1;
            add_contribution(&mut slot.counts, &c);

            let weapon_kinds = matches!(
                e.kind,
                K::PlayerKill | K::WeaponFire | K::WeaponHit | K::Damage
            );
            if let Some(weapon) = weapon {
                let row = match role {
                    Role::Actor if weapon_kinds => Some([
                        1.0,
                        c.kills as f64,
                        0.0,
                        c.headshots as f64,
                        c.shots_fired as f64,
                        c.shots_hit as f64,
                        c.damage_dealt,
                    ]),
                    Role::Target if e.kind == K::PlayerKill => {
                        Some([1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
                    }
                    _ => None,
                };
                if let Some(row) = row {
                    add(
                        self.weapon.entry((day, player, weapon)).or_insert([0.0; 7]),
                        row,
                    );
                }
            }
            if !e.map.is_empty() {
                let row = match role {
                    Role::Actor => [
                        1.0,
                        c.kills as f64,
                        c.deaths as f64,
                        c.headshots as f64,
                        c.damage_dealt,
                    ],
                    Role::Target => [1.0, 0.0, c.deaths as f64, 0.0, 0.0],
                };
                add(self.map.entry((day, player, map)).or_insert([0.0; 5]), row);
            }
            if let Some(hit_location) = hit_location {
                let hit = (e.kind == K::WeaponHit) as u64 as f64;
                let row = match role {
                    Role::Actor => [1.0, hit, c.kills as f64, c.damage_dealt, 0.0, 0.0, 0.0],
                    Role::Target => [1.0, 0.0, 0.0, 0.0, hit, c.deaths as f64, c.damage_taken],
                };
                add(
                    self.hitloc
                        .entry((day, player, hit_location))
                        .or_insert([0.0; 7]),
                    row,
                );
            }
            if let Some(match_id) = match_id {
                let slot = self.match_players.entry((match_id, player)).or_default();
                slot.name.offer(&p.name, e.time_ms);
                slot.team.offer(&p.team.as_str(), e.time_ms);
                add(
                    &mut slot.counts,
                    [
                        1.0,
                        c.kills as f64,
                        c.deaths as f64,
                        c.headshots as f64,
                        c.suicides as f64,
                        c.team_kills as f64,
                        c.damage_dealt,
                        c.damage_taken,
                    ],
                );
            }
        }
        if kill {
            for (layer, p) in [("kill", &e.actor), ("death", &e.target)] {
                if let Some(pos) = p.as_ref().and_then(|p| p.position) {
                    *self
                        .heat
                        .entry((day, map, layer, rows::cell(pos.x), rows::cell(pos.y)))
                        .or_default() += 1;
                }
            }
        }
        let dealt = if e.kind == K::Damage && rows::guid(&e.target) != rows::guid(&e.actor) {
            e.damage as f64
        } else {
            0.0
        };
        if !e.map.is_empty() {
            add(
                self.map_daily.entry((day, map)).or_insert([0.0; 4]),
                [1.0, kill as u64 as f64, headshot as u64 as f64, dealt],
            );
        }
        if let Some(match_id) = match_id {
            let m = self.matches.entry(match_id).or_insert_with(|| MatchDelta {
                server: e.server.clone(),
                map: e.map.clone(),
                game_type: e.game_mode.clone(),
                started: e.time_ms,
                ended: e.time_ms,
                max_round: 0,
                events: 0,
                kills: 0,
            });
            max_str(&mut m.server, &e.server);
            max_str(&mut m.map, &e.map);
            max_str(&mut m.game_type, &e.game_mode);
            m.started = m.started.min(e.time_ms);
            m.ended = m.ended.max(e.time_ms);
            m.max_round = m.max_round.max(e.round);
            m.events += 1;
            m.kills += kill as u64;
        }
        if !e.server.is_empty() {
            let server = self.names.id(&e.server);
            let a = self
                .activity
                .entry((e.time_ms.div_euclid(3_600_000), server))
                .or_default();
            a[0] += 1;
            a[1] += kill as u64;
        }
    }

    /// `player_period_stats` deltas from the per-day player deltas: the
    /// same counts summed into every period bucket each day belongs to.
    /// Values: events, kills, deaths, headshots, shots fired, shots hit,
    /// damage dealt.
    pub fn periods(&self) -> HashMap<(&'static str, String, Id), (Named, [f64; 7])> {
        let mut buckets: HashMap<i64, [(&'static str, String); 5]> = HashMap::new();
        let mut out: HashMap<(&'static str, String, Id), (Named, [f64; 7])> = HashMap::new();
        for ((day, player), d) in &self.player_daily {
            let of_day = buckets.entry(*day).or_insert_with(|| period_buckets(*day));
            for (period, bucket) in of_day.iter() {
                let slot = out
                    .entry((period, bucket.clone(), *player))
                    .or_insert_with(|| (Named::default(), [0.0; 7]));
                slot.0.offer(&d.name.value, d.name.ms);
                let c = &d.counts;
                add(
                    &mut slot.1,
                    [
                        d.events as f64,
                        c.kills as f64,
                        c.deaths as f64,
                        c.headshots as f64,
                        c.shots_fired as f64,
                        c.shots_hit as f64,
                        c.damage_dealt,
                    ],
                );
            }
        }
        out
    }
}

/// The leaderboard buckets a day falls in: all time, the day, its ISO week
/// (Monday), month and year, each named by its first day.
fn period_buckets(day: i64) -> [(&'static str, String); 5] {
    let ms = day * 86_400_000;
    [
        ("all", String::new()),
        ("day", time::day_string(ms)),
        ("week", time::week_start_string(ms)),
        ("month", time::month_start_string(ms)),
        ("year", time::year_start_string(ms)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use opm_model::Participant;

    #[test]
    fn periods_sum_days_into_every_bucket_they_belong_to() {
        // 2026-12-06 is a Sunday, 2026-12-07 a Monday: other weeks, one month.
        let day_ms = |d: u32| time::days_from_civil(2026, 12, d) * 86_400_000 + 3_600_000;
        let mut d = Deltas::default();
        for day in [6, 7, 7] {
            let mut e = Event::new(K::PlayerKill);
            e.time_ms = day_ms(day);
            e.actor = Some(Participant::new("a"));
            e.target = Some(Participant::new("b"));
            d.add(&e);
        }
        let p = d.periods();
        let id = |guid: &str| d.names.ids[&Str::from(guid)];
        let kills = |period: &'static str, bucket: &str| {
            p.get(&(period, bucket.to_string(), id("a")))
                .map(|(_, v)| v[1])
        };
        assert_eq!(kills("all", ""), Some(3.0));
        assert_eq!(kills("day", "2026-12-07"), Some(2.0));
        assert_eq!(kills("week", "2026-11-30"), Some(1.0));
        assert_eq!(kills("week", "2026-12-07"), Some(2.0));
        assert_eq!(kills("month", "2026-12-01"), Some(3.0));
        assert_eq!(kills("year", "2026-01-01"), Some(3.0));
        let deaths = p.get(&("all", String::new(), id("b"))).unwrap().1[2];
        assert_eq!(deaths, 3.0);
    }

    #[test]
    fn match_summary_keeps_the_largest_names_and_the_span() {
        let mut d = Deltas::default();
        for (ms, map) in [(2_000, "dm/mohdm1"), (1_000, "obj/obj_team2")] {
            let mut e = Event::new(K::PlayerSpawn);
            e.time_ms = ms;
            e.match_id = "m1".into();
            e.map = map.into();
            e.server = "s".into();
            d.add(&e);
        }
        let m = &d.matches[&d.names.ids[&Str::from("m1")]];
        assert_eq!(
            (&*m.map, m.started, m.ended, m.events),
            ("obj/obj_team2", 1_000, 2_000, 2)
        );
    }
}
