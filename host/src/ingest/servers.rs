//! Game-server identity: registration, tokens and authentication.
//!
//! Tokens are 256-bit random values, stored only as their SHA-256 and
//! compared in constant time. Upstream let anyone rotate any ip:port's
//! token and returned a fresh server id on every re-registration
//! (contract §7.8, §7.9); here a re-registration keeps the stored id and
//! rotates the token only for the current token holder or an admin.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Whether a server may ingest: the relational store's own status.
pub use opm_store::relational::ServerStatus;

/// One registered game server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerRecord {
    pub id: String,
    pub name: String,
    pub ip_address: String,
    pub port: u16,
    /// Hex SHA-256 of the current token.
    pub token_hash: String,
    pub status: ServerStatus,
    pub created_ms: i64,
}

#[derive(Debug, Error)]
pub enum DirectoryError {
    #[error("server directory unavailable: {0}")]
    Unavailable(String),
    #[error("server {0} not found")]
    NotFound(String),
    #[error("a server is already registered at {0}")]
    Duplicate(String),
}

/// Where server identities live. The relational store implements it; the
/// embedded [`FileDirectory`] is the quick-start default. Calls are cheap
/// enough to make on the request path (implementations cache).
pub trait ServerDirectory: Send + Sync {
    fn insert(&self, record: ServerRecord) -> Result<(), DirectoryError>;
    fn get(&self, id: &str) -> Result<Option<ServerRecord>, DirectoryError>;
    fn get_by_addr(&self, ip: &str, port: u16) -> Result<Option<ServerRecord>, DirectoryError>;
    fn get_by_token_hash(&self, hash: &str) -> Result<Option<ServerRecord>, DirectoryError>;
    fn update_token_hash(&self, id: &str, hash: &str) -> Result<(), DirectoryError>;
    fn set_status(&self, id: &str, status: ServerStatus) -> Result<(), DirectoryError>;
    fn list(&self) -> Result<Vec<ServerRecord>, DirectoryError>;
}

/// Embedded server directory: all records in memory, persisted as one JSON
/// file replaced atomically (write, fsync, rename) on every change.
/// Registrations are rare, so rewriting the file is cheap.
pub struct FileDirectory {
    path: PathBuf,
    inner: RwLock<DirInner>,
}

#[derive(Default)]
struct DirInner {
    by_id: HashMap<String, ServerRecord>,
    by_hash: HashMap<String, String>,
    by_addr: HashMap<(String, u16), String>,
}

impl DirInner {
    fn index(&mut self, r: ServerRecord) {
        self.by_hash.insert(r.token_hash.clone(), r.id.clone());
        self.by_addr
            .insert((r.ip_address.clone(), r.port), r.id.clone());
        self.by_id.insert(r.id.clone(), r);
    }
}

impl FileDirectory {
    pub fn open(path: impl Into<PathBuf>) -> Result<FileDirectory, DirectoryError> {
        let path = path.into();
        let mut inner = DirInner::default();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let records: Vec<ServerRecord> = serde_json::from_slice(&bytes)
                    .map_err(|e| DirectoryError::Unavailable(format!("{}: {e}", path.display())))?;
                for r in records {
                    inner.index(r);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DirectoryError::Unavailable(e.to_string())),
        }
        Ok(FileDirectory {
            path,
            inner: RwLock::new(inner),
        })
    }

    fn persist(&self, inner: &DirInner) -> Result<(), DirectoryError> {
        let mut records: Vec<&ServerRecord> = inner.by_id.values().collect();
        records.sort_by(|a, b| a.id.cmp(&b.id));
        let bytes = serde_json::to_vec_pretty(&records)
            .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
        write_atomically(&self.path, &bytes).map_err(|e| DirectoryError::Unavailable(e.to_string()))
    }
}

