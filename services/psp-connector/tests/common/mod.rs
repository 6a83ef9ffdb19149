//! Test harness for the connector: a real Redis, the real sandbox booted
//! in-process, real connector processes, and transactions written by
//! core-api's own create path.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use core_api::transactions::request::CreateTransactionRequest;
use platform::auth::Caller;
use platform::keyspace::{self, GROUP, STREAM, field};
use platform::testing::{ChildGuard, RedisServer, Spawned, free_port};
use platform::transaction::TransactionId;
use redis::Commands;
use serde_json::Value;

pub const MERCHANT: &str = "acme";

/// The sandbox, running in this test process.
pub struct Sandbox {
    served: Spawned,
}

impl Sandbox {
    pub async fn start(port: u16, latency_ms: u64, failure_rate: f64) -> Self {
        Self::named("psp-a", port, latency_ms, failure_rate).await
    }

    /// A sandbox playing PSP `name`.
    pub async fn named(name: &str, port: u16, latency_ms: u64, failure_rate: f64) -> Self {
        let mut config = psp_sandbox::Config::on(SocketAddr::from(([127, 0, 0, 1], port)));
        config.psp_sandbox_name = platform::psp::PspName::parse(name).unwrap();
        config.psp_latency_ms = latency_ms;
        config.psp_failure_rate = psp_sandbox::FailureRate::new(failure_rate).unwrap();
        Self {
            served: Spawned::start(config, psp_sandbox::build).await,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.served.addr
    }

    pub fn url(&self) -> String {
        self.served.url()
    }

    pub async fn stats(&self) -> Value {
        reqwest::get(format!("{}/charges/stats", self.url()))
            .await
            .expect("sandbox stats")
            .json()
            .await
            .expect("stats JSON")
    }

    /// Changes its latency and failure rate while it runs (`PUT /faults`).
    pub async fn set_faults(&self, latency_ms: u64, failure_rate: f64) {
        let response = reqwest::Client::new()
            .put(format!("{}/faults", self.url()))
            .json(&serde_json::json!({"latency_ms": latency_ms, "failure_rate": failure_rate}))
            .send()
            .await
            .expect("PUT /faults");
        assert_eq!(response.status(), 200);
    }

    pub async fn stop(self) {
        let _ = self.served.stop().await;
    }
}

/// One figure of a sandbox's stats.
pub fn stat(stats: &Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in {stats}"))
}

/// A real psp-connector process; its JSON logs go to a temp file.
pub struct Connector {
    pub child: ChildGuard,
    pub health: SocketAddr,
    log: tempfile::NamedTempFile,
}

/// Settings that keep tests fast: short backoff, few attempts.
pub fn fast_settings() -> Vec<(&'static str, String)> {
    vec![
        ("PSP_MAX_ATTEMPTS", "3".into()),
        ("CONNECTOR_RETRY_BASE_MS", "10".into()),
        ("CONNECTOR_RETRY_MAX_MS", "50".into()),
        ("CONNECTOR_RETRY_POLL_MS", "20".into()),
        ("PSP_TIMEOUT_MS", "2000".into()),
    ]
}

impl Connector {
    pub fn spawn(redis_url: &str, psp_url: &str, extra: &[(&str, String)]) -> Self {
        let health: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_psp-connector"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LOG_FORMAT", "json")
            .env("REDIS_URL", redis_url)
            .env("PSP_URL", psp_url)
            .env("PSP_CONNECTOR_ADDR", health.to_string())
            .stdout(Stdio::from(log.reopen().expect("reopen log")))
            .stderr(Stdio::inherit());
        // An empty value in `extra` unsets a fast setting: the default applies.
        for (name, value) in fast_settings().iter().chain(extra) {
            if value.is_empty() {
                command.env_remove(name);
            } else {
                command.env(name, value);
            }
        }
        let child = ChildGuard(command.spawn().expect("spawn psp-connector"));
        Self { child, health, log }
    }

