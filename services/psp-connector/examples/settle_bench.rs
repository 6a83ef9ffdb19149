//! Settle throughput: transactions from XADD to final status per second.
//!
//! Boots a throw-away redis-server, the release psp-sandbox and two release
//! psp-connector processes, queues N transactions the way core-api does
//! (record + indexes + stream entry per transaction, one MULTI per batch),
//! and measures the time until every one is final. Runs `redis-benchmark`
//! XADD against the same Redis first as the reference.
//!
//! ```text
//! cargo build --release -p psp-sandbox -p psp-connector --bins
//! cargo run --release -p psp-connector --example settle_bench [N_AT_0MS] [N_AT_50MS]
//! BENCH_RUST_LOG=info cargo run --release -p psp-connector --example settle_bench
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use platform::queue::{CardDetails, ChargeMessage, PAYLOAD_FIELD, STREAM};
use platform::testing::{ChildGuard, RedisServer, free_port, wait_for_port};
use platform::transaction::{Status, TransactionId, keys, now_rfc3339};
use redis::Commands;

const MERCHANT: &str = "acme";
const CONCURRENCY: usize = 64;
const CONNECTORS: usize = 2;

fn main() {
    let mut args = std::env::args().skip(1);
    let n_fast: usize = args.next().map(|a| a.parse().expect("N")).unwrap_or(20_000);
    let n_slow: usize = args.next().map(|a| a.parse().expect("N")).unwrap_or(10_000);
    let bin_dir = binaries();
    println!(
        "machine: {} cpus; {CONNECTORS} connectors x CONNECTOR_CONCURRENCY={CONCURRENCY}; RUST_LOG={}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        log_level()
    );
    for (latency_ms, n) in [(0u64, n_fast), (50, n_slow)] {
        run(&bin_dir, latency_ms, n);
    }
}

/// The release binaries next to this example (`target/release`).
fn binaries() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|examples| examples.parent())
        .expect("target dir")
        .to_path_buf();
    for name in ["psp-sandbox", "psp-connector"] {
        assert!(
            dir.join(name).is_file(),
            "{} missing: run `cargo build --release -p psp-sandbox -p psp-connector --bins` first",
            dir.join(name).display()
        );
    }
    dir
}

/// `BENCH_RUST_LOG` (default `warn`): the services' log level. At `info`
/// every settled transaction writes a connector line and a sandbox access
/// line, which on two cores is a measurable share of the work.
fn log_level() -> String {
    std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".to_owned())
}

fn spawn(binary: PathBuf, envs: &[(&str, String)]) -> ChildGuard {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", log_level())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (name, value) in envs {
        command.env(name, value);
    }
    ChildGuard(command.spawn().expect("spawn"))
}

