//! Instructions per payment, counted by valgrind's callgrind: for core-api
//! per accepted `POST /transactions`, for psp-connector per settled
//! payment. Unlike the wall-clock rows these repeat within about a percent
//! on a loaded, shared machine, so a regression of 5 % shows in one run.
//!
//! Each process runs under callgrind twice, for a small and a large number
//! of payments, on a Redis of its own; the difference of the two totals
//! divided by the difference of the counts is the cost of one payment,
//! without start-up and shutdown. The payments are sent one at a time, so
//! the count does not depend on how many arrive together. Time spent idle
//! (timers, the connector's blocking reads) adds a little; it is the same
//! in both runs within the few seconds they differ.
//!
//! Beside the counts, Redis' own time per payment by command (`INFO
//! commandstats`, µs; wall-clock, so noisier) says where Redis' CPU goes
//! on each side (latest.json, and printed).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use platform::auth::{JwtSecret, TokenIssuer};
use platform::keyspace::Index;
use platform::testing::{RedisServer, free_port};
use platform::transaction::Status;
use serde_json::{Value, json};

use super::ScenarioResult;
use crate::report::{Row, thousands};
use crate::{driver, log};

/// Payments of the small and the large run.
const SMALL: u64 = 100;
const LARGE: u64 = 500;
/// The JWT secret of these runs' core-api (they have their own Redis).
const SECRET: &str = "bench-instructions-secret-0123456789abcdef";

pub struct Instructions {
    /// Instructions per accepted POST in core-api.
    core_api: f64,
    /// Instructions per settled payment in psp-connector.
    connector: f64,
    /// Redis' own time per payment by command (`INFO commandstats`, µs),
    /// for the accept and the settle side: where Redis' CPU goes.
    redis_accept: BTreeMap<String, f64>,
    redis_settle: BTreeMap<String, f64>,
}

/// One run's totals: callgrind's instruction count, and Redis' µs by command.
struct Totals {
    instructions: u64,
    redis_usec: BTreeMap<String, f64>,
}

pub async fn measure(work: &Path) -> anyhow::Result<Instructions> {
    let bin = e2e::binary_dir();
    let small = core_api_run(&bin, work, SMALL).await?;
    let large = core_api_run(&bin, work, LARGE).await?;
    let (core_api, redis_accept) = per_payment(&small, &large);
    log(format!(
        "core-api: {core_api:.0} instructions per accepted POST; Redis µs: {redis_accept:.1?}"
    ));
    let small = connector_run(&bin, work, SMALL).await?;
    let large = connector_run(&bin, work, LARGE).await?;
    let (connector, redis_settle) = per_payment(&small, &large);
    log(format!(
        "psp-connector: {connector:.0} instructions per settled payment; Redis µs: {redis_settle:.1?}"
    ));
    keep_profiles(&bin, work)?;
    Ok(Instructions {
        core_api,
        connector,
        redis_accept,
        redis_settle,
    })
}

/// Copies the large runs' callgrind files to `target/bench/callgrind/`,
/// where they outlive the run's temp dir: `callgrind_annotate` on them is
/// the profile by function (BENCHMARKS.md).
fn keep_profiles(bin: &Path, work: &Path) -> anyhow::Result<()> {
    let dir = bin.parent().context("target dir")?.join("bench/callgrind");
    std::fs::create_dir_all(&dir)?;
    for process in ["core-api", "psp-connector"] {
        let kept = dir.join(format!("{process}.out"));
        std::fs::copy(work.join(format!("callgrind.{process}.{LARGE}")), &kept)?;
        log(format!(
            "profile by function: callgrind_annotate {}",
            kept.display()
        ));
    }
    Ok(())
}

