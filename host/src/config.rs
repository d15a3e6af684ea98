//! Server settings. Every flag can also be set by environment variable, and
//! the defaults run the quick start: everything embedded under `./data`.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "OPM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory for the embedded stores, journal and plugin cache.
    #[arg(long, env = "OPM_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Directory of plugin components (`*.wasm`), watched for changes;
    /// `DATA_DIR/plugins` when not set. The bundled packs are written here
    /// on start.
    #[arg(long, env = "OPM_PLUGINS")]
    pub plugins: Option<PathBuf>,
    #[command(flatten)]
    pub ingest: crate::ingest::IngestConfig,
}

impl ServeConfig {
    /// The plugin directory in effect.
    pub fn plugin_dir(&self) -> PathBuf {
        self.plugins
            .clone()
            .unwrap_or_else(|| self.data_dir.join("plugins"))
    }
}

/// Settings of `opm-stats migrate`: the stores are chosen exactly as by
/// `serve` (`CLICKHOUSE_URL`, `DATABASE_URL`/`POSTGRES_URL`, `REDIS_URL`,
/// embedded under the data directory otherwise).
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateConfig {
    /// Directory of the embedded stores.
    #[arg(long, env = "OPM_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}
