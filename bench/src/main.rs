//! One benchmark command: `cargo run --release -p bench`.
//!
//! Boots the whole platform from process-compose.yaml on free ports (the
//! end-to-end harness), warms it up, runs every scenario of the benchmark
//! next to its reference in the same run, prints a Markdown table and
//! writes every figure, the machine's core count and the git revision to
//! `target/bench/latest.json`. See BENCHMARKS.md for how to read it.
//!
//! Settings (environment): `BENCH_SECONDS` (each wrk run, default 10),
//! `BENCH_PRELOAD` (transactions of the large merchant, default 100000),
//! `BENCH_BOOTS` (stack boots for the start-up figure, default 3),
//! `BENCH_OUT` (the JSON file).

mod api_key_rate;
mod cpu;
mod driver;
mod reference;
mod report;
mod wrk;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::stack::Stack;
use report::{Row, quantile, thousands};
use serde_json::json;

/// Service binaries the stack runs from the directory of this executable.
const SERVICES: [&str; 4] = ["auth-api", "core-api", "psp-connector", "psp-sandbox"];
const CONNECTORS: [&str; 2] = ["psp-connector-0", "psp-connector-1"];
/// Merchants of the dev users (config/users.toml).
const MERCHANTS: [&str; 2] = ["acme", "globex"];
const CONNECTIONS: usize = 64;
const WRK_THREADS: usize = 2;
/// Customer of the large merchant (alice/acme) and of the small one (bob/globex).
const BIG_CUSTOMER: &str = "cus_big";
const SMALL_CUSTOMER: &str = "cus_small";
const SMALL_COUNT: usize = 100;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("hello") {
        let addr = args.get(2).map_or("127.0.0.1:7299", String::as_str);
        return match reference::serve_hello(addr) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("hello-world: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    if cfg!(debug_assertions) {
        eprintln!("bench: measure release builds only: cargo run --release -p bench");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

struct Settings {
    seconds: u64,
    preload: usize,
    boots: usize,
    out: PathBuf,
}

fn setting<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}: not a valid number: {value:?}")),
        Err(_) => Ok(default),
    }
}

