//! `opm-stats`: the OpenMOHAA Stats server and its tools.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = opm_stats::cli::Cli::parse();
    opm_stats::cli::run(cli)
}