    /// A connector routing between `psps` (name, sandbox), in that order,
    /// instead of the one `PSP_URL`.
    pub fn spawn_routed(
        redis_url: &str,
        psps: &[(&str, &Sandbox)],
        extra: &[(&str, String)],
    ) -> Self {
        let urls = psps
            .iter()
            .map(|(name, sandbox)| format!("{name}@{}", sandbox.url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut settings = vec![("PSP_URL", String::new()), ("PSP_URLS", urls)];
        settings.extend(extra.iter().cloned());
        Self::spawn(redis_url, "", &settings)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let url = format!("http://{}/readyz", self.health);
        loop {
            if let Ok(response) = reqwest::get(&url).await
                && response.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "connector never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    pub async fn wait_exit(self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let Connector { mut child, log, .. } = self;
        let status = tokio::task::spawn_blocking(move || {
            let status = child.wait_timeout(timeout);
            (status, child)
        })
        .await
        .unwrap()
        .0;
        (
            status,
            std::fs::read_to_string(log.path()).unwrap_or_default(),
        )
    }
}

/// Pending transactions of alice at acme, one per card, written by
/// core-api's own create path (record, indexes and queue message in its
/// script), so these tests never restate the record's layout.
pub async fn seed(redis: &RedisServer, cards: &[&str]) -> Vec<TransactionId> {
    let payments: Vec<_> = cards.iter().map(|card| (*card, 1299, "EUR")).collect();
    seed_payments(redis, &payments).await
}

/// Like [`seed`], with (card, amount, currency) per payment.
pub async fn seed_payments(
    redis: &RedisServer,
    payments: &[(&str, u64, &str)],
) -> Vec<TransactionId> {
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect redis");
    let caller = Caller {
        merchant: MERCHANT.into(),
        principal: platform::auth::Principal::User("alice".into()),
    };
    let key = platform::crypto::CardKey::development();
    let mut ids = Vec::with_capacity(payments.len());
    for (i, (card, amount, currency)) in payments.iter().enumerate() {
        let request: CreateTransactionRequest = serde_json::from_value(serde_json::json!({
            "amount": amount,
            "currency": currency,
            "customer_id": format!("cus_{}", i % 7),
            "reference": format!("order-{i}"),
            "payment_method": {"type": "card", "number": card, "expiry_month": 12,
                               "expiry_year": 2030, "cvc": "123"},
        }))
        .expect("a create request");
        let new = request.validate().expect("a valid payment");
        let request_id = format!("req-{i}-{}", uuid_like());
        let transaction =
            core_api::transactions::accept(&mut conn, &key, &caller, &request_id, &new)
                .await
                .expect("seed transaction");
        ids.push(TransactionId::parse(&transaction.id).expect("an id"));
    }
    ids
}

/// A short random suffix, so request ids differ across seeds.
fn uuid_like() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// A transaction record as the tests look at it.
#[derive(Debug, Clone)]
pub struct Record {
    pub status: String,
    pub attempts: u32,
    pub decline_code: Option<String>,
    pub failure_reason: Option<String>,
    /// The PSP last called (the one that charged, when succeeded).
    pub psp: Option<String>,
    pub psp_reference: Option<String>,
    pub attempt_log: Vec<platform::transaction::Attempt>,
}

impl Record {
    /// The PSPs called, in order, with each call's outcome.
    pub fn calls(&self) -> Vec<(String, platform::transaction::AttemptOutcome)> {
        self.attempt_log
            .iter()
            .map(|attempt| (attempt.psp.clone(), attempt.outcome))
            .collect()
    }
}

pub fn records(
    conn: &mut redis::Connection,
    ids: &[TransactionId],
) -> HashMap<TransactionId, Record> {
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("HMGET").arg(keyspace::record(id)).arg(&[
            field::STATUS,
            field::ATTEMPTS,
            field::DECLINE_CODE,
            field::FAILURE_REASON,
            field::PSP,
            field::PSP_REFERENCE,
            field::ATTEMPT_LOG,
        ]);
    }
    type Row = (
        String,
        u32,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = pipe.query(conn).expect("read records");
    ids.iter()
        .cloned()
        .zip(rows.into_iter().map(
            |(status, attempts, decline_code, failure_reason, psp, psp_reference, log)| {
                Record {
                    status,
                    attempts,
                    decline_code,
                    failure_reason,
                    psp,
                    psp_reference,
                    attempt_log: log
                        .map(|log| serde_json::from_str(&log).expect("an attempt log"))
                        .unwrap_or_default(),
                }
            },
        ))
        .collect()
}

fn is_final(status: &str) -> bool {
    status
        .parse::<platform::transaction::Status>()
        .is_ok_and(platform::transaction::Status::is_final)
}

/// Waits until every transaction is final; fails listing what is not.
pub async fn wait_final(
    conn: &mut redis::Connection,
    ids: &[TransactionId],
    timeout: Duration,
) -> HashMap<TransactionId, Record> {
    let deadline = Instant::now() + timeout;
    loop {
        let records = records(conn, ids);
        let open: Vec<_> = records.values().filter(|r| !is_final(&r.status)).collect();
        if open.is_empty() {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} transactions not final after {timeout:?}, e.g. {:?}",
            open.len(),
            ids.len(),
            open.first()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `condition` holds, polling.
pub async fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Entries of a stream as field maps.
pub fn stream_entries(
    conn: &mut redis::Connection,
    stream: &str,
) -> Vec<(String, HashMap<String, String>)> {
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(stream).expect("XRANGE");
    reply
        .ids
        .into_iter()
        .map(|entry| {
            let fields = entry
                .map
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        redis::from_redis_value_ref::<String>(v).unwrap_or_default(),
                    )
                })
                .collect();
            (entry.id, fields)
        })
        .collect()
}

/// Entries still pending (delivered, not acknowledged) in the group.
pub fn pending_count(conn: &mut redis::Connection) -> u64 {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(STREAM)
        .arg(GROUP)
        .query(conn)
        .expect("XPENDING");
    match reply {
        redis::Value::Array(items) => items
            .first()
            .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// Pending entries held by one consumer.
pub fn pending_for(conn: &mut redis::Connection, consumer: &str) -> usize {
    let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(STREAM)
        .arg(GROUP)
        .arg("-")
        .arg("+")
        .arg(10_000)
        .arg(consumer)
        .query(conn)
        .unwrap_or_default();
    rows.len()
}
