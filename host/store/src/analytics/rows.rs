//! How an event counts: the one definition of every rollup rule.
//!
//! SQLite applies these rules in Rust ([`Contribution`]), ClickHouse in its
//! materialized views (`clickhouse/002_rollups.sql`); the two are kept in
//! step by the cross-backend tests, which also recount a generated stream
//! independently. The rules, per event with actor A and target T:
//!
//! * a *kill* is `player_kill` with A and T set and T ≠ A; it gives A a kill
//!   (a headshot when the hit location is head or helmet, a grenade kill
//!   when the weapon or means of death names a grenade) and T a death;
//! * a `player_kill` of oneself (T = A) or by the world (A empty) is a
//!   suicide and a death for the victim; `player_suicide` adds a suicide;
//! * `damage` adds to A's damage dealt and T's damage taken (self-damage
//!   is not counted); `weapon_fire` / `weapon_hit` are shots fired / hit;
//! * `player_teamkill`, `player_bash`, `bot_killed`, `jump`, `reload` count
//!   for A; `distance` adds the walked delta (`delta_distance`, else
//!   `walked`; the cumulative `distance` field is never summed);
//!   `disconnect` adds the session's `playtime` / `time_played` seconds
//!   when the game sends one;
//! * every row also counts `events`, so no rollup row is ever all zero
//!   (ClickHouse's SummingMergeTree would delete such rows in merges).

use opm_model::{Event, EventKind, Participant};

/// Side of an event a player row is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Actor,
    Target,
}

pub fn guid(p: &Option<Participant>) -> &str {
    p.as_ref().map(|p| &*p.guid).unwrap_or("")
}

/// Headshot hit locations, also used by the MVs.
pub fn is_headshot(hit_location: &str) -> bool {
    matches!(hit_location, "head" | "helmet")
}

/// Whether the weapon or means of death names a grenade, in any case.
/// Runs for every stored event: no lowercased copies.
pub fn is_grenade(e: &Event) -> bool {
    let grenade = |s: &str| {
        s.as_bytes()
            .windows(b"grenade".len())
            .any(|w| w.eq_ignore_ascii_case(b"grenade"))
    };
    grenade(&e.weapon) || grenade(&e.means_of_death)
}

/// Walked distance of a `distance` event.
pub fn moved(e: &Event) -> f64 {
    if e.kind != EventKind::Distance {
        return 0.0;
    }
    e.extra_f64("delta_distance")
        .or_else(|| e.extra_f64("walked"))
        .unwrap_or(0.0)
        .max(0.0)
}

/// Session seconds a `disconnect` reports.
pub fn playtime(e: &Event) -> f64 {
    if e.kind != EventKind::Disconnect {
        return 0.0;
    }
    e.extra_f64("playtime")
        .or_else(|| e.extra_f64("time_played"))
        .unwrap_or(0.0)
        .max(0.0)
}

/// Cell of a position on a heatmap: 100 game units square.
pub fn cell(v: f32) -> i32 {
    ((v as f64) / 100.0).floor() as i32
}

/// What one event adds to the per-player rollups for one player.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contribution {
    pub kills: u64,
    pub deaths: u64,
    pub headshots: u64,
    pub suicides: u64,
    pub team_kills: u64,
    pub bash_kills: u64,
    pub grenade_kills: u64,
    pub bot_kills: u64,
    pub damage_dealt: f64,
    pub damage_taken: f64,
    pub shots_fired: u64,
    pub shots_hit: u64,
    pub jumps: u64,
    pub reloads: u64,
    pub distance: f64,
    pub playtime_seconds: f64,
}

/// True for a kill of another player: the event that counts kills.
pub fn is_kill(e: &Event) -> bool {
    let (a, t) = (guid(&e.actor), guid(&e.target));
    e.kind == EventKind::PlayerKill && !a.is_empty() && !t.is_empty() && t != a
}

/// The player rows an event contributes to: the actor when set, and the
/// target when set and different from the actor.
pub fn roles(e: &Event) -> impl Iterator<Item = (Role, &Participant)> {
    let a = e.actor.as_ref().filter(|p| !p.guid.is_empty());
    let t = e
        .target
        .as_ref()
        .filter(|p| !p.guid.is_empty() && Some(&p.guid) != a.map(|a| &a.guid));
    a.map(|p| (Role::Actor, p))
        .into_iter()
        .chain(t.map(|p| (Role::Target, p)))
}

