//! Relational data: servers, users, identities, login tokens, teams,
//! tournaments, achievement definitions, the unlock ledger, progress,
//! plugin state and plugin failures.
//!
//! One trait, [`RelationalStore`], two backends generated from the same
//! SQL ([`sql`]): PostgreSQL and SQLite (both through sqlx). Times are
//! milliseconds since the epoch in `BIGINT` columns on both, so the SQL
//! is portable and nothing depends on a server time zone.

pub mod sql;
pub mod state;

use async_trait::async_trait;
use opm_model::plugin::{Commit, StateKey, StateValue};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// Whether a game server may send events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerStatus {
    Active,
    /// Registered, waiting for an admin (registration policy "approve").
    Pending,
    Disabled,
}

impl ServerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerStatus::Active => "active",
            ServerStatus::Pending => "pending",
            ServerStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<ServerStatus> {
        Some(match s {
            "active" => ServerStatus::Active,
            "pending" => ServerStatus::Pending,
            "disabled" => ServerStatus::Disabled,
            _ => return None,
        })
    }
}

/// A registered game server. The token is stored only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub ip_address: String,
    pub port: u16,
    pub token_hash: String,
    pub status: ServerStatus,
    pub created_ms: i64,
    pub last_seen_ms: Option<i64>,
}

/// What registering a server needs; the store assigns nothing but times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewServer {
    /// Caller-chosen id (a UUID); `None` lets the store generate one.
    pub id: Option<String>,
    pub name: String,
    pub ip_address: String,
    pub port: u16,
    pub token_hash: String,
    pub status: ServerStatus,
}

/// A forum member known to the stats server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The SMF member id: users are keyed by the forum's identity.
    pub member_id: i64,
    pub name: String,
    pub is_admin: bool,
    pub created_ms: i64,
}

/// A game GUID linked to a forum member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub guid: String,
    pub member_id: i64,
    pub verified: bool,
    pub linked_ms: i64,
    pub verified_ms: Option<i64>,
}

/// A single-use login code, stored hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginToken {
    pub token_hash: String,
    pub member_id: i64,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub used_ms: Option<i64>,
    pub used_guid: Option<String>,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    pub id: i64,
    pub name: String,
    pub tag: String,
    pub owner_member_id: Option<i64>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamMember {
    pub team_id: i64,
    pub member_id: i64,
    /// "captain" or "member"; free text the routes define.
    pub role: String,
    pub joined_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tournament {
    pub id: i64,
    pub name: String,
    /// "single_elimination", "double_elimination", "round_robin", …
    pub format: String,
    /// "draft", "open", "running", "finished", "cancelled".
    pub status: String,
    pub starts_ms: Option<i64>,
    pub created_ms: i64,
}

/// One slot of a bracket: who plays whom, and where the winner goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TournamentMatch {
    pub id: i64,
    pub tournament_id: i64,
    /// "winners", "losers", "final", or "group-A" for round robins.
    pub bracket: String,
    pub round: i32,
    pub position: i32,
    pub team_a: Option<i64>,
    pub team_b: Option<i64>,
    pub winner: Option<i64>,
    /// The game match (analytics `match_id`) that decided it.
    pub match_id: Option<String>,
    /// Bracket slot the winner advances to.
    pub next_match: Option<i64>,
    pub scheduled_ms: Option<i64>,
    /// "pending", "scheduled", "played", "walkover".
    pub status: String,
}

/// A new bracket slot; ids are assigned by the store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewTournamentMatch {
    pub bracket: String,
    pub round: i32,
    pub position: i32,
    pub team_a: Option<i64>,
    pub team_b: Option<i64>,
    pub scheduled_ms: Option<i64>,
}

/// An achievement definition as a loaded pack declares it. Field names
/// follow what the SMF forum renders (achievements.md §4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AchievementDef {
    pub code: String,
    pub pack: String,
    pub pack_version: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub tier: i32,
    pub points: i32,
    pub icon: String,
    /// The counted metric ("kills", …), `requirement_type` in SMF.
    pub metric: String,
    /// Target of the metric, `requirement_value` in SMF.
    pub target: Option<i64>,
    pub is_hidden: bool,
}

/// A stored definition: the declaration plus its forum-facing numeric id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAchievement {
    /// Stable numeric id (`id_achievement` for the forum).
    pub id: i64,
    #[serde(flatten)]
    pub def: AchievementDef,
    /// False once a newer version of the pack stops declaring it.
    pub active: bool,
    pub updated_ms: i64,
}