impl Settings {
    fn from_env() -> anyhow::Result<Settings> {
        let target = e2e::binary_dir()
            .parent()
            .context("target dir")?
            .to_path_buf();
        Ok(Settings {
            seconds: setting("BENCH_SECONDS", 10)?,
            preload: setting("BENCH_PRELOAD", 100_000)?,
            boots: setting::<usize>("BENCH_BOOTS", 3)?.max(1),
            out: std::env::var_os("BENCH_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|| target.join("bench/latest.json")),
        })
    }
}

fn log(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

/// Builds the service binaries of this profile when run by cargo (a no-op
/// when they are fresh), and checks that they and the load tools exist.
fn prerequisites(root: &Path) -> anyhow::Result<()> {
    if let Some(cargo) = std::env::var_os("CARGO") {
        // With this package in the set, features unify as for the bench's
        // own build, so the two builds do not keep rebuilding each other.
        let mut command = Command::new(cargo);
        // Without the variables `cargo run` sets for this program: build
        // scripts that watch them would make the nested build rebuild (and
        // relink this very binary).
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                ]
                .contains(&name.as_ref())
            {
                command.env_remove(name.as_ref());
            }
        }
        command
            .current_dir(root)
            .args(["build", "--release", "--bins", "-p", "bench"]);
        for service in SERVICES {
            command.args(["-p", service]);
        }
        log("building the service binaries (cargo build --release --bins -p bench -p auth-api …)");
        if !command.status()?.success() {
            bail!("building the service binaries failed");
        }
    }
    let dir = e2e::binary_dir();
    for service in SERVICES {
        if !dir.join(service).is_file() {
            bail!(
                "{} missing: run `cargo build --release --workspace --bins` first",
                dir.join(service).display()
            );
        }
    }
    for (tool, package) in [
        ("wrk", "wrk"),
        ("redis-benchmark", "redis-tools"),
        ("redis-server", "redis-server"),
        ("caddy", "caddy"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            bail!("`{tool}` is not on PATH: `apt-get install {package}` (or `nix develop`)");
        }
    }
    Ok(())
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned());
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok());
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "memory_gib": memory_kib.map(|k| (k as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn git_revision(root: &Path) -> (String, bool) {
    let revision = first_line(
        "git",
        &["-C", &root.display().to_string(), "rev-parse", "HEAD"],
    );
    let dirty = Command::new("git")
        .args(["-C", &root.display().to_string()])
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    (revision, dirty)
}

/// SIGSTOPs the connectors; SIGCONT when dropped (also on failure, so the
/// stack can still be stopped).
struct PausedConnectors<'a>(&'a Stack);

impl<'a> PausedConnectors<'a> {
    /// Stops both connectors through process-compose (SIGTERM, drained),
    /// so the queue fills; a frozen process (SIGSTOP) would fail its
    /// readiness probes and be restarted by process-compose after a while.
    fn new(stack: &'a Stack) -> Self {
        for name in CONNECTORS {
            stack.api().stop(name);
        }
        for name in CONNECTORS {
            while !stack.state(name).has_ended() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        PausedConnectors(stack)
    }
}

impl Drop for PausedConnectors<'_> {
    fn drop(&mut self) {
        for name in CONNECTORS {
            self.0.api().start(name);
        }
    }
}

/// Transactions not yet final, over both merchants' status indexes.
async fn unsettled(redis: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<u64> {
    let mut pipe = redis::pipe();
    for merchant in MERCHANTS {
        for status in ["pending", "processing"] {
            pipe.zcard(format!("merchant:{merchant}:status:{status}:tx"));
        }
    }
    let counts: Vec<u64> = pipe.query_async(redis).await?;
    Ok(counts.iter().sum())
}

/// Waits until every transaction is final and the stream is empty.
async fn wait_settled(
    redis: &mut redis::aio::MultiplexedConnection,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let queued: u64 = redis::cmd("XLEN")
            .arg("transactions")
            .query_async(redis)
            .await?;
        if queued == 0 && unsettled(redis).await? == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("not settled after {timeout:?}: {queued} messages still queued");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A list response, checked to hold a full page (so both merchants' queries
/// do the same work).
async fn check_full_page(client: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<()> {
    let json: serde_json::Value = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let page = json["data"].as_array().map_or(0, Vec::len);
    if page != 20 || json["has_more"] != true {
        bail!("{url}: expected a full page of 20 with more, got {page}");
    }
    Ok(())
}

/// End-to-end figures: from when a POST was due to its record's final
/// status, split at the record's `created_at` into accept (POST through the
/// gateway until core-api wrote it) and settle (queue, connector, PSP).
#[derive(serde::Serialize)]
struct EndToEnd {
    rate_per_s: f64,
    transactions: usize,
    total_p50: f64,
    total_p90: f64,
    total_p99: f64,
    total_max: f64,
    accept_p50: f64,
    accept_p99: f64,
    settle_p50: f64,
    settle_p99: f64,
}

async fn end_to_end(
    client: &reqwest::Client,
    gateway: &str,
    tokens: &std::sync::Arc<driver::Tokens>,
    redis: &mut redis::aio::MultiplexedConnection,
    rate: f64,
    seconds: u64,
    run_id: &str,
) -> anyhow::Result<EndToEnd> {
    log(format!(
        "end to end: {rate:.0}/s for {seconds} s through the gateway"
    ));
    let sent = driver::open_loop(
        client,
        gateway,
        tokens,
        "cus_e2e",
        rate,
        Duration::from_secs(seconds),
        &format!("{run_id}-e2e"),
    )
    .await?;
    let ids: Vec<String> = sent.iter().filter_map(|s| s.id.clone()).collect();
    let post_failures = sent.len() - ids.len();
    let finals = driver::final_states(redis, &ids, Duration::from_secs(120)).await?;
    let not_succeeded = finals.iter().filter(|f| f.status != "succeeded").count();
    if post_failures > 0 || not_succeeded > 0 {
        bail!("end to end: {post_failures} POSTs failed, {not_succeeded} not succeeded");
    }
    let due = sent
        .iter()
        .filter(|s| s.id.is_some())
        .map(|s| s.due_unix_ns);
    let ms = |ns: i128| ns as f64 / 1e6;
    let mut total = Vec::new();
    let mut accept = Vec::new();
    let mut settle = Vec::new();
    for (record, due) in finals.iter().zip(due) {
        total.push(ms(record.updated_unix_ns - due));
        accept.push(ms(record.created_unix_ns - due));
        settle.push(ms(record.updated_unix_ns - record.created_unix_ns));
    }
    let figures = EndToEnd {
        rate_per_s: rate,
        transactions: total.len(),
        total_p50: quantile(&total, 0.5),
        total_p90: quantile(&total, 0.9),
        total_p99: quantile(&total, 0.99),
        total_max: quantile(&total, 1.0),
        accept_p50: quantile(&accept, 0.5),
        accept_p99: quantile(&accept, 0.99),
        settle_p50: quantile(&settle, 0.5),
        settle_p99: quantile(&settle, 0.99),
    };
    log(format!(
        "  p50 {:.1} ms, p99 {:.1} ms (accept p50 {:.1} / p99 {:.1}, settle p50 {:.1} / p99 {:.1})",
        figures.total_p50,
        figures.total_p99,
        figures.accept_p50,
        figures.accept_p99,
        figures.settle_p50,
        figures.settle_p99
    ));
    Ok(figures)
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let root = e2e::repo_root();
    let work = tempfile::tempdir()?;
    reference::copy_self(work.path())?;
    prerequisites(&root)?;
    let script = work.path().join("load.lua");
    std::fs::write(&script, wrk::SCRIPT)?;
    let (revision, dirty) = git_revision(&root);
    let load_before = loadavg();
    let bench_started = Instant::now();
    let run_id = format!(
        "bench{}",
        driver::unix_ns(std::time::SystemTime::now()) / 1_000_000
    );
    let seconds = settings.seconds;

    // Start-up: each boot from nothing (fresh data dir), median of BENCH_BOOTS.
    let mut boots_ms = Vec::new();
    let mut stack = None;
    for i in 0..settings.boots {
        log(format!("booting the stack ({}/{})", i + 1, settings.boots));
        let booted = Stack::boot().await;
        boots_ms.push(booted.boot_time.as_secs_f64() * 1000.0);
        if i + 1 == settings.boots {
            stack = Some(booted);
        } else {
            tokio::task::spawn_blocking(move || drop(booted)).await?;
        }
    }
    let stack = stack.expect("booted at least once");
    let boot_ms = quantile(&boots_ms, 0.5);

    // Idle memory of every process, two seconds after all are ready.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let memory = stack.resident_memory_kib();
    let memory_mb = memory.values().sum::<u64>() as f64 * 1024.0 / 1e6;
    log(format!(
        "boot {boot_ms:.0} ms, idle memory {memory_mb:.1} MB"
    ));

    let references = reference::References::start(&root, work.path()).await?;
    let gateway = stack.gateway();
    let core_apis = [
        format!("http://127.0.0.1:{}", stack.port(7200)),
        format!("http://127.0.0.1:{}", stack.port(7201)),
    ];
    let client = driver::client();
    let alice = driver::Tokens::new(&client, &gateway, "alice");
    let bob = driver::Tokens::new(&client, &gateway, "bob");
    // A user token pays only for customers linked to its user.
    let (alices, bobs): (&[&str], &[&str]) =
        (&["cus_load", "cus_e2e", BIG_CUSTOMER], &[SMALL_CUSTOMER]);
    api_key_rate::link_customers(
        &client,
        &gateway,
        &[("alice", "alice", alices), ("bob", "bob", bobs)],
    )
    .await?;
    let mut redis = redis::Client::open(stack.redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let load_body = driver::body("cus_load");
    let post_load = |url: String, token: String, name: &str, secs: u64| {
        let run_id = format!("{run_id}-{name}");
        let script = script.clone();
        let body = load_body.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                wrk::run(
                    &script,
                    &wrk::Load {
                        url: &url,
                        method: "POST",
                        path: "/transactions",
                        token: Some(&token),
                        body: Some(&body),
                        run_id: &run_id,
                        threads: WRK_THREADS,
                        connections: CONNECTIONS,
                        seconds: secs,
                    },
                )
            })
            .await?
        }
    };

    // Warm-up: every path the scenarios use, connectors running.
    log("warming up");
    post_load(gateway.clone(), alice.get().await?, "warm-gateway", 3).await?;
    post_load(references.caddy.clone(), String::new(), "warm-caddy", 2).await?;
    post_load(references.hellos[0].clone(), String::new(), "warm-hello", 1).await?;
    wait_settled(&mut redis, Duration::from_secs(120)).await?;

    // From here the connectors are stopped: the accept path is measured
    // alone, and what it queues is the backlog of the settle scenario.
    let paused = PausedConnectors::new(&stack);

    // Preload through the real API: both core-api replicas, 64 at a time.
    log(format!(
        "preloading {} transactions for acme/{BIG_CUSTOMER} and {SMALL_COUNT} for globex/{SMALL_CUSTOMER}",
        settings.preload
    ));
    let preload_time = driver::post_many(
        &client,
        &core_apis,
        &alice,
        BIG_CUSTOMER,
        settings.preload,
        CONNECTIONS,
        &format!("{run_id}-preload-big"),
    )
    .await?;
    driver::post_many(
        &client,
        &core_apis,
        &bob,
        SMALL_CUSTOMER,
        SMALL_COUNT,
        CONNECTIONS,
        &format!("{run_id}-preload-small"),
    )
    .await?;
    let preload_rate = settings.preload as f64 / preload_time.as_secs_f64();
    log(format!(
        "preload: {:.1} s, {preload_rate:.0}/s",
        preload_time.as_secs_f64()
    ));

    // GET /transactions?customer_id=… on the large and the small merchant,
    // direct to one core-api, alternating, a few connections (latency, not
    // throughput).
    log("listing latency: large vs small merchant");
    let big_path = format!("/transactions?customer_id={BIG_CUSTOMER}");
    let small_path = format!("/transactions?customer_id={SMALL_CUSTOMER}");
    check_full_page(
        &client,
        &format!("{}{big_path}", core_apis[0]),
        &alice.get().await?,
    )
    .await?;
    check_full_page(
        &client,
        &format!("{}{small_path}", core_apis[0]),
        &bob.get().await?,
    )
    .await?;
    let mut big_runs = Vec::new();
    let mut small_runs = Vec::new();
    let list_seconds = (seconds / 2).max(1);
    // GET load on one core-api, a few connections: latency, not throughput.
    let list_load = |path: String, token: String, run_id: &'static str| {
        let (url, script) = (core_apis[0].clone(), script.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                wrk::run(
                    &script,
                    &wrk::Load {
                        url: &url,
                        method: "GET",
                        path: &path,
                        token: Some(&token),
                        body: None,
                        run_id,
                        threads: 1,
                        connections: 4,
                        seconds: list_seconds,
                    },
                )
            })
            .await?
        }
    };
    for round in 0..2 {
        for (path, token, runs) in [
            (&small_path, &bob, &mut small_runs),
            (&big_path, &alice, &mut big_runs),
        ] {
            // A token with at least 10 s left for each run (they live 30 s).
            let figures = list_load(path.clone(), token.get().await?, "list").await?;
            log(format!(
                "  round {round} {path}: p50 {:.2} ms, p99 {:.2} ms, {:.0}/s",
                figures.p50_ms(),
                figures.p99_ms(),
                figures.rate()
            ));
            runs.push(figures);
        }
    }
    let mean = |runs: &[wrk::Figures], f: fn(&wrk::Figures) -> f64| {
        runs.iter().map(f).sum::<f64>() / runs.len() as f64
    };
    let big_p50 = mean(&big_runs, wrk::Figures::p50_ms);
    let small_p50 = mean(&small_runs, wrk::Figures::p50_ms);
    let big_p99 = mean(&big_runs, wrk::Figures::p99_ms);
    let small_p99 = mean(&small_runs, wrk::Figures::p99_ms);

    // The small merchant's list again, while the large merchant runs list
    // queries with two filters (customer and status) in a loop from four
    // clients: a filtered list must not scan every record and so must not
    // slow the others.
    log("listing latency: small merchant while the large one runs filtered lists");
    let filtered = format!(
        "{}/transactions?customer_id={BIG_CUSTOMER}&status=failed",
        core_apis[0]
    );
    let stop_filtered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut filtering = Vec::new();
    for _ in 0..4 {
        let (client, url, token, stop) = (
            client.clone(),
            filtered.clone(),
            alice.clone(),
            stop_filtered.clone(),
        );
        filtering.push(tokio::spawn(async move {
            let mut done = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let token = token.get().await?;
                let response = client.get(&url).bearer_auth(&token).send().await?;
                anyhow::ensure!(
                    response.status() == 200,
                    "filtered list: {}",
                    response.status()
                );
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let small_beside_filtered =
        list_load(small_path.clone(), bob.get().await?, "list-beside-filtered").await?;
    stop_filtered.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut filtered_requests = 0;
    for task in filtering {
        filtered_requests += task.await??;
    }
    let beside_p50 = small_beside_filtered.p50_ms();
    let beside_ratio = beside_p50 / small_p50;
    log(format!(
        "  small merchant p50 {beside_p50:.2} ms beside {filtered_requests} filtered lists (alone {small_p50:.2} ms)"
    ));

    // auth-api's memory after 1,000 logins, 60 at a time, through the
    // gateway (argon2id allocates 19 MiB per check).
    log("auth-api memory: 1,000 logins, 60 at a time");
    let auth_idle_kib = memory.get("auth-api").copied().unwrap_or(0);
    let logins = Arc::new(tokio::sync::Semaphore::new(60));
    let mut attempts = Vec::new();
    for i in 0..1000 {
        let (client, gateway, logins) = (client.clone(), gateway.clone(), logins.clone());
        attempts.push(tokio::spawn(async move {
            let _slot = logins.acquire().await?;
            let user = if i % 2 == 0 { "alice" } else { "bob" };
            let response = client
                .post(format!("{gateway}/auth/token"))
                .form(&[("username", user), ("password", "password")])
                .send()
                .await?;
            anyhow::Ok(response.status().as_u16())
        }));
    }
    let mut login_statuses: std::collections::BTreeMap<u16, u32> = Default::default();
    for attempt in attempts {
        *login_statuses.entry(attempt.await??).or_default() += 1;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let auth_after_kib = stack
        .resident_memory_kib()
        .get("auth-api")
        .copied()
        .unwrap_or(0);
    let auth_idle_mb = auth_idle_kib as f64 * 1024.0 / 1e6;
    let auth_after_mb = auth_after_kib as f64 * 1024.0 / 1e6;
    log(format!(
        "  auth-api RSS {auth_idle_mb:.1} MB idle → {auth_after_mb:.1} MB 2 s after 1,000 logins (answers {login_statuses:?})"
    ));

    // POST through Caddy: the reference Caddy (same Caddyfile) in front of
    // hello-worlds, then the gateway in front of core-api.
    // CPU per request of each process involved, to say what limits a rate.
    let stack_pids = |names: &[&str]| -> Vec<(String, u32)> {
        names
            .iter()
            .map(|n| (n.to_string(), stack.pid(n)))
            .collect()
    };
    let ref_pids = references.pids();
    log("POST /transactions through Caddy: reference, then platform");
    let meter = cpu::Meter::start(ref_pids.clone());
    let caddy_ref = post_load(
        references.caddy.clone(),
        String::new(),
        "ref-caddy",
        seconds,
    )
    .await?;
    let caddy_ref_cpu = meter.per_request_us(caddy_ref.requests);
    let meter = cpu::Meter::start(stack_pids(&[
        "gateway",
        "core-api-0",
        "core-api-1",
        "redis",
    ]));
    let caddy_platform = post_load(gateway.clone(), alice.get().await?, "gateway", seconds).await?;
    let caddy_platform_cpu = meter.per_request_us(caddy_platform.requests);
    log(format!(
        "  CPU per request: reference {}; platform {}",
        cpu::describe(&caddy_ref_cpu),
        cpu::describe(&caddy_platform_cpu)
    ));
    log("POST /transactions direct: hello-world, then one core-api");
    let meter = cpu::Meter::start(ref_pids[..1].to_vec());
    let direct_ref = post_load(
        references.hellos[0].clone(),
        String::new(),
        "ref-hello",
        seconds,
    )
    .await?;
    let direct_ref_cpu = meter.per_request_us(direct_ref.requests);
    let meter = cpu::Meter::start(stack_pids(&["core-api-0", "redis"]));
    let direct_platform = post_load(
        core_apis[0].clone(),
        alice.get().await?,
        "core-api",
        seconds,
    )
    .await?;
    let direct_platform_cpu = meter.per_request_us(direct_platform.requests);
    log(format!(
        "  CPU per request: reference {}; platform {}",
        cpu::describe(&direct_ref_cpu),
        cpu::describe(&direct_platform_cpu)
    ));

    log("POST /transactions through Caddy: alice's JWT beside an API key");
    let key_vs_token = api_key_rate::measure(
        &client,
        &api_key_rate::Setup {
            script: &script,
            gateway: &gateway,
            seconds,
            threads: WRK_THREADS,
            connections: CONNECTIONS,
            run_id: &run_id,
        },
        "cus_load",
    )
    .await?;

    // Settle: the reference first (Redis is quiet), then release the
    // connectors on the backlog and time it to the last final status.
    log("redis-benchmark XADD, then settling the backlog");
    let xadd_rate = {
        let port = stack.port(6390);
        tokio::task::spawn_blocking(move || reference::redis_benchmark_xadd(port, 100_000))
            .await??
    };
    let backlog = unsettled(&mut redis).await?;
    drop(paused);
    let settle_time = wait_settled(&mut redis, Duration::from_secs(300)).await?;
    let settle_rate = backlog as f64 / settle_time.as_secs_f64();
    log(format!(
        "settled {backlog} in {:.1} s: {settle_rate:.0}/s (XADD reference {xadd_rate:.0}/s)",
        settle_time.as_secs_f64()
    ));

    // End to end at half the largest rate the platform sustains. Accepting
    // and settling share the same cores, so a transaction costs 1/post +
    // 1/settle of the machine: the max rate is the harmonic combination of
    // the gateway's POST rate and the settle rate, both measured above.
    let max_rate = 1.0 / (1.0 / caddy_platform.rate() + 1.0 / settle_rate);
    let e2e_rate = max_rate / 2.0;
    let e2e = end_to_end(
        &client, &gateway, &alice, &mut redis, e2e_rate, seconds, &run_id,
    )
    .await?;
    let (e2e_p50, e2e_p99) = (e2e.total_p50, e2e.total_p99);
    // The same at a low rate: the latency of the pipeline itself, unloaded.
    let e2e_low = end_to_end(
        &client,
        &gateway,
        &alice,
        &mut redis,
        100.0,
        5,
        &format!("{run_id}-low"),
    )
    .await?;

    let load_after = loadavg();
    drop(references);
    tokio::task::spawn_blocking(move || drop(stack)).await?;

    let caddy_ratio = caddy_platform.rate() / caddy_ref.rate();
    let direct_ratio = direct_platform.rate() / direct_ref.rate();
    let list_ratio = big_p50 / small_p50;
    let mut rows = vec![
        Row {
            scenario: format!("`POST /transactions` through Caddy, {CONNECTIONS} connections"),
            figure: format!(
                "{}/s, p99 {:.1} ms",
                thousands(caddy_platform.rate()),
                caddy_platform.p99_ms()
            ),
            reference: format!(
                "Caddy → axum hello-world: {}/s, p99 {:.1} ms",
                thousands(caddy_ref.rate()),
                caddy_ref.p99_ms()
            ),
            ratio: format!("{:.0} %", 100.0 * caddy_ratio),
            goal: "≥ 60 %; p99 ≤ 15 ms".into(),
            met: caddy_ratio >= 0.60 && caddy_platform.p99_ms() <= 15.0,
        },
        Row {
            scenario: format!(
                "`POST /transactions` direct to one core-api, {CONNECTIONS} connections"
            ),
            figure: format!(
                "{}/s, p99 {:.1} ms",
                thousands(direct_platform.rate()),
                direct_platform.p99_ms()
            ),
            reference: format!(
                "axum hello-world: {}/s, p99 {:.1} ms",
                thousands(direct_ref.rate()),
                direct_ref.p99_ms()
            ),
            ratio: format!("{:.0} %", 100.0 * direct_ratio),
            goal: "≥ 25 %; p99 ≤ 5 ms".into(),
            met: direct_ratio >= 0.25 && direct_platform.p99_ms() <= 5.0,
        },
        Row {
            scenario: format!(
                "`GET /transactions?customer_id=…`, merchant holding {} transactions",
                thousands(settings.preload as f64)
            ),
            figure: format!("p50 {big_p50:.2} ms (p99 {big_p99:.2} ms)"),
            reference: format!(
                "same query, merchant with {SMALL_COUNT}: p50 {small_p50:.2} ms (p99 {small_p99:.2} ms)"
            ),
            ratio: format!("{list_ratio:.2}×"),
            goal: "≤ 1.5×".into(),
            met: list_ratio <= 1.5,
        },
        Row {
            scenario: format!(
                "`GET /transactions?customer_id=…`, merchant with {SMALL_COUNT}, while the large merchant runs `customer_id` + `status` lists from 4 clients"
            ),
            figure: format!(
                "p50 {beside_p50:.2} ms ({filtered_requests} filtered lists meanwhile)"
            ),
            reference: format!("same query alone: p50 {small_p50:.2} ms"),
            ratio: format!("{beside_ratio:.2}×"),
            goal: "≤ 2×".into(),
            met: beside_ratio <= 2.0,
        },
        Row {
            scenario: "auth-api resident memory, 2 s after 1,000 logins (60 at a time)".into(),
            figure: format!("{auth_after_mb:.1} MB"),
            reference: format!("idle: {auth_idle_mb:.1} MB"),
            ratio: format!("{:.2}×", auth_after_mb / auth_idle_mb.max(0.1)),
            goal: "≤ 15 MB".into(),
            met: auth_after_mb <= 15.0,
        },
        Row {
            scenario: "settle rate (XADD → final), two connectors, sandbox latency 0".into(),
            figure: format!("{}/s", thousands(settle_rate)),
            reference: format!("`redis-benchmark` XADD: {}/s", thousands(xadd_rate)),
            ratio: format!("{:.0} %", 100.0 * settle_rate / xadd_rate),
            goal: "≥ 5,000 settled/s".into(),
            met: settle_rate >= 5000.0,
        },
        Row {
            scenario: format!(
                "end to end, POST → `succeeded`, at half the max rate ({}/s)",
                thousands(e2e_rate)
            ),
            figure: format!("p50 {e2e_p50:.1} ms, p99 {e2e_p99:.1} ms"),
            reference: "—".into(),
            ratio: "—".into(),
            goal: "p50 ≤ 20 ms, p99 ≤ 100 ms".into(),
            met: e2e_p50 <= 20.0 && e2e_p99 <= 100.0,
        },
        Row {
            scenario: "stack start (binaries built) → all ready".into(),
            figure: format!("{boot_ms:.0} ms (median of {})", boots_ms.len()),
            reference: "—".into(),
            ratio: "—".into(),
            goal: "≤ 2 s".into(),
            met: boot_ms <= 2000.0,
        },
        Row {
            scenario: format!("idle memory, whole stack ({} processes)", memory.len()),
            figure: format!("{memory_mb:.1} MB"),
            reference: "—".into(),
            ratio: "—".into(),
            goal: "≤ 150 MB".into(),
            met: memory_mb <= 150.0,
        },
    ];
    rows.push(key_vs_token.row(CONNECTIONS));
    let table = report::markdown(&rows);

    let figures = |f: &wrk::Figures| {
        json!({
            "rate_per_s": f.rate(), "requests": f.requests, "duration_s": f.duration_us / 1e6,
            "latency_ms": {"mean": f.mean_us / 1e3, "p50": f.p50_ms(), "p90": f.p90_us / 1e3,
                           "p99": f.p99_ms(), "max": f.max_us / 1e3},
        })
    };
    let document = json!({
        "revision": revision,
        "worktree_dirty": dirty,
        "finished_at": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)?,
        "duration_s": bench_started.elapsed().as_secs_f64(),
        "machine": machine(),
        "load_average": {"before": load_before, "after": load_after},
        "tools": {
            "wrk": first_line("wrk", &["-v"]),
            "caddy": first_line("caddy", &["version"]),
            "redis": first_line("redis-server", &["--version"]),
        },
        "settings": {
            "wrk_seconds": seconds, "wrk_threads": WRK_THREADS, "connections": CONNECTIONS,
            "preload": settings.preload, "small_merchant": SMALL_COUNT, "boots": boots_ms.len(),
        },
        "scenarios": {
            "post_through_caddy": {
                "platform": figures(&caddy_platform), "reference": figures(&caddy_ref),
                "cpu_us_per_request": {"platform": caddy_platform_cpu, "reference": caddy_ref_cpu},
                "ratio": caddy_ratio, "met": rows[0].met,
            },
            "post_direct": {
                "platform": figures(&direct_platform), "reference": figures(&direct_ref),
                "cpu_us_per_request": {"platform": direct_platform_cpu, "reference": direct_ref_cpu},
                "ratio": direct_ratio, "met": rows[1].met,
            },
            "small_list_beside_filtered_lists": {
                "small_merchant": figures(&small_beside_filtered), "filtered_requests": filtered_requests,
                "alone_p50_ms": small_p50, "ratio": beside_ratio, "met": rows[3].met,
            },
            "auth_api_memory_after_logins": {
                "idle_mb": auth_idle_mb, "after_mb": auth_after_mb,
                "answers": login_statuses, "met": rows[4].met,
            },
            "list_by_customer": {
                "large_merchant": big_runs.iter().map(figures).collect::<Vec<_>>(),
                "small_merchant": small_runs.iter().map(figures).collect::<Vec<_>>(),
                "large_p50_ms": big_p50, "small_p50_ms": small_p50,
                "large_p99_ms": big_p99, "small_p99_ms": small_p99,
                "ratio": list_ratio, "met": rows[2].met,
                "preload_seconds": preload_time.as_secs_f64(), "preload_rate_per_s": preload_rate,
            },
            "settle": {
                "transactions": backlog, "seconds": settle_time.as_secs_f64(),
                "rate_per_s": settle_rate, "reference_xadd_per_s": xadd_rate,
                "ratio": settle_rate / xadd_rate, "met": rows[5].met,
            },
            "end_to_end": {
                "max_rate_per_s": max_rate, "half_max_rate": e2e, "low_rate": e2e_low,
                "latency_unit": "ms", "met": rows[6].met,
            },
            "start_up": {"boot_ms": boots_ms, "median_ms": boot_ms, "met": rows[7].met},
            "idle_memory": {
                "total_mb": memory_mb,
                "per_process_mib": memory.iter()
                    .map(|(name, kib)| (name.clone(), json!(*kib as f64 / 1024.0)))
                    .collect::<serde_json::Map<_, _>>(),
                "met": rows[8].met,
            },
        },
        "post_with_api_key": key_vs_token.json(),
        "table_markdown": table,
    });
    if let Some(dir) = settings.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&settings.out, serde_json::to_string_pretty(&document)?)?;

    println!(
        "machine: {} cores, load average {load_before} → {load_after}; revision {revision}{}\n",
        document["machine"]["cores"],
        if dirty { " (work tree modified)" } else { "" }
    );
    println!("{table}");
    println!("figures: {}", settings.out.display());
    Ok(())
}
