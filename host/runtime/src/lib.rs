//! The OpenMOHAA Stats plugin runtime: runs achievement packs and enrichers,
//! WebAssembly components behind the `openmohaa:stats` WIT contract, on
//! wasmtime.
//!
//! * [`PluginHost`]: load a directory of components (precompiled to a
//!   `.cwasm` cache), hot-reload it, and evaluate event batches from worker
//!   threads with transactional per-batch state, outcome validation,
//!   retries, poison-event bisection and quarantine;
//! * [`RuntimeConfig`]: limits and pool sizes;
//! * [`tooling`]: fixture runs with fuel counting, benchmarks and `check`
//!   for the author CLI;
//! * [`guest`]: building guest components from the workspace.
//!
//! See `docs/runtime.md` for the design.

mod bindings;
mod config;
mod convert;
mod enrich;
mod error;
pub mod guest;
mod host;
mod metrics;
mod pack;
mod routing;
mod sandbox;
mod state;
pub mod tooling;

pub use config::RuntimeConfig;
pub use enrich::EnricherStatus;
pub use error::{ErrorKind, Failure, FailureSink, LoadError, ProcessError};
pub use host::{
    AchievementDefinition, HostStatus, PackDefinitions, PackState, PackStatus, PluginHost,
    Rejection,
};
pub use sandbox::LogLine;
