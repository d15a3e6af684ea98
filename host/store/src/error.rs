//! The one error type of the storage layer.

use thiserror::Error;

/// Why a storage call failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The backend could not be reached or dropped the connection: the
    /// caller may retry later (the batch writer does, with backoff).
    #[error("{backend} unavailable: {message}")]
    Unavailable {
        backend: &'static str,
        message: String,
    },
    /// The backend answered but refused the request (bad SQL, constraint).
    #[error("{backend} rejected the request: {message}")]
    Rejected {
        backend: &'static str,
        message: String,
    },
    /// The configuration names something this build cannot open.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// A row came back in a shape the caller did not expect.
    #[error("unexpected data from {backend}: {message}")]
    Decode {
        backend: &'static str,
        message: String,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// True when retrying the same call later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    pub(crate) fn sqlx(backend: &'static str, e: sqlx::Error) -> StoreError {
        use sqlx::Error as E;
        match e {
            E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::Tls(_) => {
                StoreError::Unavailable {
                    backend,
                    message: e.to_string(),
                }
            }
            E::Database(ref db) if is_transient_db(db.code().as_deref()) => {
                StoreError::Unavailable {
                    backend,
                    message: e.to_string(),
                }
            }
            E::ColumnDecode { .. }
            | E::Decode(_)
            | E::ColumnNotFound(_)
            | E::TypeNotFound { .. } => StoreError::Decode {
                backend,
                message: e.to_string(),
            },
            _ => StoreError::Rejected {
                backend,
                message: e.to_string(),
            },
        }
    }

    pub(crate) fn redis(e: redis::RedisError) -> StoreError {
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
        {
            StoreError::Unavailable {
                backend: "redis",
                message: e.to_string(),
            }
        } else {
            StoreError::Rejected {
                backend: "redis",
                message: e.to_string(),
            }
        }
    }
}

/// SQLite busy/locked (5, 6) and PostgreSQL connection / shutdown classes
/// (08xxx, 57Pxx) and serialization failures (40001) are worth a retry.
fn is_transient_db(code: Option<&str>) -> bool {
    match code {
        Some("5" | "6" | "40001" | "40P01") => true,
        Some(c) => c.starts_with("08") || c.starts_with("57P"),
        None => false,
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
