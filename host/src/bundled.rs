//! The achievement packs bundled into the binary (built from `plugins/*` by
//! `build.rs`).
//!
//! On start the server writes each bundled pack into its plugin directory
//! when the file is missing or is an older bundled build, so the directory
//! is the single place packs are loaded, watched and hot-reloaded from. A
//! pack an admin replaced (different bytes, no bundled marker match) is left
//! alone.

use std::path::Path;

use sha2::{Digest, Sha256};

include!(concat!(env!("OUT_DIR"), "/bundled_packs.rs"));

/// Marker file recording the hash of each bundled pack we wrote.
const MARKER_SUFFIX: &str = ".bundled-sha256";

/// Writes the bundled packs into `dir`. Returns the names written.
pub fn install(dir: &Path) -> std::io::Result<Vec<&'static str>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, bytes) in BUNDLED_PACKS {
        let path = dir.join(format!("{name}.wasm"));
        let marker = dir.join(format!(".{name}{MARKER_SUFFIX}"));
        let ours = hex::encode(Sha256::digest(bytes));
        let current = std::fs::read(&path)
            .ok()
            .map(|b| hex::encode(Sha256::digest(&b)));
        let last_written = std::fs::read_to_string(&marker).ok();
        let replace = match &current {
            None => true,
            // Unchanged since we wrote it: safe to upgrade.
            Some(c) => last_written.as_deref() == Some(c.as_str()) && *c != ours,
        };
        if replace {
            // Write then rename, so the watcher never sees half a file.
            let tmp = dir.join(format!(".{name}.wasm.tmp"));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
            std::fs::write(&marker, &ours)?;
            written.push(*name);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_then_leaves_admin_replacements_alone() {
        let dir = tempfile::tempdir().unwrap();
        let first = install(dir.path()).unwrap();
        assert_eq!(first.len(), BUNDLED_PACKS.len());
        assert!(
            install(dir.path()).unwrap().is_empty(),
            "second install rewrites nothing"
        );
        if let Some((name, _)) = BUNDLED_PACKS.first() {
            let path = dir.path().join(format!("{name}.wasm"));
            std::fs::write(&path, b"admin's own build").unwrap();
            assert!(install(dir.path()).unwrap().is_empty());
            assert_eq!(std::fs::read(&path).unwrap(), b"admin's own build");
        }
    }
}
