//! A synthetic MOHAA server: players with a spread of skill on american
//! and german teams play matches of rounds on real maps, and the server
//! reports it in the exact wire format of the game scripts (contract §1):
//! flat JSON objects with every value a string, `timestamp` = `level.time`,
//! batches of at most 20 events, flushed early after every kill.
//!
//! Deterministic: the same seed gives the same stream, byte for byte.

use super::wire::{Batch, BatchBuilder, GameEvent};

/// SplitMix64: tiny, fast and good enough for a simulation; no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const MAPS: &[(&str, &str)] = &[
    ("obj/obj_team1", "obj"),
    ("obj/obj_team2", "obj"),
    ("obj/obj_team3", "obj"),
    ("obj/obj_team4", "obj"),
    ("dm/mohdm1", "tdm"),
    ("dm/mohdm2", "tdm"),
    ("dm/mohdm4", "tdm"),
    ("dm/mohdm6", "tdm"),
    ("dm/mohdm7", "tdm"),
];

/// (weapon, means of death, base damage, fire interval s, magazine).
const ALLIED_WEAPONS: &[(&str, &str, f64, f64, u32)] = &[
    ("Thompson", "bullet", 24.0, 0.09, 30),
    ("M1 Garand", "bullet", 50.0, 0.35, 8),
    ("BAR", "bullet", 33.0, 0.15, 20),
    ("Springfield '03 Sniper", "bullet", 100.0, 1.5, 5),
    ("Colt 45", "bullet", 25.0, 0.3, 7),
    ("Shotgun", "bullet", 14.0, 1.0, 5),
];
const AXIS_WEAPONS: &[(&str, &str, f64, f64, u32)] = &[
    ("MP40", "bullet", 22.0, 0.09, 32),
    ("Kar98", "bullet", 60.0, 1.2, 5),
    ("StG 44", "bullet", 30.0, 0.12, 30),
    ("KAR98 - Sniper", "bullet", 100.0, 1.5, 5),
    ("Walther P38", "bullet", 24.0, 0.3, 8),
    ("MP44", "bullet", 30.0, 0.12, 30),
];
const GRENADES: &[&str] = &["Frag Grenade", "Stielhandgranate"];

/// Hit locations with weights and damage multipliers.
const HITLOCS: &[(&str, u32, f64)] = &[
    ("head", 8, 4.0),
    ("helmet", 4, 2.5),
    ("neck", 3, 2.0),
    ("torso_upper", 22, 1.0),
    ("torso_lower", 18, 1.0),
    ("pelvis", 8, 0.9),
    ("left_arm_upper", 5, 0.6),
    ("right_arm_upper", 5, 0.6),
    ("left_arm_lower", 3, 0.5),
    ("right_arm_lower", 3, 0.5),
    ("left_leg_upper", 6, 0.7),
    ("right_leg_upper", 6, 0.7),
    ("left_leg_lower", 4, 0.6),
    ("right_leg_lower", 4, 0.6),
    ("left_foot", 1, 0.5),
];

const NAMES: &[&str] = &[
    "Elgan",
    "Daichi",
    "^1Rommel",
    "Sgt.Baker",
    "^4Ghost",
    "Viper",
    "Kraut",
    "Yankee",
    "Doc",
    "Ace",
    "Mac",
    "^2Hunter",
    "Fritz",
    "Wolf",
    "Smitty",
    "Moose",
    "Lucky",
    "Hans",
    "Kowalski",
    "^3Sniper",
    "Bear",
    "Tex",
    "Klaus",
    "Red",
    "Dutch",
    "Otto",
    "Jonesy",
    "Nash",
    "Vlad",
    "Kid",
    "Reaper",
    "Stitch",
];

const CHAT: &[&str] = &[
    "gg",
    "nice shot",
    "lol",
    "rush B",
    "cover me",
    "sniper top window",
    "wp",
    "ns",
];

#[derive(Debug, Clone)]
struct Player {
    guid: String,
    smf_id: Option<u32>,
    name: String,
    team: &'static str,
    skill: f64,
    alive: bool,
    health: f64,
    weapon: usize,
    ammo: u32,
    pos: [f64; 3],
    yaw: f64,
    stance: &'static str,
    distance: f64,
    logged_in: bool,
}