/// The cost of one payment: the difference of the two runs over the
/// difference of their payments.
fn per_payment(small: &Totals, large: &Totals) -> (f64, BTreeMap<String, f64>) {
    let payments = (LARGE - SMALL) as f64;
    let instructions = (large.instructions as f64 - small.instructions as f64) / payments;
    let redis = large
        .redis_usec
        .iter()
        .map(|(command, usec)| {
            let before = small.redis_usec.get(command).copied().unwrap_or(0.0);
            (command.clone(), (usec - before) / payments)
        })
        .filter(|(_, usec)| *usec > 0.005)
        .collect();
    (instructions, redis)
}

/// `INFO commandstats`: total µs spent in each command since Redis started.
fn redis_usec(redis: &RedisServer) -> anyhow::Result<BTreeMap<String, f64>> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.connection())?;
    Ok(info
        .lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let usec = stats
                .split(',')
                .find_map(|stat| stat.strip_prefix("usec="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), usec))
        })
        // Once per script and process (the first EVALSHA answers NOSCRIPT),
        // not per payment: its time between two runs is noise.
        .filter(|(name, _)| name != "script|load")
        .collect())
}

/// core-api under callgrind accepts `payments` POSTs; its total count.
async fn core_api_run(bin: &Path, work: &Path, payments: u64) -> anyhow::Result<Totals> {
    let redis = RedisServer::start();
    link_customers(&redis)?;
    let out = work.join(format!("callgrind.core-api.{payments}"));
    let (mut child, url) = core_api(bin, &redis, Some(&out))?;
    post(&url, payments).await?;
    let redis_usec = redis_usec(&redis)?;
    stop(&mut child)?;
    Ok(Totals {
        instructions: total_instructions(&out)?,
        redis_usec,
    })
}

/// psp-connector under callgrind settles `payments` queued by a core-api
/// (not counted) at a sandbox without latency; its total count.
async fn connector_run(bin: &Path, work: &Path, payments: u64) -> anyhow::Result<Totals> {
    let redis = RedisServer::start();
    link_customers(&redis)?;
    let (mut core, url) = core_api(bin, &redis, None)?;
    post(&url, payments).await?;
    stop(&mut core)?;
    let accepted = redis_usec(&redis)?;
    let sandbox_port = free_port();
    let mut sandbox = Command::new(bin.join("psp-sandbox"))
        .env("PSP_SANDBOX_ADDR", format!("127.0.0.1:{sandbox_port}"))
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("start psp-sandbox")?;
    wait_ready(&format!("http://127.0.0.1:{sandbox_port}")).await?;
    let out = work.join(format!("callgrind.psp-connector.{payments}"));
    let health = free_port();
    let mut connector = callgrind(&out, &bin.join("psp-connector"))
        .env("REDIS_URL", redis.url())
        .env("PSP_URL", format!("http://127.0.0.1:{sandbox_port}"))
        .env("PSP_CONNECTOR_ADDR", format!("127.0.0.1:{health}"))
        .env("CONNECTOR_CONSUMER_NAME", "bench-instructions")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("start psp-connector under valgrind")?;
    wait_settled(&redis, payments).await?;
    // Redis' time for settling alone: what the accept side spent is taken
    // off, and so is ZCARD, which is only this scenario's polling.
    let redis_usec = redis_usec(&redis)?
        .into_iter()
        .filter(|(command, _)| command != "zcard")
        .map(|(command, usec)| {
            let accept = accepted.get(&command).copied().unwrap_or(0.0);
            (command, usec - accept)
        })
        .collect();
    stop(&mut connector)?;
    stop(&mut sandbox)?;
    Ok(Totals {
        instructions: total_instructions(&out)?,
        redis_usec,
    })
}

/// `valgrind --tool=callgrind` of `program`, writing its counts to `out`.
fn callgrind(out: &Path, program: &Path) -> Command {
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(program)
        .stderr(Stdio::null());
    command
}