fn run(bin_dir: &std::path::Path, latency_ms: u64, n: usize) {
    let redis = RedisServer::start();
    let reference = redis_benchmark(redis.port());

    let psp: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _sandbox = spawn(
        bin_dir.join("psp-sandbox"),
        &[
            ("PSP_SANDBOX_ADDR", psp.to_string()),
            ("PSP_LATENCY_MS", latency_ms.to_string()),
        ],
    );
    wait_for_port(psp, Duration::from_secs(10));
    let connectors: Vec<ChildGuard> = (0..CONNECTORS)
        .map(|i| {
            let health: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let child = spawn(
                bin_dir.join("psp-connector"),
                &[
                    ("REDIS_URL", redis.url()),
                    ("PSP_URL", format!("http://{psp}")),
                    ("PSP_CONNECTOR_ADDR", health.to_string()),
                    ("CONNECTOR_CONCURRENCY", CONCURRENCY.to_string()),
                    ("CONNECTOR_CONSUMER_NAME", format!("bench-{i}")),
                ],
            );
            wait_ready(health);
            child
        })
        .collect();

    let mut conn = redis.connection();
    let started = Instant::now();
    seed(&mut conn, n);
    let seeded = started.elapsed();
    let finals = [Status::Succeeded, Status::Declined, Status::Failed]
        .map(|status| keys::status_index(MERCHANT, status));
    loop {
        let mut pipe = redis::pipe();
        for key in &finals {
            pipe.zcard(key);
        }
        let counts: Vec<usize> = pipe.query(&mut conn).expect("count finals");
        if counts.iter().sum::<usize>() >= n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "bench stalled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    let succeeded: usize = conn.zcard(&finals[0]).unwrap();
    drop(connectors);

    let rate = n as f64 / elapsed.as_secs_f64();
    println!("--- sandbox latency {latency_ms} ms, N = {n}");
    println!("redis-benchmark XADD (same redis): {reference}");
    println!(
        "settled {n} ({succeeded} succeeded) in {:.2} s (queueing took {:.2} s) -> {:.0} settled/s",
        elapsed.as_secs_f64(),
        seeded.as_secs_f64(),
        rate
    );
    if latency_ms > 0 {
        let ceiling = (CONCURRENCY * CONNECTORS) as f64 / (latency_ms as f64 / 1000.0);
        println!(
            "concurrency / latency = {} / {latency_ms} ms = {ceiling:.0}/s -> {:.0} % of it",
            CONCURRENCY * CONNECTORS,
            100.0 * rate / ceiling
        );
    }
}

fn wait_ready(health: SocketAddr) {
    wait_for_port(health, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", &format!("http://{health}/readyz")])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "connector not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn redis_benchmark(port: u16) -> String {
    let output = Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-n",
            "100000",
            "-q",
            "XADD",
            "bench",
            "*",
            "f",
            "v",
        ])
        .output()
        .expect("run redis-benchmark");
    let text = String::from_utf8_lossy(&output.stdout);
    // -q prints progress with carriage returns; the last segment is the result.
    text.rsplit('\r').next().unwrap_or("").trim().to_owned()
}

/// Queues `n` approved-card transactions as core-api would.
fn seed(conn: &mut redis::Connection, n: usize) {
    for batch in 0..n.div_ceil(500) {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for i in batch * 500..((batch + 1) * 500).min(n) {
            let id = TransactionId::generate();
            let now = now_rfc3339();
            let request_id = format!("bench-{i}");
            pipe.hset_multiple(
                keys::record(&id),
                &[
                    ("id", id.as_str()),
                    ("merchant_id", MERCHANT),
                    ("status", "pending"),
                    ("amount", "1299"),
                    ("currency", "EUR"),
                    ("customer_id", "cus_1"),
                    ("reference", &request_id),
                    ("created_by", "alice"),
                    ("brand", "visa"),
                    ("last4", "4242"),
                    ("metadata", "{}"),
                    ("attempts", "0"),
                    ("request_id", &request_id),
                    ("created_at", &now),
                    ("updated_at", &now),
                ],
            )
            .ignore();
            pipe.zadd(keys::merchant_index(MERCHANT), id.as_str(), 0)
                .ignore();
            pipe.zadd(
                keys::status_index(MERCHANT, Status::Pending),
                id.as_str(),
                0,
            )
            .ignore();
            let message = ChargeMessage {
                transaction_id: id.to_string(),
                request_id,
                merchant_id: MERCHANT.into(),
                amount: 1299,
                currency: "EUR".into(),
                card: platform::crypto::CardKey::development().seal(
                    &CardDetails {
                        number: "4242424242424242".into(),
                        expiry_month: 12,
                        expiry_year: 2030,
                        cvc: "123".into(),
                    },
                    id.as_str(),
                    MERCHANT,
                ),
                first_attempt_ms: None,
            };
            pipe.xadd(STREAM, "*", &[(PAYLOAD_FIELD, message.to_payload())])
                .ignore();
        }
        pipe.query::<()>(conn).expect("seed");
    }
}
