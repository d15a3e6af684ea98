//! `opm-stats migrate` with the real binary: a fresh data directory (and a
//! fresh PostgreSQL database) migrated twice, the second run changing
//! nothing.

use std::path::Path;
use std::process::Command;

/// Runs `opm-stats migrate`; returns stdout. `env` replaces every store
/// variable, so the developer's environment cannot pick the backends.
fn migrate(data_dir: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opm-stats"));
    cmd.arg("migrate").arg("--data-dir").arg(data_dir);
    for var in [
        "CLICKHOUSE_URL",
        "DATABASE_URL",
        "POSTGRES_URL",
        "REDIS_URL",
        "OPM_DATA_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied()).env("RUST_LOG", "warn");
    let out = cmd.output().expect("run opm-stats migrate");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "migrate failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn applied(report: &str) -> u32 {
    let line = report
        .lines()
        .find(|l| l.starts_with("relational:"))
        .unwrap_or_else(|| panic!("no relational line in:\n{report}"));
    line.split(", ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"))
}

#[test]
fn migrate_is_idempotent_on_a_fresh_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let first = migrate(&data, &[]);
    assert!(first.contains("analytics: sqlite"), "{first}");
    assert!(first.contains("relational: sqlite"), "{first}");
    assert!(first.contains("live: memory"), "{first}");
    assert!(applied(&first) > 0, "{first}");
    assert!(data.join("analytics.sqlite").exists());
    assert!(data.join("relational.sqlite").exists());
    let second = migrate(&data, &[]);
    assert_eq!(applied(&second), 0, "{second}");
}

fn psql(sql: &str) -> bool {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-Atc",
            sql,
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// PostgreSQL must run on 127.0.0.1:5432 (trust auth) with `psql` on the
/// path; the test fails without it when OPM_REQUIRE_SERVICES is set and is
/// skipped otherwise.
#[test]
fn migrate_is_idempotent_on_a_fresh_postgres_database() {
    if !psql("SELECT 1") {
        assert!(
            std::env::var_os("OPM_REQUIRE_SERVICES").is_none(),
            "PostgreSQL is not reachable with psql"
        );
        eprintln!("SKIPPED: PostgreSQL is not reachable with psql");
        return;
    }
    let db = format!("opm_migrate_{}", std::process::id());
    psql(&format!("DROP DATABASE IF EXISTS {db}"));
    assert!(psql(&format!("CREATE DATABASE {db}")));
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let dir = tempfile::tempdir().unwrap();
    let env = [("DATABASE_URL", url.as_str())];
    let first = migrate(dir.path(), &env);
    let second = migrate(dir.path(), &env);
    psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    assert!(first.contains("relational: postgres"), "{first}");
    assert!(applied(&first) > 0, "{first}");
    assert_eq!(applied(&second), 0, "{second}");
    assert!(!dir.path().join("relational.sqlite").exists());
}
