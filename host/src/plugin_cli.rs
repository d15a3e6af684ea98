//! `opm-stats plugin …`: the pack author's tools.
//!
//! `test` and `bench` run the component in the production runtime (same
//! linker, limits and state semantics as `serve`) with fuel counting, over
//! fixtures prepared exactly as the SDK's native harness prepares them, so a
//! golden file means the same thing natively, here and in production.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use opm_model::plugin::OutcomeKind;
use opm_plugin_runtime::tooling;
use opm_plugin_sdk::testing::{GoldenOutcome, read_expected};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Scaffolds a new pack that builds and passes its own test.
    New(NewArgs),
    /// Builds a pack crate as a `wasm32-wasip2` component.
    Build(BuildArgs),
    /// Runs a component over a golden fixture and compares the outcomes.
    Test(TestArgs),
    /// Measures a component: events/s, ns and instructions per event, memory.
    Bench(BenchArgs),
    /// Checks a component: WIT world, metadata, size and imports.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// Pack name (lower case, digits and dashes), also the directory name.
    pub name: String,
    /// Where to create the pack directory.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Path to the plugin SDK crate; by default the SDK of this source tree
    /// when it exists, else the crates.io version.
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The pack crate's directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The component (`.wasm`).
    pub pack: PathBuf,
    /// Events fixture (`NAME.events.jsonl`: game wire objects, one per line).
    pub fixture: PathBuf,
    /// Expected outcomes; defaults to `NAME.expected.jsonl` beside the fixture.
    #[arg(long)]
    pub expected: Option<PathBuf>,
    /// Pack configuration, `key=value`, repeatable.
    #[arg(long = "config", value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    pub pack: PathBuf,
    pub fixture: PathBuf,
    /// Events per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Timed rounds over the fixture.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Repeat the fixture this many times per round, with fresh ids.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    #[arg(long = "config", value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    pub pack: PathBuf,
    #[arg(long = "config", value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

pub fn run(cmd: PluginCommand) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::New(args) => new_pack(&args),
        PluginCommand::Build(args) => build(&args.dir).map(|path| println!("{}", path.display())),
        PluginCommand::Test(args) => test(&args),
        PluginCommand::Bench(args) => bench(&args),
        PluginCommand::Check(args) => check(&args),
    }
}

fn load_fixture(path: &Path) -> anyhow::Result<Vec<opm_model::Event>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    opm_plugin_sdk::testing::prepare(&text).with_context(|| format!("preparing {}", path.display()))
}

fn test(args: &TestArgs) -> anyhow::Result<()> {
    let events = load_fixture(&args.fixture)?;
    let expected_path = args
        .expected
        .clone()
        .unwrap_or_else(|| sibling_expected(&args.fixture));
    let expected = read_expected(&expected_path)
        .with_context(|| format!("reading {}", expected_path.display()))?;
    // One batch, single events and the production batch size must all agree.
    let mut report = None;
    for batch in [events.len().max(1), 1, 64] {
        let run = tooling::run_fixture(&args.pack, args.config.clone(), &events, batch)
            .with_context(|| format!("running {}", args.pack.display()))?;
        if let Some(f) = run.failures.first() {
            bail!(
                "the pack failed on event {}: {} ({:?})",
                f.event_id,
                f.message,
                f.kind
            );
        }
        let actual: Vec<GoldenOutcome> = run
            .outcomes
            .iter()
            .map(|o| GoldenOutcome {
                player: o.player.to_string(),
                code: o.code.to_string(),
                kind: o.kind.clone(),
                event_id: o.event_id,
            })
            .collect();
        if actual != expected {
            bail!(
                "outcomes differ with batches of {batch}:\n{}",
                diff(&expected, &actual)
            );
        }
        report.get_or_insert(run);
    }
    let run = report.expect("ran at least once");
    println!(
        "ok: {} events, {} outcomes ({} unlocks), {:.0} instructions/event, memory high-water {} KiB",
        run.events,
        run.outcomes.len(),
        run.outcomes
            .iter()
            .filter(|o| o.kind == OutcomeKind::Unlock)
            .count(),
        run.fuel as f64 / run.events.max(1) as f64,
        run.memory_high_water / 1024
    );
    Ok(())
}

fn sibling_expected(fixture: &Path) -> PathBuf {
    let name = fixture
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let stem = name.strip_suffix(".events.jsonl").unwrap_or(name);
    fixture.with_file_name(format!("{stem}.expected.jsonl"))
}

