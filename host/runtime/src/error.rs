//! Errors, failure records and the failure sink.

use std::time::SystemTime;

use opm_model::Str;
use serde::Serialize;

/// Why a component could not be loaded, or a version was rejected.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    #[error("reading {0}: {1}")]
    Io(String, String),
    #[error("engine: {0}")]
    Engine(String),
    #[error("component is {0} bytes, the limit is {1}")]
    TooBig(usize, usize),
    #[error("compiling: {0}")]
    Compile(String),
    #[error("component implements neither the achievement-pack nor the enricher world")]
    UnknownWorld,
    #[error("linking: {0}")]
    Link(String),
    #[error("instantiating: {0}")]
    Instantiate(String),
    #[error("describe failed: {0}")]
    Describe(String),
    #[error("invalid metadata: {0}")]
    Metadata(String),
    #[error("achievement code {code:?} is already declared by pack {pack:?}")]
    DuplicateCode { code: String, pack: String },
    #[error("state store: {0}")]
    Store(String),
}

/// Error from `PluginHost::process`: the state store refused a commit. The
/// batch may be offered again as is: packs that did commit skip what they
/// already evaluated.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProcessError {
    #[error("worker {0} is out of range (the runtime has {1})")]
    Worker(usize, usize),
    #[error("state store unavailable for pack {pack}: {message}")]
    Store { pack: String, message: String },
}

/// What went wrong in one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A Wasm trap (panic, unreachable, bad memory access…).
    Trap,
    /// The epoch deadline (or fuel, in tooling) ran out.
    Timeout,
    /// Linear memory would exceed the cap.
    OutOfMemory,
    /// The guest returned `plugin-error`.
    PluginError,
    /// Unknown code, player out of range, too many outcomes, a state call
    /// naming an event or player the batch lacks.
    InvalidOutput,
    /// A state quota (key length, blob size, keys per player, set size).
    StateLimit,
    /// A fresh instance could not be made (instantiation or `describe`).
    Instantiate,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Trap => "trap",
            ErrorKind::Timeout => "timeout",
            ErrorKind::OutOfMemory => "oom",
            ErrorKind::PluginError => "plugin_error",
            ErrorKind::InvalidOutput => "invalid_output",
            ErrorKind::StateLimit => "state_limit",
            ErrorKind::Instantiate => "instantiate",
        }
    }
}

/// A poison event: one a pack failed on, alone, after a retry. The pack
/// skips it and moves on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub pack: Str,
    pub version: Str,
    pub server: Str,
    pub event_id: u64,
    pub kind: ErrorKind,
    pub message: String,
    pub at: SystemTime,
}

/// Where failures go besides the in-memory ring, e.g. a `plugin_failures`
/// table. Called from worker threads, outside any Wasm call.
pub trait FailureSink: Send + Sync {
    fn record(&self, failure: &Failure);
}
