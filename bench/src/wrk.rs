//! HTTP load with `wrk` and the Lua script in `bench/wrk/load.lua`: a fixed
//! duration, a fixed number of connections, and a unique `Idempotency-Key`
//! per POST. The script prints its figures as one JSON line.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The script, written next to the JSON output so a run can be repeated by hand.
pub const SCRIPT: &str = include_str!("../wrk/load.lua");

/// One wrk run (owned, so it can move to a blocking thread).
#[derive(Debug, Clone)]
pub struct Load {
    pub url: String,
    pub method: &'static str,
    pub path: String,
    pub token: Option<String>,
    pub body: Option<String>,
    pub run_id: String,
    pub threads: usize,
    pub connections: usize,
    pub seconds: u64,
}

/// What `done()` in the script reports (latency in microseconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    pub requests: f64,
    pub duration_us: f64,
    pub connect_errors: f64,
    pub read_errors: f64,
    pub write_errors: f64,
    /// Responses that were not 2xx/3xx.
    pub status_errors: f64,
    pub timeouts: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Figures {
    pub fn rate(&self) -> f64 {
        self.requests / (self.duration_us / 1e6)
    }

    pub fn errors(&self) -> f64 {
        self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.status_errors
            + self.timeouts
    }

    pub fn p50_ms(&self) -> f64 {
        self.p50_us / 1000.0
    }

    pub fn p99_ms(&self) -> f64 {
        self.p99_us / 1000.0
    }

    /// The figures of one run in latest.json (latency in ms).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "rate_per_s": self.rate(), "requests": self.requests, "duration_s": self.duration_us / 1e6,
            "latency_ms": {"mean": self.mean_us / 1e3, "p50": self.p50_ms(), "p90": self.p90_us / 1e3,
                           "p99": self.p99_ms(), "max": self.max_us / 1e3},
        })
    }
}

/// Runs wrk on a blocking thread (it waits for the whole run).
pub async fn run_blocking(script: PathBuf, load: Load) -> anyhow::Result<Figures> {
    tokio::task::spawn_blocking(move || run(&script, &load)).await?
}

/// Runs wrk; fails when it cannot run or any request failed.
pub fn run(script: &Path, load: &Load) -> anyhow::Result<Figures> {
    let output = Command::new("wrk")
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.seconds))
        .arg("--timeout")
        .arg("5s")
        .arg("-s")
        .arg(script)
        .arg(&load.url)
        .env("BENCH_METHOD", load.method)
        .env("BENCH_PATH", &load.path)
        .env("BENCH_TOKEN", load.token.as_deref().unwrap_or(""))
        .env("BENCH_BODY", load.body.as_deref().unwrap_or(""))
        .env("BENCH_RUN", &load.run_id)
        .output()
        .context("run wrk (`apt-get install wrk`)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH "))
        .with_context(|| format!("no BENCH line in wrk output:\n{stdout}"))?;
    let figures: Figures = serde_json::from_str(line).context("parse wrk figures")?;
    if figures.errors() > 0.0 {
        bail!(
            "{} {}{}: {} of {} requests failed:\n{stdout}",
            load.method,
            load.url,
            load.path,
            figures.errors(),
            figures.requests
        );
    }
    Ok(figures)
}