impl Contribution {
    pub fn of(e: &Event, role: Role) -> Contribution {
        let mut c = Contribution::default();
        let (a, t) = (guid(&e.actor), guid(&e.target));
        let kill = is_kill(e);
        match role {
            Role::Actor => {
                if kill {
                    c.kills = 1;
                    c.headshots = is_headshot(&e.hit_location) as u64;
                    c.grenade_kills = is_grenade(e) as u64;
                }
                let self_kill = e.kind == EventKind::PlayerKill && (t.is_empty() || t == a);
                c.deaths = self_kill as u64;
                c.suicides = (self_kill || e.kind == EventKind::PlayerSuicide) as u64;
                c.team_kills = (e.kind == EventKind::PlayerTeamkill) as u64;
                c.bash_kills = (e.kind == EventKind::PlayerBash) as u64;
                c.bot_kills = (e.kind == EventKind::BotKilled) as u64;
                if e.kind == EventKind::Damage && t != a {
                    c.damage_dealt = e.damage as f64;
                }
                c.shots_fired = (e.kind == EventKind::WeaponFire) as u64;
                c.shots_hit = (e.kind == EventKind::WeaponHit) as u64;
                c.jumps = (e.kind == EventKind::Jump) as u64;
                c.reloads = (e.kind == EventKind::Reload) as u64;
                c.distance = moved(e);
                c.playtime_seconds = playtime(e);
            }
            Role::Target => {
                c.deaths = (e.kind == EventKind::PlayerKill) as u64;
                // Killed by the world, or a suicide reported without actor.
                c.suicides = (a.is_empty()
                    && matches!(e.kind, EventKind::PlayerKill | EventKind::PlayerSuicide))
                    as u64;
                if e.kind == EventKind::Damage {
                    c.damage_taken = e.damage as f64;
                }
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grenades_are_found_in_weapon_or_means_of_death_in_any_case() {
        let with = |weapon: &str, means: &str| {
            let mut e = Event::new(EventKind::PlayerKill);
            e.weapon = weapon.into();
            e.means_of_death = means.into();
            is_grenade(&e)
        };
        assert!(with("Stielhandgranate", "GRENADE"));
        assert!(with("M2 Frag Grenade", "bullet"));
        assert!(with("", "mod_grenade"));
        assert!(!with("Kar98", "bullet"));
        assert!(!with("", ""));
        assert!(!with("gren", "ade"));
    }

    fn ev(kind: EventKind, a: &str, t: &str) -> Event {
        let mut e = Event::new(kind);
        if !a.is_empty() {
            e.actor = Some(Participant::new(a));
        }
        if !t.is_empty() {
            e.target = Some(Participant::new(t));
        }
        e
    }

    #[test]
    fn kill_counts_for_both_sides() {
        let mut e = ev(EventKind::PlayerKill, "a", "b");
        e.hit_location = "helmet".into();
        e.weapon = "Frag Grenade".into();
        let r: Vec<_> = roles(&e).map(|(r, p)| (r, p.guid.to_string())).collect();
        assert_eq!(
            r,
            vec![(Role::Actor, "a".into()), (Role::Target, "b".into())]
        );
        let a = Contribution::of(&e, Role::Actor);
        assert_eq!(
            (a.kills, a.headshots, a.grenade_kills, a.deaths),
            (1, 1, 1, 0)
        );
        let b = Contribution::of(&e, Role::Target);
        assert_eq!((b.kills, b.deaths, b.suicides), (0, 1, 0));
    }

    #[test]
    fn self_kill_is_one_suicide_and_one_death() {
        let e = ev(EventKind::PlayerKill, "a", "a");
        assert_eq!(roles(&e).count(), 1);
        let a = Contribution::of(&e, Role::Actor);
        assert_eq!((a.kills, a.deaths, a.suicides), (0, 1, 1));
        let w = ev(EventKind::PlayerKill, "", "b");
        let b = Contribution::of(&w, Role::Target);
        assert_eq!((b.deaths, b.suicides), (1, 1));
    }

    #[test]
    fn distance_uses_the_delta_never_the_cumulative_value() {
        let mut e = ev(EventKind::Distance, "a", "");
        e.extra = vec![
            ("distance".into(), "1534.2".into()),
            ("walked".into(), "42.5".into()),
        ];
        assert_eq!(moved(&e), 42.5);
        e.extra.push(("delta_distance".into(), "40".into()));
        assert_eq!(moved(&e), 40.0);
        assert_eq!(cell(-0.5), -1);
        assert_eq!(cell(199.9), 1);
    }
}
