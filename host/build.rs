//! Builds the bundled achievement packs (`plugins/*`) as `wasm32-wasip2`
//! components and embeds them, so the one binary serves them with nothing
//! else installed. Set `OPM_SKIP_BUNDLED_PACKS=1` to embed none (for example
//! when the wasm target is unavailable).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("bundled_packs.rs");
    println!("cargo:rerun-if-env-changed=OPM_SKIP_BUNDLED_PACKS");
    for watched in ["plugins", "plugin-sdk/src", "plugin-sdk/Cargo.toml", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let packs = bundled_pack_dirs(&root.join("plugins"));
    if std::env::var_os("OPM_SKIP_BUNDLED_PACKS").is_some() || packs.is_empty() {
        std::fs::write(&out, "pub const BUNDLED_PACKS: &[(&str, &[u8])] = &[];\n").unwrap();
        return;
    }

    ensure_wasm_target();
    let target_dir = root.join("target").join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "wasm",
            "--target-dir",
        ])
        .arg(&target_dir);
    for (package, _) in &packs {
        cmd.args(["-p", package]);
    }
    // The outer build's settings are for the host, not for the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo for the bundled packs");
    assert!(
        status.success(),
        "building the bundled packs failed (is the target installed? `rustup target add wasm32-wasip2`; \
         or set OPM_SKIP_BUNDLED_PACKS=1)"
    );

    let mut code = String::from("pub const BUNDLED_PACKS: &[(&str, &[u8])] = &[\n");
    for (package, _) in &packs {
        let file = package.replace('-', "_");
        let wasm = target_dir
            .join("wasm32-wasip2/wasm")
            .join(format!("{file}.wasm"));
        assert!(wasm.exists(), "missing {}", wasm.display());
        let name = package.strip_prefix("opm-pack-").unwrap_or(package);
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            wasm.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(&out, code).unwrap();
}

/// `(package name, dir)` of every pack crate under `plugins/`.
fn bundled_pack_dirs(plugins: &Path) -> Vec<(String, PathBuf)> {
    let mut packs = Vec::new();
    let Ok(entries) = std::fs::read_dir(plugins) else {
        return packs;
    };
    for entry in entries.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let name = text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("name = ")
                .map(|v| v.trim_matches('"').to_string())
        });
        if let Some(name) = name {
            packs.push((name, entry.path()));
        }
    }
    packs.sort();
    packs
}

/// Adds the `wasm32-wasip2` target through rustup when it is missing, so the
/// quick start is one command on a fresh machine.
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.is_some_and(|d| d.exists()) {
        return;
    }
    println!("cargo:warning=adding the wasm32-wasip2 target with rustup for the bundled packs");
    let added = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        added,
        "the wasm32-wasip2 target is missing and rustup could not add it; \
         run `rustup target add wasm32-wasip2` or set OPM_SKIP_BUNDLED_PACKS=1"
    );
}
