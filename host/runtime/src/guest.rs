//! Building guest components from the workspace, for tests and the CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use parking_lot::Mutex;

/// Serialises builds within a process: concurrent cargo runs on one target
/// dir only queue on cargo's lock anyway, and interleaved output is useless.
static BUILD: Mutex<()> = Mutex::new(());

#[derive(Debug, thiserror::Error)]
pub enum GuestBuildError {
    #[error("running cargo: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("cargo build of {package} failed:\n{stderr}")]
    Failed { package: String, stderr: String },
    #[error("cargo succeeded but {0} is missing")]
    Missing(PathBuf),
}

/// Runs `cargo build --target wasm32-wasip2 --profile wasm -p <package>
/// --target-dir <root>/target/guests` and returns the component's path.
pub fn build_component(package: &str, workspace_root: &Path) -> Result<PathBuf, GuestBuildError> {
    let _serial = BUILD.lock();
    let target_dir = workspace_root.join("target").join("guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root)
        .args([
            "build",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "wasm",
            "-p",
            package,
            "--target-dir",
        ])
        .arg(&target_dir)
        // Flags meant for the host build must not leak into the guest's.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()?;
    if !out.status.success() {
        return Err(GuestBuildError::Failed {
            package: package.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let path = target_dir
        .join("wasm32-wasip2")
        .join("wasm")
        .join(format!("{}.wasm", package.replace('-', "_")));
    if !path.exists() {
        return Err(GuestBuildError::Missing(path));
    }
    Ok(path)
}
