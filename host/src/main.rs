//! `opm-stats`: the OpenMOHAA Stats server and its tools.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = opm_stats::cli::Cli::parse();
    opm_stats::cli::run(cli)
}