/// Replaces `path` with `bytes` so a crash leaves the old or the new file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl ServerDirectory for FileDirectory {
    fn insert(&self, record: ServerRecord) -> Result<(), DirectoryError> {
        let mut inner = self.inner.write();
        let addr = (record.ip_address.clone(), record.port);
        if inner.by_addr.contains_key(&addr) || inner.by_id.contains_key(&record.id) {
            return Err(DirectoryError::Duplicate(format!("{}:{}", addr.0, addr.1)));
        }
        inner.index(record);
        self.persist(&inner)
    }

    fn get(&self, id: &str) -> Result<Option<ServerRecord>, DirectoryError> {
        Ok(self.inner.read().by_id.get(id).cloned())
    }

    fn get_by_addr(&self, ip: &str, port: u16) -> Result<Option<ServerRecord>, DirectoryError> {
        let inner = self.inner.read();
        Ok(inner
            .by_addr
            .get(&(ip.to_string(), port))
            .and_then(|id| inner.by_id.get(id))
            .cloned())
    }

    fn get_by_token_hash(&self, hash: &str) -> Result<Option<ServerRecord>, DirectoryError> {
        let inner = self.inner.read();
        Ok(inner
            .by_hash
            .get(hash)
            .and_then(|id| inner.by_id.get(id))
            .cloned())
    }

    fn update_token_hash(&self, id: &str, hash: &str) -> Result<(), DirectoryError> {
        let mut inner = self.inner.write();
        let old = match inner.by_id.get_mut(id) {
            Some(r) => std::mem::replace(&mut r.token_hash, hash.to_string()),
            None => return Err(DirectoryError::NotFound(id.to_string())),
        };
        inner.by_hash.remove(&old);
        inner.by_hash.insert(hash.to_string(), id.to_string());
        self.persist(&inner)
    }

    fn set_status(&self, id: &str, status: ServerStatus) -> Result<(), DirectoryError> {
        let mut inner = self.inner.write();
        match inner.by_id.get_mut(id) {
            Some(r) => r.status = status,
            None => return Err(DirectoryError::NotFound(id.to_string())),
        }
        self.persist(&inner)
    }

    fn list(&self) -> Result<Vec<ServerRecord>, DirectoryError> {
        let mut v: Vec<ServerRecord> = self.inner.read().by_id.values().cloned().collect();
        v.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
        Ok(v)
    }
}

/// Who may register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RegistrationPolicy {
    /// Any server may register and ingest at once (the quick start).
    #[default]
    Open,
    /// New servers wait, `pending`, until an admin approves them.
    Approval,
}

/// A fresh 256-bit token, hex encoded.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("operating system random source");
    hex::encode(bytes)
}

/// Hex SHA-256 of a token, the only form stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time comparison of a presented secret with a stored hash.
pub fn token_matches(token: &str, stored_hash: &str) -> bool {
    hashes_match(&hash_token(token), stored_hash)
}

/// Constant-time comparison of two token hashes.
fn hashes_match(computed: &str, stored_hash: &str) -> bool {
    computed.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// Constant-time equality of two secrets of possibly different length.
pub fn secret_eq(a: &str, b: &str) -> bool {
    // Hashing first makes the comparison independent of the lengths.
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    ha.as_slice().ct_eq(hb.as_slice()).into()
}

#[derive(Debug, Error)]
pub enum AuthError {
    #[error("Missing server token")]
    Missing,
    #[error("Invalid server token")]
    Invalid,
    #[error("Server is pending approval")]
    Pending,
    #[error("Server is disabled")]
    Disabled,
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

#[derive(Debug, Error)]
pub enum RegisterError {
    #[error("Name and IP address are required")]
    MissingFields,
    #[error("Invalid port: {0}")]
    BadPort(String),
    #[error(
        "A server is already registered at {0}; send its current token in X-Server-Token (or an admin token) to rotate it"
    )]
    Conflict(String),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// What a registration returns.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    pub server_id: String,
    pub token: String,
    pub status: ServerStatus,
    /// True when an existing registration's token was rotated.
    pub rotated: bool,
}

/// Registration and authentication over a [`ServerDirectory`].
#[derive(Clone)]
pub struct Servers {
    directory: Arc<dyn ServerDirectory>,
    policy: RegistrationPolicy,
    admin_token: Option<Arc<str>>,
}

impl Servers {
    pub fn new(
        directory: Arc<dyn ServerDirectory>,
        policy: RegistrationPolicy,
        admin_token: Option<String>,
    ) -> Servers {
        Servers {
            directory,
            policy,
            admin_token: admin_token.filter(|t| !t.is_empty()).map(Arc::from),
        }
    }

    pub fn directory(&self) -> &Arc<dyn ServerDirectory> {
        &self.directory
    }

    /// True when `presented` is the configured admin token.
    pub fn is_admin(&self, presented: Option<&str>) -> bool {
        match (&self.admin_token, presented) {
            (Some(admin), Some(p)) => secret_eq(admin, p),
            _ => false,
        }
    }

    pub fn admin_configured(&self) -> bool {
        self.admin_token.is_some()
    }

