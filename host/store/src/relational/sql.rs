//! The relational backends: one body of SQL, compiled for PostgreSQL and
//! for SQLite by [`relational_impl!`]. The SQL sticks to what both accept:
//! `$n` parameters, `ON CONFLICT … DO NOTHING / DO UPDATE … WHERE`,
//! `RETURNING`, BIGINT milliseconds, and integers decoded at the width
//! PostgreSQL declares (INTEGER as i32, BIGINT as i64).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use async_trait::async_trait;
use opm_model::plugin::{Commit, OutcomeKind, Scope, StateKey, StateValue};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, Row};

use super::*;
use crate::error::StoreError;
use crate::time::now_ms;

const PG_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "initial",
    include_str!("../../../../migrations/postgres/0001_initial.sql"),
)];
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "initial",
    include_str!("../../../../migrations/sqlite/0001_initial.sql"),
)];

/// PostgreSQL relational store.
pub struct PgRelational {
    pool: PgPool,
    /// Where plugin-state commits go: the same pool.
    commits: PgPool,
}

impl PgRelational {
    pub async fn connect(url: &str) -> Result<PgRelational, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| StoreError::sqlx("postgres", e))?;
        Ok(PgRelational {
            commits: pool.clone(),
            pool,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// SQLite relational store (the embedded default).
pub struct SqliteRelational {
    pool: SqlitePool,
    /// One connection for the plugin-state commits (every pipeline batch).
    /// SQLite runs one writer at a time anyway, and in WAL mode a
    /// connection drops its whole page cache whenever another connection
    /// wrote: with the workers' commits spread over the pool, every commit
    /// started cold and read its pages back (`perf`: 8 % of the thread).
    commits: SqlitePool,
}

impl SqliteRelational {
    pub async fn open(path: &Path) -> Result<SqliteRelational, StoreError> {
        Ok(SqliteRelational {
            pool: crate::sqlite::open(path, 4).await?,
            commits: crate::sqlite::open(path, 1).await?,
        })
    }
}

fn state_parts(v: &StateValue) -> (&'static str, Option<i64>, Option<Vec<u8>>) {
    match v {
        StateValue::Counter(n) => ("counter", Some(*n), None),
        StateValue::Blob(b) => ("blob", None, Some(b.clone())),
        StateValue::Set(s) => ("set", None, Some(serde_json::to_vec(s).unwrap_or_default())),
    }
}

/// Rows per multi-row statement: 8 columns × 500 stays far below both
/// databases' bound-parameter limits.
const MULTI_ROW: usize = 500;

/// The state writes of a commit as one statement per kind would apply
/// them: the last write of each key wins (in PostgreSQL an upsert may not
/// touch the same row twice in one statement).
fn last_write_per_key(
    writes: &[(StateKey, Option<StateValue>)],
) -> (Vec<&StateKey>, Vec<(&StateKey, &StateValue)>) {
    let mut last: HashMap<&StateKey, usize> = HashMap::with_capacity(writes.len());
    for (i, (key, _)) in writes.iter().enumerate() {
        last.insert(key, i);
    }
    let mut deletes = Vec::new();
    let mut upserts = Vec::new();
    for (i, (key, value)) in writes.iter().enumerate() {
        if last.get(key) != Some(&i) {
            continue;
        }
        match value {
            None => deletes.push(key),
            Some(v) => upserts.push((key, v)),
        }
    }
    (deletes, upserts)
}

/// A commit's outcomes as ledger and progress rows, reduced to what
/// applying them one by one would leave: the first unlock of a player and
/// code, and per player and code the first progress row with the highest
/// `current` (progress only moves forward).
fn outcome_rows(commit: &Commit, source: UnlockSource) -> (Vec<Unlock>, Vec<Progress>) {
    let mut unlocks: Vec<Unlock> = Vec::new();
    let mut seen_unlocks: HashSet<(&str, &str)> = HashSet::new();
    let mut progress: Vec<Progress> = Vec::new();
    let mut progress_at: HashMap<(&str, &str), usize> = HashMap::new();
    for o in &commit.outcomes {
        let id = (&*o.player, &*o.code);
        match &o.kind {
            OutcomeKind::Unlock => {
                if seen_unlocks.insert(id) {
                    unlocks.push(Unlock {
                        player: o.player.to_string(),
                        code: o.code.to_string(),
                        pack: o.pack.to_string(),
                        pack_version: o.pack_version.to_string(),
                        unlocked_ms: o.time_ms,
                        event_id: o.event_id,
                        match_id: o.match_id.to_string(),
                        source,
                    });
                }
            }
            OutcomeKind::Progress { current, target } => {
                let row = Progress {
                    player: o.player.to_string(),
                    code: o.code.to_string(),
                    current: *current,
                    target: *target,
                    updated_ms: o.time_ms,
                };
                match progress_at.get(&id) {
                    Some(&i) if progress[i].current >= row.current => {}
                    Some(&i) => progress[i] = row,
                    None => {
                        progress_at.insert(id, progress.len());
                        progress.push(row);
                    }
                }
            }
        }
    }
    (unlocks, progress)
}

fn state_value(kind: &str, counter: Option<i64>, data: Option<Vec<u8>>) -> Option<StateValue> {
    Some(match kind {
        "counter" => StateValue::Counter(counter.unwrap_or(0)),
        "blob" => StateValue::Blob(data.unwrap_or_default()),
        "set" => StateValue::Set(
            serde_json::from_slice::<BTreeSet<String>>(&data.unwrap_or_default()).ok()?,
        ),
        _ => return None,
    })
}

macro_rules! relational_impl {
    ($ty:ident, $name:literal, $migrations:ident) => {
        impl $ty {
            fn err(e: sqlx::Error) -> StoreError {
                StoreError::sqlx($name, e)
            }

        }

        #[async_trait]
        impl RelationalStore for $ty {
            fn backend(&self) -> &'static str {
                $name
            }

            async fn migrate(&self) -> Result<u32, StoreError> {
                sqlx::raw_sql(
                    "CREATE TABLE IF NOT EXISTS _opm_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL)",
                )
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                let done: Vec<i64> = sqlx::query_scalar("SELECT version FROM _opm_migrations")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(Self::err)?;
                let mut ran = 0;
                for (version, name, sql) in $migrations {
                    if done.contains(version) {
                        continue;
                    }
                    let mut tx = self.pool.begin().await.map_err(Self::err)?;
                    sqlx::raw_sql(AssertSqlSafe(*sql)).execute(&mut *tx).await.map_err(Self::err)?;
                    sqlx::query("INSERT INTO _opm_migrations (version, name, applied_ms) VALUES ($1, $2, $3)")
                        .bind(*version)
                        .bind(*name)
                        .bind(now_ms())
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    tx.commit().await.map_err(Self::err)?;
                    ran += 1;
                }
                Ok(ran)
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await.map_err(Self::err).map(|_| ())
            }

            async fn insert_server(&self, s: &NewServer) -> Result<Server, StoreError> {
                let id = s.id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let row = sqlx::query(
                    "INSERT INTO servers (id, name, ip_address, port, token_hash, status, created_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                )
                .bind(&id)
                .bind(&s.name)
                .bind(&s.ip_address)
                .bind(s.port as i32)
                .bind(&s.token_hash)
                .bind(s.status.as_str())
                .bind(now_ms())
                .fetch_one(&self.pool)
                .await
                .map_err(Self::err)?;
                Self::server_row(&row)
            }

            async fn server(&self, id: &str) -> Result<Option<Server>, StoreError> {
                let row = sqlx::query("SELECT * FROM servers WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(Self::err)?;
                row.as_ref().map(Self::server_row).transpose()
            }

            async fn server_by_address(&self, ip: &str, port: u16) -> Result<Option<Server>, StoreError> {
                let row = sqlx::query("SELECT * FROM servers WHERE ip_address = $1 AND port = $2")
                    .bind(ip)
                    .bind(port as i32)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(Self::err)?;
                row.as_ref().map(Self::server_row).transpose()
            }

            async fn server_by_token_hash(&self, token_hash: &str) -> Result<Option<Server>, StoreError> {
                let row = sqlx::query("SELECT * FROM servers WHERE token_hash = $1")
                    .bind(token_hash)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(Self::err)?;
                row.as_ref().map(Self::server_row).transpose()
            }

            async fn update_server_token(&self, id: &str, token_hash: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("UPDATE servers SET token_hash = $2 WHERE id = $1")
                    .bind(id)
                    .bind(token_hash)
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok(r.rows_affected() == 1)
            }

            async fn set_server_status(&self, id: &str, status: ServerStatus) -> Result<bool, StoreError> {
                let r = sqlx::query("UPDATE servers SET status = $2 WHERE id = $1")
                    .bind(id)
                    .bind(status.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok(r.rows_affected() == 1)
            }

            async fn set_server_name(&self, id: &str, name: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("UPDATE servers SET name = $2 WHERE id = $1")
                    .bind(id)
                    .bind(name)
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok(r.rows_affected() == 1)
            }

            async fn touch_server(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
                let r = sqlx::query(
                    "UPDATE servers SET last_seen_ms = $2 WHERE id = $1 AND (last_seen_ms IS NULL OR last_seen_ms < $2)",
                )
                .bind(id)
                .bind(at_ms)
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(r.rows_affected() == 1)
            }

            async fn list_servers(&self) -> Result<Vec<Server>, StoreError> {
                let rows = sqlx::query("SELECT * FROM servers ORDER BY created_ms, id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(Self::err)?;
                rows.iter().map(Self::server_row).collect()
            }

            async fn upsert_user(&self, member_id: i64, name: &str, is_admin: bool) -> Result<User, StoreError> {
                let (member_id, name, is_admin, created_ms): (i64, String, bool, i64) = sqlx::query_as(
                    "INSERT INTO users (member_id, name, is_admin, created_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (member_id) DO UPDATE SET name = excluded.name, is_admin = excluded.is_admin
                     RETURNING member_id, name, is_admin, created_ms",
                )
                .bind(member_id)
                .bind(name)
                .bind(is_admin)
                .bind(now_ms())
                .fetch_one(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(User { member_id, name, is_admin, created_ms })
            }

            async fn user(&self, member_id: i64) -> Result<Option<User>, StoreError> {
                let row: Option<(i64, String, bool, i64)> =
                    sqlx::query_as("SELECT member_id, name, is_admin, created_ms FROM users WHERE member_id = $1")
                        .bind(member_id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(Self::err)?;
                Ok(row.map(|(member_id, name, is_admin, created_ms)| User { member_id, name, is_admin, created_ms }))
            }

            async fn link_identity(&self, guid: &str, member_id: i64, verified: bool) -> Result<Identity, StoreError> {
                let now = now_ms();
                let row: (String, i64, bool, i64, Option<i64>) = sqlx::query_as(
                    "INSERT INTO identities (guid, member_id, verified, linked_ms, verified_ms) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (guid) DO UPDATE SET
                        verified = CASE WHEN identities.member_id = excluded.member_id
                            THEN (identities.verified OR excluded.verified) ELSE excluded.verified END,
                        verified_ms = CASE WHEN identities.member_id = excluded.member_id AND identities.verified
                            THEN identities.verified_ms ELSE excluded.verified_ms END,
                        linked_ms = CASE WHEN identities.member_id = excluded.member_id
                            THEN identities.linked_ms ELSE excluded.linked_ms END,
                        member_id = excluded.member_id
                     RETURNING guid, member_id, verified, linked_ms, verified_ms",
                )
                .bind(guid)
                .bind(member_id)
                .bind(verified)
                .bind(now)
                .bind(verified.then_some(now))
                .fetch_one(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(Identity { guid: row.0, member_id: row.1, verified: row.2, linked_ms: row.3, verified_ms: row.4 })
            }

            async fn verify_identity(&self, guid: &str, member_id: i64) -> Result<bool, StoreError> {
                let r = sqlx::query(
                    "UPDATE identities SET verified = TRUE, verified_ms = $3
                     WHERE guid = $1 AND member_id = $2 AND verified = FALSE",
                )
                .bind(guid)
                .bind(member_id)
                .bind(now_ms())
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(r.rows_affected() == 1)
            }

            async fn unlink_identity(&self, guid: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("DELETE FROM identities WHERE guid = $1")
                    .bind(guid)
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok(r.rows_affected() == 1)
            }

            async fn identity(&self, guid: &str) -> Result<Option<Identity>, StoreError> {
                let row: Option<(String, i64, bool, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT guid, member_id, verified, linked_ms, verified_ms FROM identities WHERE guid = $1",
                )
                .bind(guid)
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(row.map(|r| Identity { guid: r.0, member_id: r.1, verified: r.2, linked_ms: r.3, verified_ms: r.4 }))
            }

            async fn identities_of_member(&self, member_id: i64) -> Result<Vec<Identity>, StoreError> {
                let rows: Vec<(String, i64, bool, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT guid, member_id, verified, linked_ms, verified_ms FROM identities
                     WHERE member_id = $1 ORDER BY linked_ms, guid",
                )
                .bind(member_id)
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(rows
                    .into_iter()
                    .map(|r| Identity { guid: r.0, member_id: r.1, verified: r.2, linked_ms: r.3, verified_ms: r.4 })
                    .collect())
            }

            async fn insert_login_token(&self, token_hash: &str, member_id: i64, expires_ms: i64) -> Result<LoginToken, StoreError> {
                let now = now_ms();
                sqlx::query(
                    "INSERT INTO login_tokens (token_hash, member_id, created_ms, expires_ms, revoked) VALUES ($1, $2, $3, $4, FALSE)",
                )
                .bind(token_hash)
                .bind(member_id)
                .bind(now)
                .bind(expires_ms)
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(LoginToken {
                    token_hash: token_hash.to_string(),
                    member_id,
                    created_ms: now,
                    expires_ms,
                    used_ms: None,
                    used_guid: None,
                    revoked: false,
                })
            }

            async fn consume_login_token(&self, token_hash: &str, now: i64, guid: &str) -> Result<Option<LoginToken>, StoreError> {
                let row: Option<(String, i64, i64, i64, Option<i64>, Option<String>, bool)> = sqlx::query_as(
                    "UPDATE login_tokens SET used_ms = $2, used_guid = $3
                     WHERE token_hash = $1 AND used_ms IS NULL AND revoked = FALSE AND expires_ms > $2
                     RETURNING token_hash, member_id, created_ms, expires_ms, used_ms, used_guid, revoked",
                )
                .bind(token_hash)
                .bind(now)
                .bind(guid)
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(row.map(|r| LoginToken {
                    token_hash: r.0,
                    member_id: r.1,
                    created_ms: r.2,
                    expires_ms: r.3,
                    used_ms: r.4,
                    used_guid: r.5,
                    revoked: r.6,
                }))
            }

            async fn revoke_login_tokens(&self, member_id: i64) -> Result<u64, StoreError> {
                let r = sqlx::query(
                    "UPDATE login_tokens SET revoked = TRUE WHERE member_id = $1 AND used_ms IS NULL AND revoked = FALSE",
                )
                .bind(member_id)
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(r.rows_affected())
            }

            async fn login_tokens_of_member(&self, member_id: i64, limit: u32) -> Result<Vec<LoginToken>, StoreError> {
                let rows: Vec<(String, i64, i64, i64, Option<i64>, Option<String>, bool)> = sqlx::query_as(
                    "SELECT token_hash, member_id, created_ms, expires_ms, used_ms, used_guid, revoked FROM login_tokens
                     WHERE member_id = $1 ORDER BY created_ms DESC, token_hash LIMIT $2",
                )
                .bind(member_id)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(rows
                    .into_iter()
                    .map(|r| LoginToken {
                        token_hash: r.0,
                        member_id: r.1,
                        created_ms: r.2,
                        expires_ms: r.3,
                        used_ms: r.4,
                        used_guid: r.5,
                        revoked: r.6,
                    })
                    .collect())
            }

            async fn create_team(&self, name: &str, tag: &str, owner: Option<i64>) -> Result<Team, StoreError> {
                let r: (i64, String, String, Option<i64>, i64) = sqlx::query_as(
                    "INSERT INTO teams (name, tag, owner_member_id, created_ms) VALUES ($1, $2, $3, $4)
                     RETURNING id, name, tag, owner_member_id, created_ms",
                )
                .bind(name)
                .bind(tag)
                .bind(owner)
                .bind(now_ms())
                .fetch_one(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(Team { id: r.0, name: r.1, tag: r.2, owner_member_id: r.3, created_ms: r.4 })
            }

            async fn team(&self, id: i64) -> Result<Option<Team>, StoreError> {
                let r: Option<(i64, String, String, Option<i64>, i64)> =
                    sqlx::query_as("SELECT id, name, tag, owner_member_id, created_ms FROM teams WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(Self::err)?;
                Ok(r.map(|r| Team { id: r.0, name: r.1, tag: r.2, owner_member_id: r.3, created_ms: r.4 }))
            }

            async fn list_teams(&self) -> Result<Vec<Team>, StoreError> {
                let rows: Vec<(i64, String, String, Option<i64>, i64)> =
                    sqlx::query_as("SELECT id, name, tag, owner_member_id, created_ms FROM teams ORDER BY name")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(Self::err)?;
                Ok(rows
                    .into_iter()
                    .map(|r| Team { id: r.0, name: r.1, tag: r.2, owner_member_id: r.3, created_ms: r.4 })
                    .collect())
            }

            async fn add_team_member(&self, team_id: i64, member_id: i64, role: &str) -> Result<TeamMember, StoreError> {
                let r: (i64, i64, String, i64) = sqlx::query_as(
                    "INSERT INTO team_members (team_id, member_id, role, joined_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (team_id, member_id) DO UPDATE SET role = excluded.role
                     RETURNING team_id, member_id, role, joined_ms",
                )
                .bind(team_id)
                .bind(member_id)
                .bind(role)
                .bind(now_ms())
                .fetch_one(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(TeamMember { team_id: r.0, member_id: r.1, role: r.2, joined_ms: r.3 })
            }

            async fn remove_team_member(&self, team_id: i64, member_id: i64) -> Result<bool, StoreError> {
                let r = sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND member_id = $2")
                    .bind(team_id)
                    .bind(member_id)
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok(r.rows_affected() == 1)
            }

            async fn team_members(&self, team_id: i64) -> Result<Vec<TeamMember>, StoreError> {
                let rows: Vec<(i64, i64, String, i64)> = sqlx::query_as(
                    "SELECT team_id, member_id, role, joined_ms FROM team_members WHERE team_id = $1 ORDER BY joined_ms, member_id",
                )
                .bind(team_id)
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(rows.into_iter().map(|r| TeamMember { team_id: r.0, member_id: r.1, role: r.2, joined_ms: r.3 }).collect())
            }

            async fn create_tournament(&self, name: &str, format: &str, starts_ms: Option<i64>) -> Result<Tournament, StoreError> {
                let r: (i64, String, String, String, Option<i64>, i64) = sqlx::query_as(
                    "INSERT INTO tournaments (name, format, status, starts_ms, created_ms) VALUES ($1, $2, 'draft', $3, $4)
                     RETURNING id, name, format, status, starts_ms, created_ms",
                )
                .bind(name)
                .bind(format)
                .bind(starts_ms)
                .bind(now_ms())
                .fetch_one(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(Tournament { id: r.0, name: r.1, format: r.2, status: r.3, starts_ms: r.4, created_ms: r.5 })
            }

            async fn tournament(&self, id: i64) -> Result<Option<Tournament>, StoreError> {
                let r: Option<(i64, String, String, String, Option<i64>, i64)> = sqlx::query_as(
                    "SELECT id, name, format, status, starts_ms, created_ms FROM tournaments WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(r.map(|r| Tournament { id: r.0, name: r.1, format: r.2, status: r.3, starts_ms: r.4, created_ms: r.5 }))
            }

            async fn list_tournaments(&self) -> Result<Vec<Tournament>, StoreError> {
                let rows: Vec<(i64, String, String, String, Option<i64>, i64)> = sqlx::query_as(
                    "SELECT id, name, format, status, starts_ms, created_ms FROM tournaments ORDER BY created_ms DESC, id DESC",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(rows
                    .into_iter()
                    .map(|r| Tournament { id: r.0, name: r.1, format: r.2, status: r.3, starts_ms: r.4, created_ms: r.5 })
                    .collect())
            }

            async fn set_tournament_status(&self, id: i64, status: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("UPDATE tournaments SET status = $2 WHERE id = $1")
                    .bind(id)
                    .bind(status)
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok(r.rows_affected() == 1)
            }

            async fn add_tournament_team(&self, tournament_id: i64, team_id: i64, seed: Option<i32>) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO tournament_teams (tournament_id, team_id, seed) VALUES ($1, $2, $3)
                     ON CONFLICT (tournament_id, team_id) DO UPDATE SET seed = excluded.seed",
                )
                .bind(tournament_id)
                .bind(team_id)
                .bind(seed)
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(())
            }

            async fn tournament_teams(&self, tournament_id: i64) -> Result<Vec<(i64, Option<i32>)>, StoreError> {
                sqlx::query_as(
                    "SELECT team_id, seed FROM tournament_teams WHERE tournament_id = $1
                     ORDER BY CASE WHEN seed IS NULL THEN 1 ELSE 0 END, seed, team_id",
                )
                .bind(tournament_id)
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)
            }

            async fn save_bracket(
                &self,
                tournament_id: i64,
                slots: &[NewTournamentMatch],
                links: &[(usize, usize)],
            ) -> Result<Vec<TournamentMatch>, StoreError> {
                let mut tx = self.pool.begin().await.map_err(Self::err)?;
                sqlx::query("DELETE FROM tournament_matches WHERE tournament_id = $1")
                    .bind(tournament_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                let mut ids = Vec::with_capacity(slots.len());
                for s in slots {
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO tournament_matches (tournament_id, bracket, round, position, team_a, team_b, scheduled_ms, status)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending') RETURNING id",
                    )
                    .bind(tournament_id)
                    .bind(&s.bracket)
                    .bind(s.round)
                    .bind(s.position)
                    .bind(s.team_a)
                    .bind(s.team_b)
                    .bind(s.scheduled_ms)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                    ids.push(id);
                }
                for &(from, to) in links {
                    let (Some(from), Some(to)) = (ids.get(from), ids.get(to)) else {
                        return Err(StoreError::Rejected { backend: $name, message: format!("bracket link {from}->{to} out of range") });
                    };
                    sqlx::query("UPDATE tournament_matches SET next_match = $2 WHERE id = $1")
                        .bind(*from)
                        .bind(*to)
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                }
                tx.commit().await.map_err(Self::err)?;
                self.bracket(tournament_id).await
            }

            async fn bracket(&self, tournament_id: i64) -> Result<Vec<TournamentMatch>, StoreError> {
                let rows = sqlx::query(
                    "SELECT * FROM tournament_matches WHERE tournament_id = $1 ORDER BY bracket, round, position",
                )
                .bind(tournament_id)
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                rows.iter()
                    .map(|r| {
                        Ok(TournamentMatch {
                            id: r.try_get("id").map_err(Self::err)?,
                            tournament_id: r.try_get("tournament_id").map_err(Self::err)?,
                            bracket: r.try_get("bracket").map_err(Self::err)?,
                            round: r.try_get("round").map_err(Self::err)?,
                            position: r.try_get("position").map_err(Self::err)?,
                            team_a: r.try_get("team_a").map_err(Self::err)?,
                            team_b: r.try_get("team_b").map_err(Self::err)?,
                            winner: r.try_get("winner").map_err(Self::err)?,
                            match_id: r.try_get("match_id").map_err(Self::err)?,
                            next_match: r.try_get("next_match").map_err(Self::err)?,
                            scheduled_ms: r.try_get("scheduled_ms").map_err(Self::err)?,
                            status: r.try_get("status").map_err(Self::err)?,
                        })
                    })
                    .collect()
            }

            async fn report_tournament_result(
                &self,
                slot_id: i64,
                winner_team: i64,
                match_id: Option<&str>,
            ) -> Result<Option<TournamentMatch>, StoreError> {
                let mut tx = self.pool.begin().await.map_err(Self::err)?;
                let row: Option<(i64, Option<i64>, Option<i64>, Option<i64>)> = sqlx::query_as(
                    "UPDATE tournament_matches SET winner = $2, match_id = $3, status = 'played'
                     WHERE id = $1 AND (team_a = $2 OR team_b = $2)
                     RETURNING tournament_id, next_match, team_a, team_b",
                )
                .bind(slot_id)
                .bind(winner_team)
                .bind(match_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Self::err)?;
                let Some((tournament_id, next, _, _)) = row else {
                    return Ok(None);
                };
                if let Some(next) = next {
                    sqlx::query(
                        "UPDATE tournament_matches SET
                            team_a = CASE WHEN team_a IS NULL THEN $2 ELSE team_a END,
                            team_b = CASE WHEN team_a IS NOT NULL AND team_a <> $2 AND team_b IS NULL THEN $2 ELSE team_b END
                         WHERE id = $1",
                    )
                    .bind(next)
                    .bind(winner_team)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                }
                tx.commit().await.map_err(Self::err)?;
                Ok(self.bracket(tournament_id).await?.into_iter().find(|m| m.id == slot_id))
            }

            async fn sync_definitions(&self, pack: &str, pack_version: &str, defs: &[AchievementDef]) -> Result<(), StoreError> {
                let now = now_ms();
                let mut tx = self.pool.begin().await.map_err(Self::err)?;
                for d in defs {
                    sqlx::query(
                        "INSERT INTO achievements (code, pack, pack_version, name, description, category, tier, points, icon,
                            metric, target, is_hidden, active, updated_ms)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, TRUE, $13)
                         ON CONFLICT (code) DO UPDATE SET pack = excluded.pack, pack_version = excluded.pack_version,
                            name = excluded.name, description = excluded.description, category = excluded.category,
                            tier = excluded.tier, points = excluded.points, icon = excluded.icon, metric = excluded.metric,
                            target = excluded.target, is_hidden = excluded.is_hidden, active = TRUE,
                            updated_ms = excluded.updated_ms",
                    )
                    .bind(&d.code)
                    .bind(pack)
                    .bind(pack_version)
                    .bind(&d.name)
                    .bind(&d.description)
                    .bind(&d.category)
                    .bind(d.tier)
                    .bind(d.points)
                    .bind(&d.icon)
                    .bind(&d.metric)
                    .bind(d.target)
                    .bind(d.is_hidden)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                    let mut def = d.clone();
                    def.pack = pack.to_string();
                    def.pack_version = pack_version.to_string();
                    sqlx::query(
                        "INSERT INTO achievement_versions (code, pack, pack_version, definition, recorded_ms)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (code, pack, pack_version) DO NOTHING",
                    )
                    .bind(&d.code)
                    .bind(pack)
                    .bind(pack_version)
                    .bind(serde_json::to_string(&def).unwrap_or_default())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                }
                sqlx::query("UPDATE achievements SET active = FALSE, updated_ms = $3 WHERE pack = $1 AND pack_version <> $2 AND active = TRUE")
                    .bind(pack)
                    .bind(pack_version)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)
            }

            async fn definitions(&self) -> Result<Vec<StoredAchievement>, StoreError> {
                let rows = sqlx::query("SELECT * FROM achievements ORDER BY id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(Self::err)?;
                rows.iter().map(Self::achievement_row).collect()
            }

            async fn definition(&self, code: &str) -> Result<Option<StoredAchievement>, StoreError> {
                let row = sqlx::query("SELECT * FROM achievements WHERE code = $1")
                    .bind(code)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(Self::err)?;
                row.as_ref().map(Self::achievement_row).transpose()
            }

            async fn record_unlock(&self, u: &Unlock) -> Result<bool, StoreError> {
                let r = Self::unlock_query(u).execute(&self.pool).await.map_err(Self::err)?;
                Ok(r.rows_affected() == 1)
            }

            async fn unlocks_of(&self, player: &str) -> Result<Vec<Unlock>, StoreError> {
                let rows = sqlx::query("SELECT * FROM unlocks WHERE player = $1 ORDER BY unlocked_ms, code")
                    .bind(player)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(Self::err)?;
                rows.iter().map(Self::unlock_row).collect()
            }

            async fn recent_unlocks(&self, limit: u32) -> Result<Vec<Unlock>, StoreError> {
                let rows = sqlx::query("SELECT * FROM unlocks ORDER BY unlocked_ms DESC, player, code LIMIT $1")
                    .bind(limit as i64)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(Self::err)?;
                rows.iter().map(Self::unlock_row).collect()
            }

            async fn unlock_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
                let rows: Vec<(String, i64)> =
                    sqlx::query_as("SELECT code, count(*) AS n FROM unlocks GROUP BY code ORDER BY code")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(Self::err)?;
                Ok(rows.into_iter().map(|(c, n)| (c, n as u64)).collect())
            }

            async fn record_progress(&self, p: &Progress) -> Result<bool, StoreError> {
                let r = Self::progress_query(p).execute(&self.pool).await.map_err(Self::err)?;
                Ok(r.rows_affected() == 1)
            }

            async fn progress_of(&self, player: &str) -> Result<Vec<Progress>, StoreError> {
                let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT player, code, current, target, updated_ms FROM progress WHERE player = $1 ORDER BY code",
                )
                .bind(player)
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(rows
                    .into_iter()
                    .map(|r| Progress { player: r.0, code: r.1, current: r.2 as u64, target: r.3 as u64, updated_ms: r.4 })
                    .collect())
            }

            async fn load_pack_state(&self, pack: &str) -> Result<Vec<(StateKey, StateValue)>, StoreError> {
                let rows: Vec<(String, String, String, String, String, Option<i64>, Option<Vec<u8>>)> = sqlx::query_as(
                    "SELECT scope, instance, player, key, kind, counter, data FROM plugin_state WHERE pack = $1
                     ORDER BY scope, instance, player, key",
                )
                .bind(pack)
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                let mut out = Vec::with_capacity(rows.len());
                for (scope, instance, player, key, kind, counter, data) in rows {
                    let (Some(scope), Some(value)) = (Scope::parse(&scope), state_value(&kind, counter, data)) else {
                        return Err(StoreError::Decode { backend: $name, message: format!("plugin_state row {pack}/{scope}/{key}") });
                    };
                    out.push((
                        StateKey { pack: pack.into(), scope, instance: instance.into(), player: player.into(), key: key.into() },
                        value,
                    ));
                }
                Ok(out)
            }

            async fn pack_positions(&self, pack: &str) -> Result<Vec<(String, u64)>, StoreError> {
                let rows: Vec<(String, i64)> =
                    sqlx::query_as("SELECT server, event_id FROM pack_positions WHERE pack = $1 ORDER BY server")
                        .bind(pack)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(Self::err)?;
                Ok(rows.into_iter().map(|(s, id)| (s, id as u64)).collect())
            }

            async fn commit_pack(&self, commit: &Commit, source: UnlockSource) -> Result<(), StoreError> {
                // Multi-row statements: a batch commits in a handful of
                // statements instead of one round trip per key and outcome.
                let (deletes, upserts) = last_write_per_key(&commit.writes);
                let (unlocks, progress) = outcome_rows(commit, source);
                let mut tx = self.commits.begin().await.map_err(Self::err)?;
                for chunk in deletes.chunks(MULTI_ROW) {
                    let mut q = sqlx::QueryBuilder::new(
                        "DELETE FROM plugin_state WHERE (pack, scope, instance, player, key) IN (VALUES ",
                    );
                    for (i, key) in chunk.iter().enumerate() {
                        q.push(if i == 0 { "(" } else { ", (" });
                        let mut row = q.separated(", ");
                        row.push_bind(&*key.pack)
                            .push_bind(key.scope.as_str())
                            .push_bind(&*key.instance)
                            .push_bind(&*key.player)
                            .push_bind(&*key.key);
                        row.push_unseparated(")");
                    }
                    q.push(")");
                    q.build().execute(&mut *tx).await.map_err(Self::err)?;
                }
                for chunk in upserts.chunks(MULTI_ROW) {
                    let mut q = sqlx::QueryBuilder::new(
                        "INSERT INTO plugin_state (pack, scope, instance, player, key, kind, counter, data) ",
                    );
                    q.push_values(chunk, |mut row, (key, value)| {
                        let (kind, counter, data) = state_parts(value);
                        row.push_bind(&*key.pack)
                            .push_bind(key.scope.as_str())
                            .push_bind(&*key.instance)
                            .push_bind(&*key.player)
                            .push_bind(&*key.key)
                            .push_bind(kind)
                            .push_bind(counter)
                            .push_bind(data);
                    });
                    q.push(
                        " ON CONFLICT (pack, scope, instance, player, key) DO UPDATE SET
                            kind = excluded.kind, counter = excluded.counter, data = excluded.data",
                    );
                    q.build().execute(&mut *tx).await.map_err(Self::err)?;
                }
                for chunk in unlocks.chunks(MULTI_ROW) {
                    let mut q = sqlx::QueryBuilder::new(
                        "INSERT INTO unlocks (player, code, pack, pack_version, unlocked_ms, event_id, match_id, source) ",
                    );
                    q.push_values(chunk, |mut row, u| {
                        row.push_bind(&u.player)
                            .push_bind(&u.code)
                            .push_bind(&u.pack)
                            .push_bind(&u.pack_version)
                            .push_bind(u.unlocked_ms)
                            .push_bind(u.event_id as i64)
                            .push_bind(&u.match_id)
                            .push_bind(u.source.as_str());
                    });
                    // The ledger keeps the first unlock: never overwritten.
                    q.push(" ON CONFLICT (player, code) DO NOTHING");
                    q.build().execute(&mut *tx).await.map_err(Self::err)?;
                }
                for chunk in progress.chunks(MULTI_ROW) {
                    let mut q = sqlx::QueryBuilder::new(
                        "INSERT INTO progress (player, code, current, target, updated_ms) ",
                    );
                    q.push_values(chunk, |mut row, p| {
                        row.push_bind(&p.player)
                            .push_bind(&p.code)
                            .push_bind(p.current as i64)
                            .push_bind(p.target as i64)
                            .push_bind(p.updated_ms);
                    });
                    q.push(
                        " ON CONFLICT (player, code) DO UPDATE SET current = excluded.current,
                            target = excluded.target, updated_ms = excluded.updated_ms
                         WHERE progress.current < excluded.current",
                    );
                    q.build().execute(&mut *tx).await.map_err(Self::err)?;
                }
                for (server, pos) in &commit.positions {
                    sqlx::query(
                        "INSERT INTO pack_positions (pack, server, event_id) VALUES ($1, $2, $3)
                         ON CONFLICT (pack, server) DO UPDATE SET event_id = excluded.event_id
                         WHERE pack_positions.event_id < excluded.event_id",
                    )
                    .bind(&*commit.pack)
                    .bind(&**server)
                    .bind(*pos as i64)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                }
                tx.commit().await.map_err(Self::err)
            }

            async fn record_plugin_failure(&self, f: &PluginFailure) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO plugin_failures (pack, pack_version, server, event_id, error, time_ms) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&f.pack)
                .bind(&f.pack_version)
                .bind(&f.server)
                .bind(f.event_id.map(|id| id as i64))
                .bind(&f.error)
                .bind(f.time_ms)
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(())
            }

            async fn plugin_failures(&self, pack: Option<&str>, limit: u32) -> Result<Vec<PluginFailure>, StoreError> {
                let rows: Vec<(String, String, String, Option<i64>, String, i64)> = sqlx::query_as(
                    "SELECT pack, pack_version, server, event_id, error, time_ms FROM plugin_failures
                     WHERE ($1 IS NULL OR pack = $1) ORDER BY time_ms DESC, id DESC LIMIT $2",
                )
                .bind(pack)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(rows
                    .into_iter()
                    .map(|r| PluginFailure {
                        pack: r.0,
                        pack_version: r.1,
                        server: r.2,
                        event_id: r.3.map(|id| id as u64),
                        error: r.4,
                        time_ms: r.5,
                    })
                    .collect())
            }
        }
    };
}

macro_rules! relational_rows {
    ($ty:ident, $db:ty, $row:ty, $args:ty) => {
        impl $ty {
            fn unlock_query(u: &Unlock) -> sqlx::query::Query<'_, $db, $args> {
                sqlx::query(
                    "INSERT INTO unlocks (player, code, pack, pack_version, unlocked_ms, event_id, match_id, source)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (player, code) DO NOTHING",
                )
                .bind(&u.player)
                .bind(&u.code)
                .bind(&u.pack)
                .bind(&u.pack_version)
                .bind(u.unlocked_ms)
                .bind(u.event_id as i64)
                .bind(&u.match_id)
                .bind(u.source.as_str())
            }

            fn progress_query(p: &Progress) -> sqlx::query::Query<'_, $db, $args> {
                sqlx::query(
                    "INSERT INTO progress (player, code, current, target, updated_ms) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (player, code) DO UPDATE SET current = excluded.current, target = excluded.target,
                        updated_ms = excluded.updated_ms
                     WHERE progress.current < excluded.current",
                )
                .bind(&p.player)
                .bind(&p.code)
                .bind(p.current as i64)
                .bind(p.target as i64)
                .bind(p.updated_ms)
            }

            fn server_row(r: &$row) -> Result<Server, StoreError> {
                let status: String = r.try_get("status").map_err(Self::err)?;
                Ok(Server {
                    id: r.try_get("id").map_err(Self::err)?,
                    name: r.try_get("name").map_err(Self::err)?,
                    ip_address: r.try_get("ip_address").map_err(Self::err)?,
                    port: r.try_get::<i32, _>("port").map_err(Self::err)? as u16,
                    token_hash: r.try_get("token_hash").map_err(Self::err)?,
                    status: ServerStatus::parse(&status).unwrap_or(ServerStatus::Disabled),
                    created_ms: r.try_get("created_ms").map_err(Self::err)?,
                    last_seen_ms: r.try_get("last_seen_ms").map_err(Self::err)?,
                })
            }

            fn unlock_row(r: &$row) -> Result<Unlock, StoreError> {
                let source: String = r.try_get("source").map_err(Self::err)?;
                Ok(Unlock {
                    player: r.try_get("player").map_err(Self::err)?,
                    code: r.try_get("code").map_err(Self::err)?,
                    pack: r.try_get("pack").map_err(Self::err)?,
                    pack_version: r.try_get("pack_version").map_err(Self::err)?,
                    unlocked_ms: r.try_get("unlocked_ms").map_err(Self::err)?,
                    event_id: r.try_get::<i64, _>("event_id").map_err(Self::err)? as u64,
                    match_id: r.try_get("match_id").map_err(Self::err)?,
                    source: UnlockSource::parse(&source).unwrap_or(UnlockSource::Live),
                })
            }

            fn achievement_row(r: &$row) -> Result<StoredAchievement, StoreError> {
                Ok(StoredAchievement {
                    id: r.try_get("id").map_err(Self::err)?,
                    def: AchievementDef {
                        code: r.try_get("code").map_err(Self::err)?,
                        pack: r.try_get("pack").map_err(Self::err)?,
                        pack_version: r.try_get("pack_version").map_err(Self::err)?,
                        name: r.try_get("name").map_err(Self::err)?,
                        description: r.try_get("description").map_err(Self::err)?,
                        category: r.try_get("category").map_err(Self::err)?,
                        tier: r.try_get("tier").map_err(Self::err)?,
                        points: r.try_get("points").map_err(Self::err)?,
                        icon: r.try_get("icon").map_err(Self::err)?,
                        metric: r.try_get("metric").map_err(Self::err)?,
                        target: r.try_get("target").map_err(Self::err)?,
                        is_hidden: r.try_get("is_hidden").map_err(Self::err)?,
                    },
                    active: r.try_get("active").map_err(Self::err)?,
                    updated_ms: r.try_get("updated_ms").map_err(Self::err)?,
                })
            }
        }
    };
}

relational_rows!(
    PgRelational,
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    sqlx::postgres::PgArguments
);
relational_rows!(
    SqliteRelational,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteRow,
    sqlx::sqlite::SqliteArguments
);
relational_impl!(PgRelational, "postgres", PG_MIGRATIONS);
relational_impl!(SqliteRelational, "sqlite", SQLITE_MIGRATIONS);
