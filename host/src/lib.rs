//! OpenMOHAA Stats host: one binary that ingests game events, runs the
//! achievement plugins, stores events and serves stats.
//!
//! Modules, one per concept:
//! * [`bundled`]: the achievement packs built into the binary;
//! * [`catalog`]: the loaded packs' achievement definitions, synced into
//!   the relational store;
//! * [`cli`]: the command line (`serve`, `plugin …`, …);
//! * [`config`]: server settings from flags and environment;
//! * [`server`]: the HTTP server and its routes;
//! * [`ingest`]: HTTP/MQTT ingest, server identity, journal, queue and pipeline;
//! * [`metrics`]: Prometheus metrics and `GET /metrics`;
//! * [`plugin_cli`]: the pack author's tools (`opm-stats plugin …`);
//! * [`plugin_routes`]: admin routes for the plugin runtime;
//! * [`loadgen`]: the synthetic game (`opm-stats loadgen`) and `import`;
//! * [`api`]: the read routes over the stores (player, leaderboard, match,
//!   achievements), cached in the live store.

pub mod api;
pub mod bundled;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod ingest;
pub mod loadgen;
pub mod metrics;
pub mod plugin_cli;
pub mod plugin_routes;
pub mod server;