/// One simulated server.
pub struct GameSim {
    rng: Rng,
    pub index: usize,
    session: String,
    players: Vec<Player>,
    level_time: f64,
    map: usize,
    round: u32,
    rounds_per_match: u32,
    round_kills: u32,
    kills_to_end_round: u32,
    score: [u32; 2],
    queue: BatchBuilder,
    ready: std::collections::VecDeque<Batch>,
    started: bool,
}

/// Whose fields `add_player` writes: the script prefixes a player's
/// fields with the role the player has in the event.
#[derive(Debug, Clone, Copy)]
enum Role {
    Player,
    Attacker,
    Victim,
    Target,
}

/// A player's fields: name, guid, smf_id, team, x, y, z, pitch, yaw,
/// stance.
type PlayerKeys = [&'static str; 10];

macro_rules! player_keys {
    ($p:literal) => {
        [
            concat!($p, "_name"),
            concat!($p, "_guid"),
            concat!($p, "_smf_id"),
            concat!($p, "_team"),
            concat!($p, "_x"),
            concat!($p, "_y"),
            concat!($p, "_z"),
            concat!($p, "_pitch"),
            concat!($p, "_yaw"),
            concat!($p, "_stance"),
        ]
    };
}

impl Role {
    fn keys(self) -> &'static PlayerKeys {
        const PLAYER: PlayerKeys = player_keys!("player");
        const ATTACKER: PlayerKeys = player_keys!("attacker");
        const VICTIM: PlayerKeys = player_keys!("victim");
        const TARGET: PlayerKeys = player_keys!("target");
        match self {
            Role::Player => &PLAYER,
            Role::Attacker => &ATTACKER,
            Role::Victim => &VICTIM,
            Role::Target => &TARGET,
        }
    }
}

