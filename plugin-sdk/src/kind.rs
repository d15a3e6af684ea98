//! Event kinds, mirroring `enum event-kind` in `wit/stats.wit` case for
//! case and in order: the guest glue converts the generated enum by index,
//! and a native test checks the list against the host's and the contract's.

macro_rules! define_event_kind {
    ($($variant:ident => $wire:literal,)*) => {
        /// What happened. `Other` carries the original name in
        /// [`Event::type_name`](crate::Event::type_name).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum EventKind {
            $($variant,)*
        }

        impl EventKind {
            /// Every kind, in contract order.
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

define_event_kind! {
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

impl EventKind {
    /// The kind at a contract index (the generated bindings' discriminant).
    pub fn from_index(index: usize) -> EventKind {
        EventKind::ALL
            .get(index)
            .copied()
            .unwrap_or(EventKind::Other)
    }

    /// Kinds in which the actor killed the target, teamkills included.
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
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::EventKind;

    #[test]
    fn same_list_as_the_host_model() {
        let ours: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        let host: Vec<&str> = opm_model::EventKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(ours, host);
    }
}