/// How an unlock came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnlockSource {
    Live,
    Backfill,
    Admin,
}

impl UnlockSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UnlockSource::Live => "live",
            UnlockSource::Backfill => "backfill",
            UnlockSource::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<UnlockSource> {
        Some(match s {
            "live" => UnlockSource::Live,
            "backfill" => UnlockSource::Backfill,
            "admin" => UnlockSource::Admin,
            _ => return None,
        })
    }
}

/// One entry of the unlock ledger: the first unlock of `code` by `player`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlock {
    pub player: String,
    pub code: String,
    pub pack: String,
    pub pack_version: String,
    pub unlocked_ms: i64,
    pub event_id: u64,
    pub match_id: String,
    pub source: UnlockSource,
}

/// Progress towards an achievement; only ever moves forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub player: String,
    pub code: String,
    pub current: u64,
    pub target: u64,
    pub updated_ms: i64,
}

/// A plugin call that trapped, timed out or returned garbage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginFailure {
    pub pack: String,
    pub pack_version: String,
    pub server: String,
    /// First event of the failing batch, when there was one.
    pub event_id: Option<u64>,
    pub error: String,
    pub time_ms: i64,
}

/// The relational store. Every method is one statement or one transaction.
#[async_trait]
pub trait RelationalStore: Send + Sync + 'static {
    /// "postgres" or "sqlite".
    fn backend(&self) -> &'static str;
    /// Applies pending migrations; returns how many ran.
    async fn migrate(&self) -> Result<u32, StoreError>;
    /// Answers when the database can serve queries (readiness probes).
    async fn ping(&self) -> Result<(), StoreError>;

    // --- servers -------------------------------------------------------
    /// Registers a server. Fails (`Rejected`) if its ip+port is taken.
    async fn insert_server(&self, server: &NewServer) -> Result<Server, StoreError>;
    async fn server(&self, id: &str) -> Result<Option<Server>, StoreError>;
    async fn server_by_address(&self, ip: &str, port: u16) -> Result<Option<Server>, StoreError>;
    async fn server_by_token_hash(&self, token_hash: &str) -> Result<Option<Server>, StoreError>;
    /// Rotates the token; false if the server does not exist.
    async fn update_server_token(&self, id: &str, token_hash: &str) -> Result<bool, StoreError>;
    async fn set_server_status(&self, id: &str, status: ServerStatus) -> Result<bool, StoreError>;
    async fn set_server_name(&self, id: &str, name: &str) -> Result<bool, StoreError>;
    /// Records that the server was heard from at `at_ms` (never moves back).
    async fn touch_server(&self, id: &str, at_ms: i64) -> Result<bool, StoreError>;
    async fn list_servers(&self) -> Result<Vec<Server>, StoreError>;

    // --- users, identities, login tokens -------------------------------
    /// Creates or renames the user of a forum member.
    async fn upsert_user(
        &self,
        member_id: i64,
        name: &str,
        is_admin: bool,
    ) -> Result<User, StoreError>;
    async fn user(&self, member_id: i64) -> Result<Option<User>, StoreError>;
    /// Links a GUID to a member (a GUID has one member; relinking moves it
    /// and resets verification unless `verified`).
    async fn link_identity(
        &self,
        guid: &str,
        member_id: i64,
        verified: bool,
    ) -> Result<Identity, StoreError>;
    async fn verify_identity(&self, guid: &str, member_id: i64) -> Result<bool, StoreError>;
    async fn unlink_identity(&self, guid: &str) -> Result<bool, StoreError>;
    async fn identity(&self, guid: &str) -> Result<Option<Identity>, StoreError>;
    async fn identities_of_member(&self, member_id: i64) -> Result<Vec<Identity>, StoreError>;
    async fn insert_login_token(
        &self,
        token_hash: &str,
        member_id: i64,
        expires_ms: i64,
    ) -> Result<LoginToken, StoreError>;
    /// Uses a login code once: succeeds only if it exists, is unused,
    /// unrevoked and unexpired at `now_ms`; atomically marks it used.
    async fn consume_login_token(
        &self,
        token_hash: &str,
        now_ms: i64,
        guid: &str,
    ) -> Result<Option<LoginToken>, StoreError>;
    /// Revokes every unused code of a member; returns how many.
    async fn revoke_login_tokens(&self, member_id: i64) -> Result<u64, StoreError>;
    async fn login_tokens_of_member(
        &self,
        member_id: i64,
        limit: u32,
    ) -> Result<Vec<LoginToken>, StoreError>;

    // --- teams, tournaments ---------------------------------------------
    async fn create_team(
        &self,
        name: &str,
        tag: &str,
        owner_member_id: Option<i64>,
    ) -> Result<Team, StoreError>;
    async fn team(&self, id: i64) -> Result<Option<Team>, StoreError>;
    async fn list_teams(&self) -> Result<Vec<Team>, StoreError>;
    async fn add_team_member(
        &self,
        team_id: i64,
        member_id: i64,
        role: &str,
    ) -> Result<TeamMember, StoreError>;
    async fn remove_team_member(&self, team_id: i64, member_id: i64) -> Result<bool, StoreError>;
    async fn team_members(&self, team_id: i64) -> Result<Vec<TeamMember>, StoreError>;
    async fn create_tournament(
        &self,
        name: &str,
        format: &str,
        starts_ms: Option<i64>,
    ) -> Result<Tournament, StoreError>;
    async fn tournament(&self, id: i64) -> Result<Option<Tournament>, StoreError>;
    async fn list_tournaments(&self) -> Result<Vec<Tournament>, StoreError>;
    async fn set_tournament_status(&self, id: i64, status: &str) -> Result<bool, StoreError>;
    async fn add_tournament_team(
        &self,
        tournament_id: i64,
        team_id: i64,
        seed: Option<i32>,
    ) -> Result<(), StoreError>;
    /// Teams entered, by seed then id.
    async fn tournament_teams(
        &self,
        tournament_id: i64,
    ) -> Result<Vec<(i64, Option<i32>)>, StoreError>;
    /// Replaces the whole bracket in one transaction; `links` are
    /// (index of a slot, index of the slot its winner advances to).
    async fn save_bracket(
        &self,
        tournament_id: i64,
        slots: &[NewTournamentMatch],
        links: &[(usize, usize)],
    ) -> Result<Vec<TournamentMatch>, StoreError>;
    /// Slots of the bracket by bracket, round, position.
    async fn bracket(&self, tournament_id: i64) -> Result<Vec<TournamentMatch>, StoreError>;
    /// Records a result and seats the winner in the next slot, atomically.
    async fn report_tournament_result(
        &self,
        slot_id: i64,
        winner_team: i64,
        match_id: Option<&str>,
    ) -> Result<Option<TournamentMatch>, StoreError>;

    // --- achievements ----------------------------------------------------
    /// Stores the definitions a pack version declares: new codes are added,
    /// changed ones updated, codes the version no longer declares marked
    /// inactive. Every (code, version) is also kept in the history.
    async fn sync_definitions(
        &self,
        pack: &str,
        pack_version: &str,
        defs: &[AchievementDef],
    ) -> Result<(), StoreError>;
    async fn definitions(&self) -> Result<Vec<StoredAchievement>, StoreError>;
    async fn definition(&self, code: &str) -> Result<Option<StoredAchievement>, StoreError>;
    /// Insert-if-absent: true if this call created the ledger entry; an
    /// existing unlock is never overwritten.
    async fn record_unlock(&self, unlock: &Unlock) -> Result<bool, StoreError>;
    async fn unlocks_of(&self, player: &str) -> Result<Vec<Unlock>, StoreError>;
    async fn recent_unlocks(&self, limit: u32) -> Result<Vec<Unlock>, StoreError>;
    /// (code, number of players who unlocked it).
    async fn unlock_counts(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Moves progress forward; true if it changed. Lower values are ignored.
    async fn record_progress(&self, progress: &Progress) -> Result<bool, StoreError>;
    async fn progress_of(&self, player: &str) -> Result<Vec<Progress>, StoreError>;

    // --- plugins -------------------------------------------------------
    async fn load_pack_state(&self, pack: &str) -> Result<Vec<(StateKey, StateValue)>, StoreError>;
    async fn pack_positions(&self, pack: &str) -> Result<Vec<(String, u64)>, StoreError>;
    /// State writes, outcomes (unlocks, progress) and positions of one
    /// pack's batch in one transaction.
    async fn commit_pack(&self, commit: &Commit, source: UnlockSource) -> Result<(), StoreError>;
    async fn record_plugin_failure(&self, failure: &PluginFailure) -> Result<(), StoreError>;
    async fn plugin_failures(
        &self,
        pack: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PluginFailure>, StoreError>;
}
