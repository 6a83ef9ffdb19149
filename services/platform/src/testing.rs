//! Test harness shared by every crate's tests (feature `test-support`):
//! a real `redis-server` on a free port, a service served inside the test
//! process ([`Spawned`]), a real `sd_notify` socket, free ports and child
//! processes that die with the test.
//!
//! A test that needs a tool that is not installed fails with a message
//! saying how to get it; it never skips.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A service built by its own `build` and served inside the test process,
/// like zero-to-production's `spawn_app`: the one way tests boot a service
/// in-process (the binaries are run as child processes instead where a
/// test needs signals, exit codes or logs). Stops when dropped.
pub struct Spawned {
    pub addr: std::net::SocketAddr,
    shutdown: crate::Shutdown,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Spawned {
    /// Builds with `config` and a test runtime (no log output, a 2 s
    /// drain), then serves on a task of the current runtime.
    pub async fn start<C, F, Fut>(config: C, build: F) -> Self
    where
        F: FnOnce(C, crate::config::RuntimeConfig, crate::Shutdown) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<crate::server::Started>>,
    {
        let runtime = crate::config::RuntimeConfig {
            log_format: None,
            shutdown_timeout_secs: crate::config::Secs(Duration::from_secs(2)),
            ..crate::config::RuntimeConfig::default()
        };
        let shutdown = crate::Shutdown::new();
        let started = build(config, runtime, shutdown.clone())
            .await
            .expect("the service builds");
        Spawned {
            addr: started.addr,
            shutdown,
            task: Some(tokio::spawn(started.serve)),
        }
    }

    /// `http://{addr}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Signals shutdown and waits for the service to drain.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.trigger();
        match self.task.take() {
            Some(task) => task.await.expect("the service task completes"),
            None => Ok(()),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// A port nothing listens on right now, chosen at random below the
/// kernel's ephemeral range (32768 and up on Linux): port 0 would hand out
/// ports that outgoing connections also use, and tests in parallel
/// processes would be handed each other's just-released ports.
pub fn free_port() -> u16 {
    const RANGE: std::ops::Range<u16> = 20_000..32_000;
    for _ in 0..1000 {
        let random = uuid::Uuid::new_v4().as_u128();
        let port = RANGE.start + (random % u128::from(RANGE.end - RANGE.start)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

/// Blocks until `addr` accepts TCP connections, or panics after `timeout`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{addr} did not accept connections within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Resident memory of process `pid` in KiB (`VmRSS` in /proc), or None
/// once it has exited.
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Full path of `program` on `PATH`, or a failure naming how to install it.
pub fn require_program(program: &str, how_to_get_it: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("`{program}` is not on PATH; this test needs the real one. Install it: {how_to_get_it}")
        })
}

/// A child process killed when dropped.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends `signal` (e.g. `"TERM"`, `"KILL"`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.0.id().to_string())
            .status();
        assert!(
            status.map(|s| s.success()).unwrap_or(false),
            "kill -{signal} failed"
        );
    }

    /// Waits for exit, failing the test after `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process {} did not exit within {timeout:?}",
                self.0.id()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A throw-away `redis-server` on a free loopback port.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<ChildGuard>,
}

const REDIS_HINT: &str =
    "`apt-get install redis-server` (Debian/Ubuntu), or run the tests inside `nix develop`";

impl RedisServer {
    /// Starts Redis and waits until it answers.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let mut server = Self {
            port: free_port(),
            dir,
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let binary = require_program("redis-server", REDIS_HINT);
        let child = Command::new(binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(ChildGuard(child));
        self.wait_until_up();
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answered = redis::Client::open(self.url())
                .and_then(|client| client.get_connection())
                .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn))
                .is_ok();
            if answered {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A blocking connection for test assertions.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to test redis")
    }

    /// Stops Redis abruptly (SIGKILL); data since the last fsync may be lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.signal("KILL");
            child.wait_timeout(Duration::from_secs(10));
        }
    }

    /// Stops Redis cleanly (SIGTERM).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.signal("TERM");
            child.wait_timeout(Duration::from_secs(10));
        }
    }

    /// Starts Redis again on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "stop or kill redis before restarting it"
        );
        self.spawn();
    }
}

/// A real `NOTIFY_SOCKET`: a unix datagram socket collecting what a service
/// sends with sd_notify.
pub struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    socket: UnixDatagram,
}

impl Default for NotifySocket {
    fn default() -> Self {
        Self::new()
    }
}

impl NotifySocket {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for notify socket");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        Self {
            _dir: dir,
            path,
            socket,
        }
    }

    /// The value to put in `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next datagram, or `None` after `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(timeout))
            .expect("set timeout");
        let mut buffer = [0u8; 4096];
        match self.socket.recv(&mut buffer) {
            Ok(n) => Some(String::from_utf8_lossy(&buffer[..n]).into_owned()),
            Err(_) => None,
        }
    }

    /// Waits for a datagram containing the line `state` (e.g. `READY=1`),
    /// returning everything received before it.
    pub fn wait_for(&self, state: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {state} within {timeout:?}; received {seen:?}"
            );
            if let Some(message) = self.recv(left) {
                if message.lines().any(|line| line == state) {
                    return seen;
                }
                seen.push(message);
            }
        }
    }

    /// Everything that arrives within `window`.
    pub fn drain(&self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return seen;
            }
            if let Some(message) = self.recv(left) {
                seen.push(message);
            }
        }
    }
}

/// For a service's OpenAPI document: the error `code` schema lists exactly
/// [`crate::http::ErrorCode`], and every code an error response's
/// description names is one of them (a backquoted snake_case word that is
/// not a property of `request_schema`).
pub fn assert_error_codes_documented(doc: &serde_json::Value, request_schema: &str) {
    use crate::http::ErrorCode;
    let all: Vec<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
    let listed: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("the ErrorCode schema lists the codes")
        .iter()
        .map(|code| code.as_str().unwrap())
        .collect();
    assert_eq!(listed, all);
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                if !status.starts_with('4') && !status.starts_with('5') {
                    continue;
                }
                let description = response["description"].as_str().unwrap_or_default();
                for quoted in description.split('`').skip(1).step_by(2) {
                    let is_code = quoted.contains('_')
                        && quoted.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
                    let is_field = doc["components"]["schemas"][request_schema]["properties"]
                        [quoted]
                        .is_object();
                    assert!(
                        !is_code || is_field || all.contains(&quoted),
                        "{method} {path} {status} names `{quoted}`, not an ErrorCode"
                    );
                }
            }
        }
    }
}
