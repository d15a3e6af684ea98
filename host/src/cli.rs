//! The command line.

use clap::{Parser, Subcommand};

use crate::config::ServeConfig;

#[derive(Debug, Parser)]
#[command(
    name = "opm-stats",
    version,
    about = "OpenMOHAA Stats server and tools"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the server.
    Serve(ServeConfig),
    /// Creates or upgrades every store's schema, then checks all three
    /// stores answer (idempotent; `serve` also does it on start).
    Migrate(crate::config::MigrateConfig),
    /// Simulates game servers sending events (benchmarks, golden files).
    Loadgen(crate::loadgen::LoadgenConfig),
    /// Feeds a recorded event stream (JSONL) through the ingest pipeline.
    Import(crate::loadgen::ImportConfig),
    /// Pack author tools: new, build, test, bench, check.
    #[command(subcommand)]
    Plugin(crate::plugin_cli::PluginCommand),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // The author tools print their own report; keep logs for problems.
                match cli.command {
                    Command::Plugin(_) => "warn".into(),
                    _ => "info".into(),
                }
            }),
        )
        // Reports (loadgen, import, plugin tools) own stdout.
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(config) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .on_thread_start(opm_model::sched::enter_foreground)
            .build()?
            .block_on(crate::server::serve(config)),
        Command::Migrate(config) => tokio::runtime::Runtime::new()?.block_on(migrate(config)),
        Command::Loadgen(config) => {
            use crate::loadgen::server_side;
            let (pid, url) = (config.server_pid, config.url.clone());
            let cpu_before = pid.and_then(server_side::cpu_seconds);
            let rt = tokio::runtime::Runtime::new()?;
            let report = rt.block_on(crate::loadgen::run(config))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if let (Some(pid), Some(cpu_before)) = (pid, cpu_before) {
                let server = rt.block_on(server_side::after_run(
                    &url,
                    pid,
                    cpu_before,
                    report.events,
                    report.seconds,
                ));
                if let Some(server) = server {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({ "server": server }))?
                    );
                }
            }
            Ok(())
        }
        Command::Plugin(cmd) => crate::plugin_cli::run(cmd),
        Command::Import(config) => {
            let (ok, bad) = crate::loadgen::import(config)?;
            println!("imported {ok} events, rejected {bad}");
            Ok(())
        }
    }
}

async fn migrate(config: crate::config::MigrateConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let stores = opm_store::StoreConfig::from_env(&config.data_dir)?;
    let report = opm_store::migrate(&stores).await?;
    println!(
        "analytics: {} schema applied\nrelational: {}, {} migration(s) applied",
        report.analytics, report.relational, report.relational_applied
    );
    // The live store has no schema; check it answers, like the other two.
    let opened = opm_store::Stores::open(&stores).await?;
    opened.ready().await?;
    println!("live: {} reachable", opened.live.backend());
    Ok(())
}
