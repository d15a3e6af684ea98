//! `/ready` follows the stores: with the live store on a Redis of its own,
//! stopping that Redis makes the server not ready even though no event
//! needed it, and starting it again makes it ready.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, free_port};

struct Redis(Child);

impl Redis {
    fn start(port: u16, dir: &Path) -> Option<Redis> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Redis(child))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ready_status(server: &Server) -> u16 {
    server
        .client
        .get(server.url("/ready"))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn wait_status(server: &Server, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = ready_status(server);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/ready stayed {got}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ready_reflects_a_store_going_away_and_coming_back() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some(redis) = Redis::start(port, dir.path()) else {
        assert!(
            std::env::var_os("OPM_REQUIRE_SERVICES").is_none(),
            "redis-server is not installed"
        );
        eprintln!("SKIPPED: redis-server is not installed");
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &[],
        &[("REDIS_URL", &url), ("OPM_REDIS_PREFIX", "opm-ready-test:")],
    );
    assert_eq!(ready_status(&server), 200);
    drop(redis);
    wait_status(&server, 503);
    let body: serde_json::Value = server
        .client
        .get(server.url("/ready"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(body["status"], "not_ready");
    let _redis = Redis::start(port, dir.path()).unwrap();
    wait_status(&server, 200);
}
