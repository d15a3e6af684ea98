//! `PluginHost::definitions` reports what the loaded packs' `describe()`
//! declared, and `definitions_revision` changes with every load, reload,
//! rollback and unload (and only then).

mod common;

use common::*;

/// The component with a custom section appended: different bytes, same
/// behaviour and declarations.
fn variant(base: &[u8]) -> Vec<u8> {
    let name = b"opm-test-version";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(b"v2");
    let mut out = base.to_vec();
    out.push(0);
    out.push(payload.len() as u8);
    out.extend(payload);
    out
}

#[test]
fn definitions_follow_loads_reloads_rollbacks_and_unloads() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir.path().join("cache"), 1);
    cfg.pack_config.insert(
        "defs".into(),
        kv(&[("id", "defs-pack"), ("version", "1.2.0")]),
    );
    let (host, _, _) = new_host(cfg);
    let empty = host.definitions_revision();
    assert!(host.definitions().is_empty());

    let base = std::fs::read(good_pack()).unwrap();
    let path = dir.path().join("defs.wasm");
    std::fs::write(&path, &base).unwrap();
    host.load_file(&path).unwrap();
    let first = host.definitions_revision();
    assert_ne!(first, empty);
    assert_eq!(host.definitions_revision(), first, "stable without changes");
    let defs = host.definitions();
    assert_eq!(defs.len(), 1);
    let pack = &defs[0];
    assert_eq!(pack.pack, "defs-pack");
    assert_eq!(pack.version, "1.2.0");
    assert_eq!(pack.sha256, host.status().packs[0].sha256);
    let codes: Vec<(&str, &str, u64)> = pack
        .achievements
        .iter()
        .map(|a| (a.code.as_str(), a.name.as_str(), a.target))
        .collect();
    assert_eq!(
        codes,
        [
            ("defs-pack-kills-1", "1 kills", 1),
            ("defs-pack-streak-3", "Streak", 3),
            ("defs-pack-match-5", "Match five", 5),
        ]
    );
    let a = &pack.achievements[0];
    assert_eq!(
        (
            a.description.as_str(),
            a.category.as_str(),
            a.tier,
            a.points,
            a.hidden
        ),
        ("test achievement", "basic", 1, 10, false)
    );

    // A rebuild under the same version is a new revision.
    std::fs::write(&path, variant(&base)).unwrap();
    host.load_file(&path).unwrap();
    let second = host.definitions_revision();
    assert_ne!(second, first);
    assert_ne!(host.definitions()[0].sha256, pack.sha256);

    // Rolling back brings the first revision back.
    assert!(host.rollback("defs-pack"));
    assert_eq!(host.definitions_revision(), first);
    assert_eq!(host.definitions(), defs);

    host.unload(&path);
    assert!(host.definitions().is_empty());
    assert_eq!(host.definitions_revision(), empty);
}
