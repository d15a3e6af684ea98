//! Starting the real `opm-stats` binary and talking to it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opm_model::Event;
use serde_json::{Value, json};

pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    /// Extra environment of the process (store URLs, …).
    pub env: Vec<(String, String)>,
    pub client: reqwest::blocking::Client,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts the binary on a fresh port with `extra` flags.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(data_dir, extra, &[])
    }

    /// Starts the binary with `env` added to its environment.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut s = Server {
            child: None,
            port: 0,
            data_dir: data_dir.to_path_buf(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        self.port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_opm-stats"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            // The tests read the processed stream back from the export.
            .env("OPM_EXPORT_EVENTS", "true")
            .env_remove("MQTT_URL")
            .env_remove("OPM_ADMIN_TOKEN")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start opm-stats");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.client.get(self.url("/ready")).send()
                && r.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "server did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Kills the process without warning (SIGKILL).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn register(&self, name: &str, ip: &str, port: Value) -> (String, String) {
        let r = self
            .client
            .post(self.url("/api/v1/servers/register"))
            .json(&json!({"name": name, "ip_address": ip, "port": port}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().unwrap();
        (
            v["server_id"].as_str().unwrap().to_string(),
            v["token"].as_str().unwrap().to_string(),
        )
    }

    /// POSTs a body; returns (status, json reply).
    pub fn post(&self, token: &str, content_type: &str, body: impl Into<Vec<u8>>) -> (u16, Value) {
        let r = self
            .client
            .post(self.url("/api/v1/ingest/events"))
            .header("Content-Type", content_type)
            .header("X-Server-Token", token)
            .body(body.into())
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn ready(&self) -> Value {
        self.client
            .get(self.url("/ready"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    pub fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    /// Waits until the checkpoint covers the event id `id` (everything up to
    /// it is processed and durable in the stores).
    pub fn wait_for(&self, id: u64) {
        let seq = id >> opm_model::tracker::SYNTHETIC_ID_BITS;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.ready();
            if r["checkpoint"].as_u64().unwrap_or(0) >= seq {
                return;
            }
            assert!(Instant::now() < deadline, "checkpoint stuck at {r}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the queue is empty and everything processed is
    /// checkpointed (durable in every store).
    pub fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.ready();
            if r["queue_depth"].as_u64() == Some(0) && r["checkpoint"] == r["processed"] {
                return;
            }
            assert!(Instant::now() < deadline, "server did not settle: {r}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the MQTT consumer's subscription is acknowledged.
    pub fn wait_subscribed(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.metrics().contains("mohaa_mqtt_subscribed 1") {
            assert!(Instant::now() < deadline, "MQTT consumer did not subscribe");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn events(&self) -> Vec<Event> {
        let path = self.data_dir.join("events").join("events.jsonl");
        if !path.exists() {
            return Vec::new();
        }
        opm_stats::ingest::event_log::EventLog::read_all(&path).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        // The consumer keeps a persistent session on the shared broker;
        // remove it so it does not collect messages after the test.
        if let Some(i) = self.args.iter().position(|a| a == "--mqtt-client-id")
            && let Some(id) = self.args.get(i + 1)
        {
            forget_mqtt_session(id);
        }
    }
}

/// Connects once with a clean session, which deletes the broker's stored
/// session of `client_id`.
pub fn forget_mqtt_session(client_id: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut opts = rumqttc::MqttOptions::new(client_id, "127.0.0.1", 1883);
        opts.set_clean_session(true);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 10);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, eventloop.poll()).await {
            if let rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)) = ev {
                let _ = client.disconnect().await;
                let _ = tokio::time::timeout_at(deadline, eventloop.poll()).await;
                break;
            }
        }
    });
}

/// Mosquitto must run on 127.0.0.1:1883 for the MQTT tests; without it they
/// fail when OPM_REQUIRE_SERVICES is set (CI) and are skipped otherwise.
pub fn mosquitto_available() -> bool {
    let up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:1883".parse().unwrap(),
        Duration::from_secs(1),
    )
    .is_ok();
    if !up && std::env::var_os("OPM_REQUIRE_SERVICES").is_some() {
        panic!("Mosquitto is not running on 127.0.0.1:1883");
    }
    up
}

/// Publishes payloads with QoS 1 and waits for the broker's acks.
pub fn mqtt_publish(topic_payloads: &[(String, Vec<u8>)]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut opts = rumqttc::MqttOptions::new(
            format!("opm-test-pub-{}-{}", std::process::id(), free_port()),
            "127.0.0.1",
            1883,
        );
        opts.set_max_packet_size(2 << 20, 2 << 20);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 1024);
        for (topic, payload) in topic_payloads {
            client
                .publish(
                    topic.clone(),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    payload.clone(),
                )
                .await
                .unwrap();
        }
        let mut acked = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while acked < topic_payloads.len() {
            match tokio::time::timeout_at(deadline, eventloop.poll()).await {
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) => acked += 1,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("mqtt: {e}"),
                Err(_) => panic!("broker did not acknowledge"),
            }
        }
        client.disconnect().await.ok();
    });
}

/// Runs an `opm-stats` command to completion against the embedded stores
/// unless `env` names others; panics with its stderr when it fails.
pub fn opm(args: &[&str], env: &[(&str, String)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_opm-stats"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .env_remove("CLICKHOUSE_URL")
        .env_remove("REDIS_URL")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run opm-stats");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
