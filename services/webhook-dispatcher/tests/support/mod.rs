//! What the dispatcher tests share: a real Redis, the real dispatcher and
//! sink binaries (logs captured), receivers served in this test process
//! whose behaviour a test sets (answer, fail, hang), and seeding through
//! the real create path and status script.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use platform::auth::Caller;
use platform::event::EventId;
use platform::testing::{ChildGuard, RedisServer, free_port};
use platform::transaction::{Status, TransactionId, Transition, TransitionOutcome};
use platform::webhook::{Endpoint, EndpointId, Secret, Subscription};

pub const MERCHANT: &str = "acme";

/// A running binary of this crate with its log file.
pub struct Process {
    pub child: ChildGuard,
    pub addr: SocketAddr,
    pub log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Process {
    pub fn start(binary: &str, addr_var: &str, env: &[(&str, String)]) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        Self::start_at(binary, addr_var, addr, env)
    }

    pub fn start_at(
        binary: &str,
        addr_var: &str,
        addr: SocketAddr,
        env: &[(&str, String)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(binary)
            .env_clear()
            .env(addr_var, addr.to_string())
            .env("LOG_FORMAT", "json")
            // Everything it would ever log, to prove no secret is in it.
            .env("RUST_LOG", "debug")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let process = Self {
            child: ChildGuard(child),
            addr,
            log_path,
            _dir: dir,
        };
        process.wait_ready();
        process
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ready = std::net::TcpStream::connect(self.addr).is_ok()
                && probe::status(&format!("http://{}/readyz", self.addr)) == Some(200);
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready: {}",
                std::fs::read_to_string(&self.log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap()
    }
}

impl Drop for Process {
    /// A failing test shows what the process logged.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- log of {}:\n{}", self.addr, self.logs());
        }
    }
}

/// A tiny blocking GET for readiness, without a blocking reqwest client.
mod probe {
    use std::io::{Read, Write};

    pub fn status(url: &str) -> Option<u16> {
        let rest = url.strip_prefix("http://")?;
        let (host, path) = rest.split_once('/')?;
        let mut stream = std::net::TcpStream::connect(host).ok()?;
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .ok()?;
        write!(
            stream,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer.split(' ').nth(1)?.parse().ok()
    }
}

/// The dispatcher with fast test settings plus `env`.
pub fn dispatcher(redis: &RedisServer, env: &[(&str, &str)]) -> Process {
    let mut all: Vec<(&str, String)> = vec![
        ("REDIS_URL", redis.url()),
        ("WEBHOOK_TIMEOUT_MS", "2000".into()),
        ("WEBHOOK_RETRY_BASE_MS", "200".into()),
        ("WEBHOOK_RETRY_MAX_MS", "1000".into()),
        ("WEBHOOK_MAX_ATTEMPTS", "30".into()),
        ("WEBHOOK_CLAIM_IDLE_MS", "1000".into()),
        ("WEBHOOK_CONSUMER_NAME", "dispatcher-test".into()),
    ];
    for (k, v) in env {
        all.retain(|(name, _)| name != k);
        all.push((k, (*v).to_owned()));
    }
    Process::start(
        env!("CARGO_BIN_EXE_webhook-dispatcher"),
        "WEBHOOK_DISPATCHER_ADDR",
        &all,
    )
}

/// What a receiver does with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Answer(u16),
    /// Answers after this long.
    Slow(Duration),
    /// Never answers.
    Hang,
}

/// One delivery a receiver saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
    pub body: Vec<u8>,
    pub at: Instant,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> Self {
        Self::start_at(([127, 0, 0, 1], free_port()).into(), behaviour).await
    }

    pub async fn start_at(addr: SocketAddr, behaviour: Behaviour) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(behaviour));
        let state = (seen.clone(), behaviour.clone());
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            seen,
            behaviour,
            task: Arc::new(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn stop(&self) {
        self.task.abort();
    }

    /// Waits until `done` holds for what was seen.
    pub async fn wait_for(&self, timeout: Duration, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.seen();
            if done(&seen) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "receiver saw only {} deliveries",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

type ReceiverState = (Arc<Mutex<Vec<Seen>>>, Arc<Mutex<Behaviour>>);

async fn receive(
    State((seen, behaviour)): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let behaviour = *behaviour.lock().unwrap();
    let record = || Seen {
        id: text("webhook-id"),
        timestamp: text("webhook-timestamp").parse().unwrap_or(0),
        signature: text("webhook-signature"),
        body: body.to_vec(),
        at: Instant::now(),
    };
    match behaviour {
        Behaviour::Answer(code) => {
            seen.lock().unwrap().push(record());
            StatusCode::from_u16(code).unwrap()
        }
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            seen.lock().unwrap().push(record());
            StatusCode::OK
        }
        Behaviour::Hang => {
            seen.lock().unwrap().push(record());
            std::future::pending::<()>().await;
            StatusCode::OK
        }
    }
}

pub async fn conn(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Registers an endpoint for every event at `url`; returns it.
pub async fn endpoint(redis: &RedisServer, url: &str) -> Endpoint {
    let endpoint = Endpoint {
        id: EndpointId::generate(),
        merchant_id: MERCHANT.into(),
        url: url.into(),
        events: Subscription::All,
        description: String::new(),
        secret: Secret::generate(),
        previous_secret: None,
        created_at: platform::transaction::now_rfc3339(),
    };
    platform::webhook::create(&mut conn(redis).await, &endpoint)
        .await
        .unwrap();
    endpoint
}

/// `count` transactions created through the real create path and moved to
/// `succeeded` by the real status script: one event each.
pub async fn succeeded(redis: &RedisServer, count: usize) -> Vec<TransactionId> {
    let mut conn = conn(redis).await;
    let caller = Caller {
        merchant: MERCHANT.into(),
        principal: platform::auth::Principal::User("alice".into()),
    };
    let key = platform::crypto::CardKey::development();
    let mut ids = Vec::new();
    for i in 0..count {
        let request: core_api::transactions::request::CreateTransactionRequest =
            serde_json::from_value(serde_json::json!({
                "amount": 1299, "currency": "EUR", "reference": format!("order-{i}"),
                "payment_method": {"type": "card", "number": "4242424242424242",
                                   "expiry_month": 12, "expiry_year": 2030, "cvc": "123"},
            }))
            .unwrap();
        let new = request.validate().unwrap();
        let tx = core_api::transactions::accept(&mut conn, &key, &caller, "req", &new)
            .await
            .unwrap();
        let id = TransactionId::parse(&tx.id).unwrap();
        let outcome = platform::transaction::transition(
            &mut conn,
            &id,
            MERCHANT,
            &Transition {
                from: vec![Status::Pending],
                to: Status::Succeeded,
                add_attempts: 1,
                log: None,
                fields: Vec::new(),
            },
        )
        .await
        .unwrap();
        assert_eq!(outcome, TransitionOutcome::Applied);
        ids.push(id);
    }
    ids
}

/// The event ids of the merchant, oldest first.
pub fn event_ids(redis: &RedisServer) -> Vec<String> {
    let mut conn = redis.connection();
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(platform::keyspace::merchant_events(MERCHANT, None))
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .unwrap();
    assert!(ids.iter().all(|id| EventId::parse(id).is_some()));
    ids
}

/// The entries of a stream, as field maps.
pub fn stream(redis: &RedisServer, key: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut conn = redis.connection();
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    reply
        .ids
        .into_iter()
        .map(|entry| {
            entry
                .map
                .into_iter()
                .map(|(k, v)| (k, redis::from_redis_value::<String>(v).unwrap()))
                .collect()
        })
        .collect()
}