fn diff(expected: &[GoldenOutcome], actual: &[GoldenOutcome]) -> String {
    let mut out = String::new();
    for i in 0..expected.len().max(actual.len()) {
        let (e, a) = (expected.get(i), actual.get(i));
        if e != a {
            let line = |o: Option<&GoldenOutcome>| {
                o.map(GoldenOutcome::to_line)
                    .unwrap_or_else(|| "(none)".into())
            };
            out.push_str(&format!(
                "  #{i}\n    expected {}\n    actual   {}\n",
                line(e),
                line(a)
            ));
        }
    }
    out
}

fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    let base = load_fixture(&args.fixture)?;
    let mut events = Vec::with_capacity(base.len() * args.repeat.max(1));
    // Repeats get ids past the previous copy, so positions never skip them.
    let span = base.iter().map(|e| e.id).max().unwrap_or(0) + 1;
    for r in 0..args.repeat.max(1) as u64 {
        events.extend(base.iter().cloned().map(|mut e| {
            e.id += r * span;
            e
        }));
    }
    let r = tooling::bench(
        &args.pack,
        args.config.clone(),
        &events,
        args.batch,
        args.rounds,
    )?;
    println!(
        "{} events, batch {}: {:.0} events/s, {:.0} ns/event, {:.0} instructions/event, memory high-water {} KiB",
        r.events,
        args.batch,
        1e9 / r.ns_per_event.max(f64::MIN_POSITIVE),
        r.ns_per_event,
        r.fuel_per_event,
        r.memory_high_water / 1024
    );
    Ok(())
}

fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let r = tooling::check(&args.pack, args.config.clone());
    println!("size: {} KiB", r.size / 1024);
    println!("world: {}", r.world.unwrap_or("none"));
    for import in &r.imports {
        let mark = if r.forbidden_imports.contains(import) {
            "FORBIDDEN"
        } else {
            "ok"
        };
        println!("import {import}: {mark}");
    }
    if r.ok() {
        println!("ok");
        Ok(())
    } else {
        for p in &r.problems {
            println!("problem: {p}");
        }
        bail!("{} problem(s)", r.problems.len())
    }
}

/// Builds the crate in `dir` for `wasm32-wasip2` and returns the component.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let package = package_name(&text)
        .with_context(|| format!("no package name in {}", manifest.display()))?;
    let target_dir = dir.join("target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--profile",
            "wasm",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .context("running cargo (is the Rust toolchain installed?)")?;
    if !status.success() {
        bail!("cargo build failed; is the target installed? `rustup target add wasm32-wasip2`");
    }
    let wasm = target_dir
        .join("wasm32-wasip2/wasm")
        .join(format!("{}.wasm", package.replace('-', "_")));
    if !wasm.exists() {
        bail!(
            "cargo succeeded but {} is missing (is the crate a cdylib?)",
            wasm.display()
        );
    }
    Ok(wasm)
}

fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(v) = line.strip_prefix("name") {
            let v = v.trim_start().strip_prefix('=')?.trim().trim_matches('"');
            return Some(v.to_string());
        }
    }
    None
}

fn new_pack(args: &NewArgs) -> anyhow::Result<()> {
    use opm_plugin_sdk::template::{SdkSource, generate};
    let sdk = match &args.sdk {
        Some(path) => SdkSource::Path(std::fs::canonicalize(path)?),
        None => match local_sdk() {
            Some(path) => SdkSource::Path(path),
            None => SdkSource::Version(env!("CARGO_PKG_VERSION").to_string()),
        },
    };
    let dir = args.dir.join(&args.name);
    let files = generate(&dir, &args.name, &sdk)?;
    println!("created {} ({} files)", dir.display(), files.len());
    println!(
        "next: cd {} && cargo test && opm-stats plugin build",
        dir.display()
    );
    Ok(())
}

/// The SDK of the source tree this binary was built from, if still there.
fn local_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .join("plugin-sdk");
    sdk.join("Cargo.toml")
        .exists()
        .then(|| sdk.canonicalize().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_package_name() {
        let m = "[workspace]\n\n[package]\nname = \"my-pack\"\nversion = \"0.1.0\"\n[dependencies]\nname = \"x\"\n";
        assert_eq!(package_name(m).as_deref(), Some("my-pack"));
        assert_eq!(package_name("[dependencies]\nname = \"x\""), None);
    }

    #[test]
    fn expected_file_beside_the_fixture() {
        assert_eq!(
            sibling_expected(Path::new("t/golden/kills.events.jsonl")),
            PathBuf::from("t/golden/kills.expected.jsonl")
        );
    }
}
