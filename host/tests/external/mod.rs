//! The external services the end-to-end suites run the binary against
//! (PostgreSQL, ClickHouse, Redis), each isolated per run and removed
//! afterwards, a TCP proxy that can cut a service away mid-load, and JSON
//! comparison with a tolerance for float sums.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The milestones pack's ladders (plugins/milestones/src/lib.rs): the
/// unlocks the suites recount from the raw stream.
pub const KILL_LADDER: &[(&str, u64)] = &[
    ("first_blood", 1),
    ("marksman", 100),
    ("soldier", 500),
    ("veteran", 1_000),
    ("war_hero", 5_000),
    ("legend", 10_000),
    ("immortal", 50_000),
    ("god_of_war", 100_000),
];
pub const HEADSHOT_LADDER: &[(&str, u64)] = &[
    ("headshot_rookie", 10),
    ("headhunter", 100),
    ("headshot_expert", 500),
    ("executioner", 1_000),
];

pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const CLICKHOUSE: &str = "http://127.0.0.1:8123";
pub const REDIS: &str = "redis://127.0.0.1:6379/0";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

pub fn postgres_admin_url() -> String {
    env_or("OPM_TEST_POSTGRES", POSTGRES)
}

pub fn clickhouse_base() -> String {
    env_or("OPM_TEST_CLICKHOUSE", CLICKHOUSE)
        .trim_end_matches('/')
        .to_string()
}

pub fn redis_url() -> String {
    env_or("OPM_TEST_REDIS", REDIS)
}

fn required() -> bool {
    std::env::var("OPM_REQUIRE_SERVICES").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A name no other run uses: tests of several engineers share the servers.
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "opm_e2e_{tag}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000
    )
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// `host:port` of a URL's authority.
pub fn socket_of(url: &str) -> std::net::SocketAddr {
    let u = reqwest::Url::parse(url).unwrap();
    let port = u.port_or_known_default().unwrap();
    use std::net::ToSocketAddrs;
    (u.host_str().unwrap(), port)
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap()
}

/// Which services are up; with `OPM_REQUIRE_SERVICES` set a missing one
/// fails the test instead of skipping it.
pub fn available(postgres: bool, clickhouse: bool, redis: bool, test: &str) -> bool {
    let up = |url: &str| {
        std::net::TcpStream::connect_timeout(&socket_of(url), Duration::from_secs(2)).is_ok()
    };
    let missing: Vec<&str> = [
        (postgres && !up(&postgres_admin_url()), "PostgreSQL"),
        (clickhouse && !up(&clickhouse_base()), "ClickHouse"),
        (redis && !up(&redis_url()), "Redis"),
    ]
    .into_iter()
    .filter_map(|(m, name)| m.then_some(name))
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !required(),
        "OPM_REQUIRE_SERVICES is set but {missing:?} is not reachable"
    );
    eprintln!("\n!!!!!!!! SKIPPING `{test}`: {missing:?} not reachable\n");
    false
}

/// A PostgreSQL database of this run, dropped on drop.
pub struct PgDatabase {
    pub name: String,
}

async fn pg_admin() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&postgres_admin_url())
        .await
        .expect("connect to PostgreSQL as admin")
}

impl PgDatabase {
    pub fn create(tag: &str) -> PgDatabase {
        let name = unique(tag);
        runtime().block_on(async {
            let admin = pg_admin().await;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
        });
        PgDatabase { name }
    }

    /// The database's URL on `host:port` (PostgreSQL itself or a proxy).
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        let u = reqwest::Url::parse(&postgres_admin_url()).unwrap();
        let user = match (u.username(), u.password()) {
            ("", _) => String::new(),
            (user, None) => format!("{user}@"),
            (user, Some(p)) => format!("{user}:{p}@"),
        };
        format!("postgres://{user}{addr}/{}", self.name)
    }

    pub fn url(&self) -> String {
        self.url_via(socket_of(&postgres_admin_url()))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        runtime().block_on(async move {
            let admin = pg_admin().await;
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&admin)
            .await;
        });
    }
}