    /// The server a token belongs to, if it may ingest.
    pub fn authenticate(&self, token: Option<&str>) -> Result<ServerRecord, AuthError> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        // Hashed once (every ingest request comes through here): the
        // lookup finds the record, the constant-time comparison confirms it.
        let hash = hash_token(token);
        let record = self
            .directory
            .get_by_token_hash(&hash)?
            .filter(|r| hashes_match(&hash, &r.token_hash))
            .ok_or(AuthError::Invalid)?;
        match record.status {
            ServerStatus::Active => Ok(record),
            ServerStatus::Pending => Err(AuthError::Pending),
            ServerStatus::Disabled => Err(AuthError::Disabled),
        }
    }

    /// Registers a server, or re-registers an existing ip:port.
    pub fn register(
        &self,
        name: &str,
        ip: &str,
        port: u16,
        presented_token: Option<&str>,
        presented_admin: Option<&str>,
        now_ms: i64,
    ) -> Result<Registration, RegisterError> {
        let (name, ip) = (name.trim(), ip.trim());
        if name.is_empty() || ip.is_empty() {
            return Err(RegisterError::MissingFields);
        }
        let token = new_token();
        if let Some(existing) = self.directory.get_by_addr(ip, port)? {
            let holder = presented_token
                .map(str::trim)
                .is_some_and(|t| !t.is_empty() && token_matches(t, &existing.token_hash));
            if !holder && !self.is_admin(presented_admin) {
                return Err(RegisterError::Conflict(format!("{ip}:{port}")));
            }
            self.directory
                .update_token_hash(&existing.id, &hash_token(&token))?;
            return Ok(Registration {
                server_id: existing.id,
                token,
                status: existing.status,
                rotated: true,
            });
        }
        let status = match self.policy {
            RegistrationPolicy::Open => ServerStatus::Active,
            RegistrationPolicy::Approval => ServerStatus::Pending,
        };
        let record = ServerRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
            ip_address: ip.to_string(),
            port,
            token_hash: hash_token(&token),
            status,
            created_ms: now_ms,
        };
        let id = record.id.clone();
        match self.directory.insert(record) {
            Ok(()) => {}
            // Two registrations of one address raced; the loser conflicts.
            Err(DirectoryError::Duplicate(addr)) => return Err(RegisterError::Conflict(addr)),
            Err(e) => return Err(e.into()),
        }
        Ok(Registration {
            server_id: id,
            token,
            status,
            rotated: false,
        })
    }

    /// True when `id` is a registered server allowed to ingest.
    pub fn is_active(&self, id: &str) -> Result<bool, DirectoryError> {
        Ok(self
            .directory
            .get(id)?
            .is_some_and(|r| r.status == ServerStatus::Active))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(policy: RegistrationPolicy) -> (tempfile::TempDir, Servers) {
        let dir = tempfile::tempdir().unwrap();
        let d = FileDirectory::open(dir.path().join("servers.json")).unwrap();
        (
            dir,
            Servers::new(Arc::new(d), policy, Some("admin-secret".into())),
        )
    }

    #[test]
    fn register_authenticate_and_rotate() {
        let (dir, s) = servers(RegistrationPolicy::Open);
        let r = s.register("srv", "10.0.0.1", 12203, None, None, 1).unwrap();
        assert_eq!(r.token.len(), 64);
        assert_eq!(s.authenticate(Some(&r.token)).unwrap().id, r.server_id);
        assert!(matches!(
            s.authenticate(Some("nope")),
            Err(AuthError::Invalid)
        ));
        assert!(matches!(s.authenticate(None), Err(AuthError::Missing)));
        // A stranger cannot take over the address.
        assert!(matches!(
            s.register("srv", "10.0.0.1", 12203, Some("guess"), None, 2),
            Err(RegisterError::Conflict(_))
        ));
        // The holder rotates and keeps the id; the old token stops working.
        let r2 = s
            .register("srv", "10.0.0.1", 12203, Some(&r.token), None, 3)
            .unwrap();
        assert_eq!(r2.server_id, r.server_id);
        assert!(s.authenticate(Some(&r.token)).is_err());
        // So does an admin.
        let r3 = s
            .register("srv", "10.0.0.1", 12203, None, Some("admin-secret"), 4)
            .unwrap();
        assert_eq!(r3.server_id, r.server_id);
        assert_eq!(s.authenticate(Some(&r3.token)).unwrap().id, r.server_id);
        // The file survives a reopen.
        let d = FileDirectory::open(dir.path().join("servers.json")).unwrap();
        assert_eq!(d.list().unwrap().len(), 1);
        assert_eq!(
            d.get_by_token_hash(&hash_token(&r3.token))
                .unwrap()
                .unwrap()
                .id,
            r.server_id
        );
    }

    #[test]
    fn approval_policy_keeps_servers_pending() {
        let (_dir, s) = servers(RegistrationPolicy::Approval);
        let r = s.register("srv", "10.0.0.2", 1, None, None, 1).unwrap();
        assert_eq!(r.status, ServerStatus::Pending);
        assert!(matches!(
            s.authenticate(Some(&r.token)),
            Err(AuthError::Pending)
        ));
        s.directory()
            .set_status(&r.server_id, ServerStatus::Active)
            .unwrap();
        assert!(s.authenticate(Some(&r.token)).is_ok());
        assert!(s.register(" ", "1.2.3.4", 1, None, None, 1).is_err());
    }
}