impl GameSim {
    pub fn new(seed: u64, index: usize, min_players: usize, max_players: usize) -> GameSim {
        let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(index as u64));
        let n = min_players + rng.below(max_players.saturating_sub(min_players) + 1);
        let players = (0..n)
            .map(|i| {
                let logged = rng.chance(0.4);
                let smf_id = logged.then(|| 100 + rng.below(5000) as u32);
                Player {
                    guid: format!("unauth_{i}"),
                    smf_id,
                    name: NAMES[(i + index * 7) % NAMES.len()].to_string(),
                    team: if i % 2 == 0 { "american" } else { "german" },
                    // Log-normal-ish spread: a few stars, a long tail.
                    skill: (rng.range(-1.0, 1.0) + rng.range(-1.0, 1.0)).exp(),
                    alive: false,
                    health: 100.0,
                    weapon: rng.below(ALLIED_WEAPONS.len()),
                    ammo: 30,
                    pos: [0.0; 3],
                    yaw: 0.0,
                    stance: "stand",
                    distance: 0.0,
                    logged_in: false,
                }
            })
            .collect();
        let session = format!("sess_{:016x}", rng.next_u64());
        let map = rng.below(MAPS.len());
        GameSim {
            rng,
            index,
            session,
            players,
            level_time: 0.0,
            map,
            round: 0,
            rounds_per_match: 3,
            round_kills: 0,
            kills_to_end_round: 12,
            score: [0, 0],
            queue: BatchBuilder::default(),
            ready: std::collections::VecDeque::new(),
            started: false,
        }
    }

    pub fn player_count(&self) -> usize {
        self.players.len()
    }

    /// The next batch as the game would send it.
    pub fn next_batch(&mut self) -> Batch {
        loop {
            if let Some(batch) = self.ready.pop_front() {
                return batch;
            }
            self.step();
        }
    }

    fn weapons(team: &str) -> &'static [(&'static str, &'static str, f64, f64, u32)] {
        if team == "american" {
            ALLIED_WEAPONS
        } else {
            AXIS_WEAPONS
        }
    }

    fn envelope(&self, kind: &str) -> GameEvent {
        let mut e = GameEvent::new(kind);
        e.text("match_id", "no_match");
        e.text("session_id", &self.session);
        e.float("timestamp", self.level_time);
        e
    }

    fn add_player(&self, e: &mut GameEvent, role: Role, p: usize) {
        let [name, guid, smf_id, team, x, y, z, pitch, yaw, stance] = *role.keys();
        let p = &self.players[p];
        e.text(name, &p.name);
        match (p.logged_in, p.smf_id) {
            (true, Some(id)) => {
                e.int(guid, id);
                e.int(smf_id, id);
            }
            _ => e.text(guid, &p.guid),
        }
        e.text(team, p.team);
        e.float(x, p.pos[0]);
        e.float(y, p.pos[1]);
        e.float(z, p.pos[2]);
        e.text(pitch, "0");
        e.float(yaw, p.yaw);
        e.text(stance, p.stance);
    }

    fn push(&mut self, ev: GameEvent, flush: bool) {
        self.queue.push(ev);
        if flush || self.queue.len() >= 20 {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.queue.is_empty() {
            self.ready.push_back(self.queue.take());
        }
    }

    fn tick(&mut self, secs: f64) {
        let before = self.level_time;
        self.level_time += secs;
        // The script also flushes every 2 s.
        if (before / 2.0).floor() != (self.level_time / 2.0).floor() {
            self.flush();
        }
    }

    fn start_match(&mut self) {
        self.level_time = 0.0;
        self.round = 0;
        self.score = [0, 0];
        self.map = (self.map + 1 + self.rng.below(2)) % MAPS.len();
        let (map, mode) = MAPS[self.map];
        let mut e = self.envelope("match_start");
        e.text("map_name", map);
        e.text("gametype", mode);
        e.text("timelimit", "20");
        e.text("fraglimit", "0");
        e.text("maxclients", "32");
        self.push(e, false);
        if !self.started {
            self.started = true;
            for i in 0..self.players.len() {
                let mut c = self.envelope("connect");
                self.add_player(&mut c, Role::Player, i);
                self.push(c, false);
                if self.players[i].smf_id.is_some() {
                    self.players[i].logged_in = true;
                    let mut a = self.envelope("player_auth");
                    self.add_player(&mut a, Role::Player, i);
                    let id = self.players[i].smf_id.unwrap();
                    a.int("smf_member_id", id);
                    a.text("smf_member_name", &self.players[i].name);
                    self.push(a, false);
                }
                let mut t = self.envelope("team_join");
                self.add_player(&mut t, Role::Player, i);
                t.text("old_team", "spectator");
                t.text("new_team", self.players[i].team);
                self.push(t, false);
            }
        }
        self.start_round();
    }

    fn start_round(&mut self) {
        self.round += 1;
        self.round_kills = 0;
        let mut e = self.envelope("round_start");
        e.int("round_number", self.round);
        self.push(e, false);
        for i in 0..self.players.len() {
            self.spawn(i);
        }
    }

    fn spawn(&mut self, i: usize) {
        let team_side = if self.players[i].team == "american" {
            -1.0
        } else {
            1.0
        };
        let pos = [
            team_side * self.rng.range(800.0, 1600.0),
            self.rng.range(-1200.0, 1200.0),
            self.rng.range(0.0, 400.0).round(),
        ];
        let weapons = Self::weapons(self.players[i].team).len();
        let weapon = self.rng.below(weapons);
        {
            let p = &mut self.players[i];
            p.alive = true;
            p.health = 100.0;
            p.pos = pos;
            p.yaw = if team_side < 0.0 { 0.0 } else { 180.0 };
            p.stance = "stand";
            p.weapon = weapon;
            p.ammo = Self::weapons(p.team)[weapon].4;
        }
        let mut e = self.envelope("player_spawn");
        self.add_player(&mut e, Role::Player, i);
        self.push(e, false);
    }

    fn end_round(&mut self, winner: usize) {
        self.score[winner] += 1;
        let mut e = self.envelope("round_end");
        e.int("round_number", self.round);
        e.text(
            "winning_team",
            if winner == 0 { "american" } else { "german" },
        );
        self.push(e, false);
        if self.round >= self.rounds_per_match {
            let w = if self.score[0] >= self.score[1] {
                "american"
            } else {
                "german"
            };
            let mut t = self.envelope("team_win");
            t.text("teamnum", w);
            self.push(t, false);
            let mut end = self.envelope("match_end");
            end.text("map_name", MAPS[self.map].0);
            end.text("gametype", MAPS[self.map].1);
            end.text("winning_team", w);
            end.int("allies_score", self.score[0]);
            end.int("axis_score", self.score[1]);
            end.int("total_rounds", self.round);
            end.float("duration", self.level_time);
            self.push(end, true);
            self.start_match();
        } else {
            self.tick(5.0);
            self.start_round();
        }
    }

    fn alive_of(&self, team: &str) -> Vec<usize> {
        (0..self.players.len())
            .filter(|&i| self.players[i].alive && self.players[i].team == team)
            .collect()
    }

    /// Simulates a short slice of play.
    fn step(&mut self) {
        if !self.started {
            self.start_match();
            return;
        }
        let dt = self.rng.range(0.02, 0.12);
        self.tick(dt);
        let n = self.players.len();
        let i = self.rng.below(n);
        if !self.players[i].alive {
            if self.rng.chance(0.3) {
                self.spawn(i);
            }
            return;
        }
        let roll = self.rng.f64();
        if roll < 0.45 {
            self.fire(i);
        } else if roll < 0.60 {
            self.movement(i);
        } else if roll < 0.66 {
            let kind = if self.rng.chance(0.5) {
                "jump"
            } else {
                "crouch"
            };
            let mut e = self.envelope(kind);
            if kind == "crouch" {
                self.players[i].stance = "crouch";
            } else {
                e.float("jump_height", self.rng.range(40.0, 56.0));
            }
            self.add_player(&mut e, Role::Player, i);
            self.push(e, false);
        } else if roll < 0.70 {
            let weapons = Self::weapons(self.players[i].team);
            let old = self.players[i].weapon;
            let new = self.rng.below(weapons.len());
            self.players[i].weapon = new;
            self.players[i].ammo = weapons[new].4;
            let mut e = self.envelope("weapon_change");
            self.add_player(&mut e, Role::Player, i);
            e.text("old_weapon", weapons[old].0);
            e.text("new_weapon", weapons[new].0);
            self.push(e, false);
        } else if roll < 0.73 {
            let kind = if self.rng.chance(0.5) {
                "ladder_mount"
            } else {
                "ladder_dismount"
            };
            let mut e = self.envelope(kind);
            self.add_player(&mut e, Role::Player, i);
            self.push(e, false);
        } else if roll < 0.74 {
            let mut e = self.envelope("chat");
            self.add_player(&mut e, Role::Player, i);
            let message = CHAT[self.rng.below(CHAT.len())];
            e.text("message", message);
            e.text("is_team", if self.rng.chance(0.3) { "1" } else { "0" });
            self.push(e, false);
        } else if roll < 0.75 && MAPS[self.map].1 == "obj" {
            let capture = self.rng.chance(0.2);
            let kind = if capture {
                "objective_capture"
            } else {
                "objective_update"
            };
            let mut e = self.envelope(kind);
            self.add_player(&mut e, Role::Player, i);
            e.text(
                "objective_name",
                &format!("Objective {}", 1 + self.rng.below(3)),
            );
            e.int("objective_index", 1 + self.rng.below(3) as i64);
            e.text(
                "objective_status",
                if capture { "complete" } else { "in_progress" },
            );
            e.text("team", self.players[i].team);
            self.push(e, false);
        } else if roll < 0.77 {
            let mut e = self.envelope("grenade_throw");
            self.add_player(&mut e, Role::Player, i);
            e.text(
                "projectile",
                GRENADES[usize::from(self.players[i].team == "german")],
            );
            self.push(e, false);
        } else {
            self.fire(i);
        }
    }

    fn movement(&mut self, i: usize) {
        let step = self.rng.range(20.0, 160.0);
        let yaw = self.rng.range(0.0, 360.0);
        {
            let p = &mut self.players[i];
            p.pos[0] += step * yaw.to_radians().cos();
            p.pos[1] += step * yaw.to_radians().sin();
            p.yaw = yaw;
            p.stance = "stand";
            p.distance += step;
        }
        let mut e = self.envelope("distance");
        self.add_player(&mut e, Role::Player, i);
        // Movement values are sent raw (numbers), unlike the rest.
        let p = &self.players[i];
        let (total, step) = (
            (p.distance * 10.0).round() / 10.0,
            (step * 10.0).round() / 10.0,
        );
        e.number("distance", total);
        e.number("walked", step);
        e.number("total_distance", total);
        e.number("delta_distance", step);
        self.push(e, false);
    }

    fn fire(&mut self, i: usize) {
        let team = self.players[i].team;
        let enemy_team = if team == "american" {
            "german"
        } else {
            "american"
        };
        let weapons = Self::weapons(team);
        let (weapon, mod_name, base, _, mag) = weapons[self.players[i].weapon];
        if self.players[i].ammo == 0 {
            let mut e = self.envelope("reload");
            self.add_player(&mut e, Role::Player, i);
            e.text("weapon", weapon);
            self.push(e, false);
            self.players[i].ammo = mag;
            return;
        }
        self.players[i].ammo -= 1;
        let mut e = self.envelope("weapon_fire");
        self.add_player(&mut e, Role::Player, i);
        e.text("weapon", weapon);
        e.int("ammo_remaining", self.players[i].ammo);
        self.push(e, false);

        let enemies = self.alive_of(enemy_team);
        if enemies.is_empty() {
            return;
        }
        let target = *self.rng.pick(&enemies);
        let skill = self.players[i].skill;
        let hit_p = (0.22 * skill / (skill + self.players[target].skill) * 2.0).min(0.6);
        if !self.rng.chance(hit_p) {
            return;
        }
        let total: u32 = HITLOCS.iter().map(|h| h.1).sum();
        let mut r = self.rng.below(total as usize) as u32;
        // Better players hit heads more often.
        if skill > 1.5 && self.rng.chance(0.15) {
            r = 0;
        }
        let (hitloc, _, mult) = *HITLOCS
            .iter()
            .find(|h| {
                if r < h.1 {
                    true
                } else {
                    r -= h.1;
                    false
                }
            })
            .unwrap_or(&HITLOCS[3]);
        let damage = (base * mult * self.rng.range(0.85, 1.15)).min(150.0);
        let mut hit = self.envelope("weapon_hit");
        self.add_player(&mut hit, Role::Player, i);
        self.add_player(&mut hit, Role::Target, target);
        hit.text("weapon", weapon);
        hit.text("hitloc", hitloc);
        self.push(hit, false);
        // Damage and kill carry the same fields.
        let wound = |sim: &Self, kind: &str| {
            let mut e = sim.envelope(kind);
            sim.add_player(&mut e, Role::Attacker, i);
            sim.add_player(&mut e, Role::Victim, target);
            e.text("weapon", weapon);
            e.float("damage", damage);
            e.text("mod", mod_name);
            e.text("hitloc", hitloc);
            e
        };
        let dmg = wound(self, "damage");
        self.push(dmg, false);
        self.players[target].health -= damage;
        if self.players[target].health <= 0.0 {
            self.players[target].alive = false;
            let k = wound(self, "player_kill");
            // The script flushes immediately after every kill.
            self.push(k, true);
            self.round_kills += 1;
            let winner_team = usize::from(team == "german");
            if self.alive_of(enemy_team).is_empty() || self.round_kills >= self.kills_to_end_round {
                self.end_round(winner_team);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    #[test]
    fn deterministic_and_in_the_wire_format() {
        let mut a = GameSim::new(7, 0, 8, 32);
        let mut b = GameSim::new(7, 0, 8, 32);
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let (x, y) = (a.next_batch(), b.next_batch());
            assert_eq!(x, y);
            let events: Vec<Map<String, Value>> = serde_json::from_slice(&x.json).unwrap();
            assert_eq!(events.len(), x.events);
            assert!(!events.is_empty() && events.len() <= 20);
            for e in &events {
                let t = e["type"].as_str().unwrap();
                kinds.insert(t.to_string());
                for (k, v) in e {
                    if t == "distance" && k.contains("distance") || k == "walked" {
                        assert!(v.is_number(), "{t}.{k} is {v}");
                    } else {
                        assert!(v.is_string(), "{t}.{k} is {v}");
                    }
                }
                if e.contains_key("attacker_name") {
                    for k in [
                        "attacker_guid",
                        "attacker_team",
                        "attacker_x",
                        "victim_name",
                        "victim_stance",
                    ] {
                        assert!(e.contains_key(k), "{t} without {k}");
                    }
                }
            }
            if events.iter().any(|e| e["type"] == "player_kill") {
                assert_eq!(
                    events.last().unwrap()["type"],
                    "player_kill",
                    "flush after a kill"
                );
            }
        }
        for k in [
            "player_kill",
            "damage",
            "weapon_fire",
            "weapon_hit",
            "player_spawn",
            "match_start",
            "match_end",
            "round_start",
            "round_end",
            "distance",
            "connect",
            "player_auth",
            "chat",
        ] {
            assert!(kinds.contains(k), "{k} missing from {kinds:?}");
        }
        let c = GameSim::new(8, 0, 8, 32).next_batch();
        assert_ne!(GameSim::new(7, 0, 8, 32).next_batch(), c);
    }
}
