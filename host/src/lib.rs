//! OpenMOHAA Stats host: one binary that ingests game events, runs the
//! achievement plugins, stores events and serves stats.
//!
//! Modules, one per concept:
//! * [`cli`]: the command line (`serve`, `plugin …`, …);
//! * [`config`]: server settings from flags and environment;
//! * [`server`]: the HTTP server and its routes.

pub mod cli;
pub mod config;
pub mod server;
