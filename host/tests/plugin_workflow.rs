//! The author workflow of `docs/plugin-guide.md`, end to end with the real
//! binary: `plugin new` → `plugin build` → `plugin test` → copy the
//! component into a running server's plugin directory → the pack is live and
//! its unlocks are served for events sent over HTTP.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};

const ADMIN: &str = "workflow-admin-token";

fn opm(args: &[&str], dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_opm-stats"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run opm-stats");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "opm-stats {args:?} failed:\n{text}");
    text
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn new_build_test_drop_in_and_unlock() {
    let work = tempfile::tempdir().unwrap();

    // 1. Scaffold, build and test the pack with the CLI.
    opm(&["plugin", "new", "wf-pack"], work.path());
    let pack_dir = work.path().join("wf-pack");
    let built = opm(&["plugin", "build", "."], &pack_dir);
    let printed = built
        .lines()
        .find(|l| l.trim().ends_with(".wasm"))
        .unwrap_or_else(|| panic!("no component path in:\n{built}"));
    let wasm = pack_dir.join(printed.trim());
    assert!(wasm.exists(), "component at {}", wasm.display());
    let tested = opm(
        &[
            "plugin",
            "test",
            wasm.to_str().unwrap(),
            "tests/golden/first_kills.events.jsonl",
        ],
        &pack_dir,
    );
    assert!(tested.contains("ok:"), "{tested}");
    opm(&["plugin", "check", wasm.to_str().unwrap()], &pack_dir);

    // 2. A running server on embedded defaults, with the bundled packs.
    let data = work.path().join("data");
    let server = Server::start(&data, &["--admin-token", ADMIN]);
    let client = &server.client;
    let packs = || -> Vec<String> {
        let status: Value = client
            .get(server.url("/api/v1/admin/plugins"))
            .header("X-Admin-Token", ADMIN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        status["packs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect()
    };
    wait_until("bundled packs", || {
        let p = packs();
        (p.contains(&"milestones".to_string()) && p.contains(&"streaks".to_string())).then_some(())
    });
    assert!(!packs().contains(&"wf-pack".to_string()));
    let catalogue = || -> Vec<String> {
        let list: Value = client
            .get(server.url("/api/v1/achievements"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|d| d["code"].as_str().unwrap().to_string())
            .collect()
    };
    // Cached now; the hot reload's sync must invalidate it.
    assert!(!catalogue().contains(&"wf_pack_first_kill".to_string()));

    // 3. Drop the component in: the watcher loads it.
    let tmp = data.join("plugins").join(".wf-pack.wasm.part");
    std::fs::copy(&wasm, &tmp).unwrap();
    std::fs::rename(&tmp, data.join("plugins").join("wf-pack.wasm")).unwrap();
    wait_until("wf-pack live", || {
        packs().contains(&"wf-pack".to_string()).then_some(())
    });
    wait_until("wf-pack definitions in the catalogue", || {
        catalogue()
            .contains(&"wf_pack_first_kill".to_string())
            .then_some(())
    });

    // 4. Game events over HTTP reach the new pack; its unlock is served.
    let (_, token) = server.register("Workflow", "10.9.9.9", json!("12203"));
    let fixture =
        std::fs::read_to_string(pack_dir.join("tests/golden/first_kills.events.jsonl")).unwrap();
    let events: Vec<Value> = fixture
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (status, reply) = server.post(
        &token,
        "application/json",
        serde_json::to_vec(&events).unwrap(),
    );
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["processed"], json!(events.len()));

    let codes = wait_until("alice's unlocks", || {
        let r: Value = client
            .get(server.url("/api/v1/achievements/player/alice"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let codes: Vec<String> = r["unlocked"]
            .as_array()?
            .iter()
            .filter_map(|u| u["code"].as_str().map(str::to_string))
            .collect();
        codes
            .contains(&"wf_pack_hat_trick".to_string())
            .then_some(codes)
    });
    assert!(
        codes.contains(&"wf_pack_first_kill".to_string()),
        "{codes:?}"
    );
    // The bundled milestones pack saw the same kills.
    assert!(codes.contains(&"first_blood".to_string()), "{codes:?}");
}
