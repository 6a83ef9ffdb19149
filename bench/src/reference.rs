//! The references each scenario is compared with, run beside the stack in
//! the same run: an axum hello-world (this binary, `bench hello <addr>`), a
//! second Caddy from the project's own Caddyfile in front of it, and
//! `redis-benchmark` against the stack's Redis.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use bytes::Bytes;
use platform::testing::{ChildGuard, free_port};

/// The smallest axum service: answers every method and path (Caddy's health
/// check included) with a fixed text, after reading the body as a real
/// handler would. Same tokio runtime as the services (`#[tokio::main]`).
pub fn serve_hello(addr: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {addr}"))?;
        let app = Router::new().fallback(|_body: Bytes| async { "Hello, World!" });
        axum::serve(listener, app).await?;
        Ok(())
    })
}

const SELF_COPY: &str = "bench-hello";

/// Copies this binary into `dir`, for the hello-world processes: done
/// before anything can rebuild the workspace (the bench's own build step,
/// or an edit while it runs), which would relink the running executable.
pub fn copy_self(dir: &Path) -> anyhow::Result<()> {
    std::fs::copy(std::env::current_exe()?, dir.join(SELF_COPY))
        .context("copy the bench binary")?;
    Ok(())
}

/// Hello-world processes and a Caddy in front of them.
pub struct References {
    /// `http://127.0.0.1:<port>` of each hello-world.
    pub hellos: Vec<String>,
    /// `http://127.0.0.1:<port>` of the reference Caddy.
    pub caddy: String,
    children: Vec<ChildGuard>,
}

impl References {
    /// Two hello-worlds (the stack has two core-api replicas) and a Caddy
    /// started exactly as process-compose.yaml starts the gateway, with
    /// `CORE_API_UPSTREAMS` pointing at the hello-worlds.
    pub async fn start(root: &Path, dir: &Path) -> anyhow::Result<References> {
        let exe = dir.join(SELF_COPY);
        anyhow::ensure!(exe.is_file(), "call reference::copy_self first");
        let mut children = Vec::new();
        let mut hellos = Vec::new();
        for _ in 0..2 {
            let addr = format!("127.0.0.1:{}", free_port());
            children.push(start_hello(&exe, &addr)?);
            hellos.push(addr);
        }
        let port = free_port();
        children.push(start_caddy(root, dir, port, &hellos)?);
        let references = References {
            hellos: hellos.iter().map(|a| format!("http://{a}")).collect(),
            caddy: format!("http://127.0.0.1:{port}"),
            children,
        };
        for url in references.hellos.iter().chain([&references.caddy]) {
            wait_ok(&format!("{url}/readyz")).await?;
        }
        Ok(references)
    }
}

fn start_hello(exe: &Path, addr: &str) -> anyhow::Result<ChildGuard> {
    let child = Command::new(exe)
        .arg("hello")
        .arg(addr)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("start hello-world")?;
    Ok(ChildGuard(child))
}

/// Caddy on `port` from the project's Caddyfile, in front of `hellos`
/// (both upstream lists), its state and log in `dir`.
fn start_caddy(
    root: &Path,
    dir: &Path,
    port: u16,
    hellos: &[String],
) -> anyhow::Result<ChildGuard> {
    let log = std::fs::File::create(dir.join("reference-caddy.log"))?;
    let child = Command::new("caddy")
        .args([
            "run",
            "--adapter",
            "caddyfile",
            "--config",
            "caddy/Caddyfile",
        ])
        .current_dir(root)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("caddy"))
        .env("XDG_DATA_HOME", dir.join("caddy"))
        .env("PLATFORM_PORT", port.to_string())
        .env("AUTH_API_UPSTREAMS", &hellos[0])
        .env("CORE_API_UPSTREAMS", hellos.join(" "))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("start the reference caddy (`apt-get install caddy`)")?;
    Ok(ChildGuard(child))
}

impl References {
    /// (name, pid) of the hello-worlds and the reference Caddy.
    pub fn pids(&self) -> Vec<(String, u32)> {
        ["hello-0", "hello-1", "caddy"]
            .iter()
            .zip(&self.children)
            .map(|(name, child)| (name.to_string(), child.pid()))
            .collect()
    }
}

async fn wait_ok(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} not answering 200 within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `redis-benchmark` XADD rate (requests/s) against `port`, on a key of its
/// own that is deleted afterwards. Default settings: 50 clients, no pipelining.
pub fn redis_benchmark_xadd(port: u16, requests: u64) -> anyhow::Result<f64> {
    let key = platform::keyspace::BENCH_XADD_REFERENCE;
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-n", &requests.to_string(), "--csv"])
        .args(["XADD", key, "*", "f", "v"])
        .output()
        .context("run redis-benchmark (`apt-get install redis-tools`)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rate = stdout
        .lines()
        .filter(|l| l.starts_with("\"XADD"))
        .find_map(|l| l.split(',').nth(1)?.trim_matches('"').parse::<f64>().ok())
        .with_context(|| format!("no XADD figure in redis-benchmark output: {stdout}"))?;
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "DEL", key])
        .stdout(Stdio::null())
        .status()?;
    Ok(rate)
}
