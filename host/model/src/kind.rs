//! Event kinds: the whole upstream vocabulary plus `Other`.

/// Calls `$callback!` with the list of `Variant => "wire_name"` pairs, in the
/// order of `enum event-kind` in `wit/stats.wit`. Other crates use it to
/// generate conversions (for example to the wasmtime bindings) from the one
/// list, so the host and the WIT contract cannot drift apart silently.
#[macro_export]
macro_rules! for_each_event_kind {
    ($callback:ident) => {
        $callback! {
            PlayerKill => "player_kill",
            Death => "death",
            Damage => "damage",
            PlayerPain => "player_pain",
            PlayerSuicide => "player_suicide",
            PlayerTeamkill => "player_teamkill",
            PlayerBash => "player_bash",
            PlayerRoadkill => "player_roadkill",
            PlayerCrushed => "player_crushed",
            PlayerTelefragged => "player_telefragged",
            WeaponFire => "weapon_fire",
            WeaponHit => "weapon_hit",
            WeaponChange => "weapon_change",
            Reload => "reload",
            WeaponReloadDone => "weapon_reload_done",
            WeaponReady => "weapon_ready",
            WeaponNoAmmo => "weapon_no_ammo",
            WeaponHolster => "weapon_holster",
            WeaponRaise => "weapon_raise",
            WeaponDrop => "weapon_drop",
            GrenadeThrow => "grenade_throw",
            GrenadeExplode => "grenade_explode",
            PlayerSpawn => "player_spawn",
            PlayerRespawn => "player_respawn",
            PlayerStand => "player_stand",
            Jump => "jump",
            Land => "land",
            Crouch => "crouch",
            Prone => "prone",
            Distance => "distance",
            PlayerMovement => "player_movement",
            LadderMount => "ladder_mount",
            LadderDismount => "ladder_dismount",
            ItemPickup => "item_pickup",
            ItemDrop => "item_drop",
            ItemRespawn => "item_respawn",
            HealthPickup => "health_pickup",
            AmmoPickup => "ammo_pickup",
            ArmorPickup => "armor_pickup",
            Connect => "connect",
            Disconnect => "disconnect",
            ClientBegin => "client_begin",
            ClientUserinfoChanged => "client_userinfo_changed",
            PlayerInactivityDrop => "player_inactivity_drop",
            PlayerAuth => "player_auth",
            IdentityClaim => "identity_claim",
            TeamJoin => "team_join",
            TeamChange => "team_change",
            TeamWin => "team_win",
            Chat => "chat",
            Use => "use",
            PlayerUseObjectStart => "player_use_object_start",
            PlayerUseObjectFinish => "player_use_object_finish",
            PlayerSpectate => "player_spectate",
            PlayerFreeze => "player_freeze",
            VoteStart => "vote_start",
            VotePassed => "vote_passed",
            VoteFailed => "vote_failed",
            ScoreChange => "score_change",
            TeamkillKick => "teamkill_kick",
            AccuracySummary => "accuracy_summary",
            Heartbeat => "heartbeat",
            GameInit => "game_init",
            GameStart => "game_start",
            GameEnd => "game_end",
            MatchStart => "match_start",
            MatchEnd => "match_end",
            MatchOutcome => "match_outcome",
            RoundStart => "round_start",
            RoundEnd => "round_end",
            WarmupStart => "warmup_start",
            WarmupEnd => "warmup_end",
            IntermissionStart => "intermission_start",
            MapInit => "map_init",
            MapStart => "map_start",
            MapReady => "map_ready",
            MapShutdown => "map_shutdown",
            MapLoadStart => "map_load_start",
            MapLoadEnd => "map_load_end",
            MapRestart => "map_restart",
            MapChangeStart => "map_change_start",
            ObjectiveCapture => "objective_capture",
            ObjectiveUpdate => "objective_update",
            DoorOpen => "door_open",
            DoorClose => "door_close",
            Explosion => "explosion",
            ActorSpawn => "actor_spawn",
            ActorKilled => "actor_killed",
            BotSpawn => "bot_spawn",
            BotKilled => "bot_killed",
            BotRoam => "bot_roam",
            BotCurious => "bot_curious",
            BotAttack => "bot_attack",
            VehicleEnter => "vehicle_enter",
            VehicleExit => "vehicle_exit",
            VehicleCrash => "vehicle_crash",
            VehicleChange => "vehicle_change",
            VehicleDeath => "vehicle_death",
            TurretEnter => "turret_enter",
            TurretExit => "turret_exit",
            ServerInit => "server_init",
            ServerStart => "server_start",
            ServerShutdown => "server_shutdown",
            ServerSpawned => "server_spawned",
            ServerConsoleCommand => "server_console_command",
            Other => "other",
        }
    };
}

macro_rules! define_event_kind {
    ($($variant:ident => $wire:literal,)*) => {
        /// What happened. Mirrors `enum event-kind` in the WIT contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum EventKind {
            $($variant,)*
        }

        impl EventKind {
            /// Every kind, in WIT order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// The snake_case name the game uses on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $wire,)*
                }
            }

            /// Parses a wire type name; unknown names become [`EventKind::Other`].
            pub fn from_wire(name: &str) -> EventKind {
                match name {
                    $($wire => EventKind::$variant,)*
                    _ => EventKind::Other,
                }
            }
        }
    };
}

for_each_event_kind!(define_event_kind);

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(EventKind::from_wire(&name))
    }
}

impl EventKind {
    /// Kinds in which the actor killed the target (a frag for the actor and
    /// a death for the target).
    pub fn is_kill(self) -> bool {
        matches!(
            self,
            EventKind::PlayerKill
                | EventKind::PlayerBash
                | EventKind::PlayerRoadkill
                | EventKind::PlayerTelefragged
                | EventKind::PlayerCrushed
                | EventKind::PlayerTeamkill
                | EventKind::BotKilled
        )
    }

    /// Kinds that end the target's (or, for suicides, the actor's) life.
    pub fn ends_life(self) -> bool {
        self.is_kill() || matches!(self, EventKind::Death | EventKind::PlayerSuicide)
    }

    /// Kinds that start a new life for the actor.
    pub fn starts_life(self) -> bool {
        matches!(self, EventKind::PlayerSpawn | EventKind::PlayerRespawn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_wire(kind.as_str()), *kind);
        }
        assert_eq!(EventKind::from_wire("no_such_event"), EventKind::Other);
    }

    /// The host list must match the WIT enum case for case, in order.
    #[test]
    fn matches_the_wit_contract() {
        let wit = include_str!("../../../wit/stats.wit");
        let start = wit.find("enum event-kind {").expect("enum in wit");
        let body = &wit[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find("\n    }").unwrap()];
        let wit_names: Vec<String> = body
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .map(|l| {
                l.trim_end_matches(',')
                    .trim_start_matches('%')
                    .replace('-', "_")
            })
            .collect();
        let ours: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(wit_names, ours);
    }
}