/// A ClickHouse database of this run (the binary creates it), dropped on
/// drop.
pub struct ChDatabase {
    pub name: String,
}

impl ChDatabase {
    pub fn new(tag: &str) -> ChDatabase {
        ChDatabase { name: unique(tag) }
    }

    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        format!("http://{addr}/{}", self.name)
    }

    pub fn url(&self) -> String {
        format!("{}/{}", clickhouse_base(), self.name)
    }

    /// Runs a query, returns the body.
    pub fn query(&self, sql: &str) -> String {
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/?database={}", clickhouse_base(), self.name))
            .body(sql.to_string())
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{sql}: {}", r.status());
        r.text().unwrap()
    }
}

impl Drop for ChDatabase {
    fn drop(&mut self) {
        let _ = reqwest::blocking::Client::new()
            .post(format!("{}/", clickhouse_base()))
            .body(format!("DROP DATABASE IF EXISTS {}", self.name))
            .send();
    }
}

/// A Redis key prefix of this run; its keys are deleted on drop.
pub struct RedisPrefix {
    pub prefix: String,
}

impl RedisPrefix {
    pub fn new(tag: &str) -> RedisPrefix {
        RedisPrefix {
            prefix: format!("{}:", unique(tag)),
        }
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        runtime().block_on(async move {
            if let Ok(live) =
                opm_store::live::redis::RedisLive::connect(&redis_url(), &prefix).await
            {
                let _ = live.purge().await;
            }
        });
    }
}

// ------------------------------------------------------------------ proxy

const FORWARD: u8 = 0;
/// Waiting for the trigger; everything is forwarded until it fires.
const ARMED: u8 = 1;
/// Every connection closed, new ones accepted and closed at once.
const CUT: u8 = 2;