/// A core-api on `redis`, under callgrind when `out` is given; its URL.
fn core_api(
    bin: &Path,
    redis: &RedisServer,
    out: Option<&Path>,
) -> anyhow::Result<(Child, String)> {
    let port = free_port();
    let program = bin.join("core-api");
    let mut command = match out {
        Some(out) => callgrind(out, &program),
        None => Command::new(&program),
    };
    let child = command
        .env("CORE_API_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", redis.url())
        .env("JWT_SECRET", SECRET)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("start core-api")?;
    Ok((child, format!("http://127.0.0.1:{port}")))
}

async fn wait_ready(url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let client = driver::client();
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{url}/readyz")).send().await
            && response.status() == 200
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{url} not ready within 2 minutes")
}

/// The customers [`post`] pays for, linked to alice as auth-api would link
/// them (a user token pays only for its linked customers). Ten SADDs per
/// run: the same in both runs, so they cancel out of the difference.
fn link_customers(redis: &RedisServer) -> anyhow::Result<()> {
    let customers: Vec<String> = (0..CUSTOMERS).map(customer).collect();
    redis::cmd("SADD")
        .arg(platform::keyspace::user_customers("acme", "alice"))
        .arg(&customers)
        .query::<()>(&mut redis.connection())?;
    Ok(())
}

/// How many customers the payments cycle through.
const CUSTOMERS: u64 = 10;

fn customer(n: u64) -> String {
    format!("cus_{}", n % CUSTOMERS)
}

/// `payments` POSTs, one at a time, each answered 202.
async fn post(url: &str, payments: u64) -> anyhow::Result<()> {
    wait_ready(url).await?;
    let secret = JwtSecret::new(SECRET).map_err(anyhow::Error::msg)?;
    let issuer = TokenIssuer::new(&secret, Duration::from_secs(3600));
    let (token, _) = issuer.issue("alice", "acme");
    let client = driver::client();
    for n in 0..payments {
        let response = client
            .post(format!("{url}/transactions"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(driver::body(&customer(n)))
            .send()
            .await?;
        if response.status() != 202 {
            bail!("POST answered {}", response.status());
        }
    }
    Ok(())
}

async fn wait_settled(redis: &RedisServer, payments: u64) -> anyhow::Result<()> {
    let mut conn = redis.connection();
    let succeeded = Index::Status(Status::Succeeded).key("acme");
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        let settled: u64 = redis::cmd("ZCARD").arg(&succeeded).query(&mut conn)?;
        if settled >= payments {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{payments} payments not settled within 10 minutes")
}

/// SIGTERM, then the exit (the services drain and exit 0).
fn stop(child: &mut Child) -> anyhow::Result<()> {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()?;
    let status = child.wait()?;
    if !status.success() {
        bail!("exited with {status} after SIGTERM");
    }
    Ok(())
}

/// The `totals:` (or `summary:`) line of a callgrind output file.
fn total_instructions(out: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(out).with_context(|| format!("read {}", out.display()))?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix("totals:")
                .or_else(|| line.strip_prefix("summary:"))
        })
        .and_then(|count| count.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no instruction total in {}", out.display()))
}

impl ScenarioResult for Instructions {
    fn key(&self) -> &'static str {
        "instructions"
    }

    fn row(&self) -> Row {
        Row {
            scenario: "instructions per payment (callgrind): core-api per accepted POST, connector per settled payment".into(),
            figure: format!(
                "core-api {}, connector {}",
                thousands(self.core_api),
                thousands(self.connector)
            ),
            reference: "—".into(),
            ratio: "—".into(),
            goal: "recorded; compare runs".into(),
            met: self.core_api > 0.0 && self.connector > 0.0,
        }
    }

    fn figures(&self) -> Value {
        json!({
            "core_api_per_accepted_post": self.core_api,
            "connector_per_settled_payment": self.connector,
            "redis_usec_per_accepted_post": self.redis_accept,
            "redis_usec_per_settled_payment": self.redis_settle,
            "payments": {"small": SMALL, "large": LARGE},
        })
    }
}