/// What makes an armed proxy cut the service away.
#[derive(Clone, Copy, Debug)]
pub enum Trigger {
    /// A reply chunk contains this (PostgreSQL's `CommandComplete` for
    /// `COMMIT`): the bytes before it are forwarded, the rest is lost and
    /// everything is cut. The transaction committed; its client cannot
    /// know.
    Reply(&'static [u8]),
    /// A request chunk contains this (ClickHouse's `INSERT`): the request
    /// is forwarded, its reply is lost as soon as it starts and everything
    /// is cut. The insert landed; its client cannot know.
    Request(&'static [u8]),
}

struct ProxyState {
    mode: AtomicU8,
    trigger: Mutex<Option<Trigger>>,
    fired: AtomicBool,
    next_conn: AtomicU64,
    conns: Mutex<BTreeMap<u64, tokio::task::AbortHandle>>,
}

impl ProxyState {
    /// Closes every connection and refuses new ones.
    fn cut(&self) {
        self.mode.store(CUT, Ordering::SeqCst);
        for (_, h) in std::mem::take(&mut *self.conns.lock()) {
            h.abort();
        }
    }
}

/// A TCP proxy in front of a real service, on its own runtime, that
/// drops every connection when told (or when its trigger fires).
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    state: Arc<ProxyState>,
    _rt: tokio::runtime::Runtime,
}

impl Proxy {
    pub fn start(upstream: std::net::SocketAddr) -> Proxy {
        let rt = runtime();
        let state = Arc::new(ProxyState {
            mode: AtomicU8::new(FORWARD),
            trigger: Mutex::new(None),
            fired: AtomicBool::new(false),
            next_conn: AtomicU64::new(0),
            conns: Mutex::new(BTreeMap::new()),
        });
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let s = state.clone();
        rt.spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if s.mode.load(Ordering::SeqCst) == CUT {
                    drop(client);
                    continue;
                }
                let id = s.next_conn.fetch_add(1, Ordering::SeqCst);
                let s2 = s.clone();
                // Registered before it runs, so a cut always finds it.
                let mut conns = s.conns.lock();
                let task = tokio::spawn(async move {
                    relay(client, upstream, &s2).await;
                    s2.conns.lock().remove(&id);
                });
                conns.insert(id, task.abort_handle());
            }
        });
        Proxy {
            addr,
            state,
            _rt: rt,
        }
    }

    /// Forward everything until `trigger` fires, then cut.
    pub fn arm(&self, trigger: Trigger) {
        *self.state.trigger.lock() = Some(trigger);
        self.state.mode.store(ARMED, Ordering::SeqCst);
    }

    pub fn fired(&self) -> bool {
        self.state.fired.load(Ordering::SeqCst)
    }

    pub fn cut(&self) {
        self.state.cut();
    }

    pub fn is_cut(&self) -> bool {
        self.state.mode.load(Ordering::SeqCst) == CUT
    }

    pub fn restore(&self) {
        self.state.mode.store(FORWARD, Ordering::SeqCst);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn relay(client: TcpStream, upstream: std::net::SocketAddr, state: &Arc<ProxyState>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    // This connection sent the request the trigger waits for.
    let doomed = Arc::new(AtomicBool::new(false));
    let up = {
        let (state, doomed) = (state.clone(), doomed.clone());
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if state.mode.load(Ordering::SeqCst) == ARMED
                    && let Some(Trigger::Request(p)) = *state.trigger.lock()
                    && find(&buf[..n], p).is_some()
                {
                    doomed.store(true, Ordering::SeqCst);
                }
                if sw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let down = {
        let state = state.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match sr.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let mut forward = n;
                let mut fire = false;
                if state.mode.load(Ordering::SeqCst) == ARMED {
                    match *state.trigger.lock() {
                        Some(Trigger::Reply(p)) => {
                            if let Some(at) = find(&buf[..n], p) {
                                forward = at;
                                fire = true;
                            }
                        }
                        Some(Trigger::Request(_)) if doomed.load(Ordering::SeqCst) => {
                            forward = 0;
                            fire = true;
                        }
                        _ => {}
                    }
                }
                if forward > 0 && cw.write_all(&buf[..forward]).await.is_err() {
                    return;
                }
                if fire {
                    state.fired.store(true, Ordering::SeqCst);
                    state.cut();
                    return;
                }
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// PostgreSQL's `CommandComplete` message for `COMMIT`.
pub const PG_COMMIT_COMPLETE: &[u8] = b"C\0\0\0\x0bCOMMIT\0";

// ------------------------------------------------------------------ JSON

/// True when two floats agree up to summation order.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.011_f64.max(1e-9 * a.abs().max(b.abs()))
}

/// JSON equality with a tolerance on non-integer numbers (damage sums in a
/// different order round differently, by a cent after `round2`).
pub fn same(a: &Value, b: &Value, path: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                if !close(x, y) {
                    return Err(format!("{path}: {x} != {y}"));
                }
            } else if x != y {
                return Err(format!("{path}: {x} != {y}"));
            }
            Ok(())
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Err(format!("{path}: {} items != {}", x.len(), y.len()));
            }
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                same(x, y, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Object(x), Value::Object(y)) => {
            let (kx, ky): (Vec<_>, Vec<_>) = (x.keys().collect(), y.keys().collect());
            if kx != ky {
                return Err(format!("{path}: keys {kx:?} != {ky:?}"));
            }
            for (k, v) in x {
                same(v, &y[k], &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        _ if a == b => Ok(()),
        _ => Err(format!("{path}: {a} != {b}")),
    }
}

/// Removes `keys` wherever they occur (values that depend on the wall
/// clock of the run, not on the stream).
pub fn strip(v: &mut Value, keys: &[&str]) {
    match v {
        Value::Object(m) => {
            for k in keys {
                m.remove(*k);
            }
            for x in m.values_mut() {
                strip(x, keys);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| strip(x, keys)),
        _ => {}
    }
}
