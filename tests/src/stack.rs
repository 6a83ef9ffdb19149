//! The whole platform, booted from `process-compose.yaml` on free ports.
//!
//! Every port the file names is one of [`DEFAULT_PORTS`] and is replaced by
//! a free one (in commands, environment values and probes); a port the
//! harness does not know fails the boot. Processes start in `depends_on`
//! order once their dependencies are started or healthy, readiness comes
//! from the file's own probes, output goes to one log file per process, and
//! dropping the [`Stack`] stops everything (SIGTERM, then SIGKILL after the
//! file's shutdown timeout).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::compose::{ComposeFile, Condition, Process};

/// Every port process-compose.yaml may use, at its default value.
pub const DEFAULT_PORTS: &[u16] = &[6390, 7101, 7200, 7201, 7300, 7301, 7401, 8000];

/// How long the whole stack may take to become ready.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Per-test adjustments on top of the file.
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// Extra environment for processes whose file name (`core-api`, not
    /// `core-api-0`) matches: `(process, variable, value)`.
    pub env: Vec<(String, String, String)>,
}

impl StackOptions {
    pub fn env(mut self, process: &str, variable: &str, value: &str) -> Self {
        self.env
            .push((process.into(), variable.into(), value.into()));
        self
    }
}

pub struct Stack {
    root: PathBuf,
    dir: tempfile::TempDir,
    ports: BTreeMap<u16, u16>,
    processes: Vec<Process>,
    options: StackOptions,
    children: Mutex<BTreeMap<String, Child>>,
    /// From the first spawn to every readiness probe passing.
    pub boot_time: Duration,
}

/// Replaces every standalone number in `text` that is a default port by its
/// remapped value. A number that looks like a port by its context
/// (`host:NNNN`, `--port NNNN`) but is not a known default fails the boot,
/// so the suite never runs on a fixed port. Probe ports go through
/// [`remap_probe_port`].
pub fn remap_ports(text: &str, ports: &BTreeMap<u16, u16>, context: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let run = &text[start..i];
            let standalone = i == bytes.len() || !bytes[i].is_ascii_alphanumeric();
            let port_like = text[..start].ends_with(':') || text[..start].ends_with("--port ");
            match run.parse::<u16>().ok().filter(|_| standalone) {
                Some(port) if ports.contains_key(&port) => out.push_str(&ports[&port].to_string()),
                Some(port) if port_like && port >= 1024 => {
                    panic!(
                        "{context}: port {port} is not one of the harness' DEFAULT_PORTS; add it there"
                    )
                }
                _ => out.push_str(run),
            }
        } else {
            let c = text[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// A probe's `port` field: must be a known default port.
pub fn remap_probe_port(port: &str, ports: &BTreeMap<u16, u16>, context: &str) -> String {
    let value: u16 = port
        .parse()
        .unwrap_or_else(|_| panic!("{context}: probe port {port:?} is not a number"));
    match ports.get(&value) {
        Some(mapped) => mapped.to_string(),
        None => panic!(
            "{context}: probe port {value} is not one of the harness' DEFAULT_PORTS; add it there"
        ),
    }
}

impl Stack {
    pub async fn boot() -> Stack {
        Self::boot_with(StackOptions::default()).await
    }

    pub async fn boot_with(options: StackOptions) -> Stack {
        platform::testing::require_program(
            "redis-server",
            "`apt-get install redis-server`, or `nix develop`",
        );
        platform::testing::require_program("caddy", "`apt-get install caddy`, or `nix develop`");
        // A free port can be taken by a parallel test between choosing it
        // and the process binding it; such a boot is retried on new ports.
        let mut attempt = 1;
        loop {
            match Self::try_boot(options.clone()).await {
                Ok(stack) => return stack,
                Err(collision) if attempt < 3 => {
                    eprintln!("stack boot attempt {attempt}: {collision}; retrying on other ports");
                    attempt += 1;
                }
                Err(collision) => panic!("stack boot failed {attempt} times: {collision}"),
            }
        }
    }

    /// One boot; `Err` only when a port was taken under us.
    async fn try_boot(options: StackOptions) -> Result<Stack, String> {
        let root = crate::repo_root();
        let dir = tempfile::tempdir().expect("stack temp dir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
        let ports: BTreeMap<u16, u16> = DEFAULT_PORTS
            .iter()
            .map(|&p| (p, platform::testing::free_port()))
            .collect();

        let file = ComposeFile::load(&root.join("process-compose.yaml"), &|name| {
            std::env::var(name).ok()
        });
        let processes: Vec<Process> = file
            .processes()
            .into_iter()
            .map(|mut process| {
                let context = format!("process {}", process.name);
                process.command = remap_ports(&process.command, &ports, &context);
                for (_, value) in &mut process.environment {
                    *value = remap_ports(value, &ports, &context);
                }
                if let Some(probe) = &mut process.readiness {
                    if let Some(exec) = &mut probe.exec {
                        exec.command = remap_ports(&exec.command, &ports, &context);
                    }
                    if let Some(http) = &mut probe.http_get {
                        http.port = remap_probe_port(&http.port, &ports, &context);
                    }
                }
                process
            })
            .collect();

        let mut stack = Stack {
            root,
            dir,
            ports,
            processes,
            options,
            children: Mutex::new(BTreeMap::new()),
            boot_time: Duration::ZERO,
        };
        let started = Instant::now();
        stack.start_all().await?;
        stack.boot_time = started.elapsed();
        Ok(stack)
    }

    async fn start_all(&self) -> Result<(), String> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut started: BTreeMap<String, bool> = BTreeMap::new(); // name → healthy
        while started.len() < self.processes.len() || started.values().any(|healthy| !healthy) {
            assert!(
                Instant::now() < deadline,
                "stack not ready within {BOOT_TIMEOUT:?}: {started:?}\n{}",
                self.all_logs()
            );
            for process in &self.processes {
                if started.contains_key(&process.name) {
                    continue;
                }
                let ready_to_start =
                    process
                        .depends_on
                        .iter()
                        .all(|(dependency, condition)| match condition {
                            Condition::ProcessStarted => started.contains_key(dependency),
                            Condition::ProcessHealthy => started.get(dependency) == Some(&true),
                            Condition::ProcessCompletedSuccessfully => false,
                        });
                if ready_to_start {
                    self.spawn(process);
                    started.insert(process.name.clone(), process.readiness.is_none());
                }
            }
            for process in &self.processes {
                if started.get(&process.name) == Some(&false) {
                    if let Some(log) = self.exited(&process.name) {
                        if log.contains("address already in use") {
                            return Err(format!("{} could not bind its port", process.name));
                        }
                        panic!("{} exited during start-up:\n{log}", process.name);
                    }
                    if self.probe(process).await {
                        started.insert(process.name.clone(), true);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The log of `name` if it has exited.
    fn exited(&self, name: &str) -> Option<String> {
        let mut children = self.children.lock().unwrap();
        let child = children.get_mut(name)?;
        match child.try_wait() {
            Ok(Some(status)) => Some(format!("exit {status}:\n{}", self.log(name))),
            _ => None,
        }
    }

    fn process(&self, name: &str) -> &Process {
        self.processes
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    fn spawn(&self, process: &Process) {
        let log_path = self.log_path(&process.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open log");
        let path = format!(
            "{}:{}",
            crate::binary_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(&process.command)
            .current_dir(process_dir(&self.root, process))
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .env("PLATFORM_DATA_DIR", self.dir.path().join("data"))
            .envs(process.environment.iter().map(|(k, v)| (k, v)))
            .envs(
                self.options
                    .env
                    .iter()
                    .filter(|(name, _, _)| *name == process.base_name)
                    .map(|(_, k, v)| (k, v)),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            // Its own process group, as process-compose does, so a signal
            // reaches the service and not the test.
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", process.name));
        self.children
            .lock()
            .unwrap()
            .insert(process.name.clone(), child);
    }

    fn assert_running(&self, name: &str) {
        let mut children = self.children.lock().unwrap();
        if let Some(child) = children.get_mut(name)
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!(
                "{name} exited during start-up with {status}:\n{}",
                self.log(name)
            );
        }
    }

    /// One readiness probe of `process`, as process-compose would run it.
    pub async fn probe(&self, process: &Process) -> bool {
        let Some(probe) = &process.readiness else {
            return true;
        };
        let timeout = Duration::from_secs(probe.timeout_seconds.max(1));
        if let Some(http) = &probe.http_get {
            let scheme = http.scheme.as_deref().unwrap_or("http");
            let url = format!("{scheme}://{}:{}{}", http.host, http.port, http.path);
            let client = reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("client");
            return matches!(client.get(url).send().await, Ok(r) if r.status() == 200);
        }
        let exec = probe.exec.as_ref().expect("exec or http_get");
        let path = format!(
            "{}:{}",
            crate::binary_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let status = tokio::process::Command::new("bash")
            .arg("-c")
            .arg(&exec.command)
            .current_dir(process_dir(&self.root, process))
            .env("PATH", path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        matches!(tokio::time::timeout(timeout, status).await, Ok(Ok(s)) if s.success())
    }

    /// `http://127.0.0.1:<gateway port>`.
    pub fn gateway(&self) -> String {
        format!("http://127.0.0.1:{}", self.port(8000))
    }

    /// The real port standing in for a default port of the file.
    pub fn port(&self, default: u16) -> u16 {
        self.ports[&default]
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port(6390))
    }

    pub fn processes(&self) -> &[Process] {
        &self.processes
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{name}.log"))
    }

    /// Everything `name` has written to stdout and stderr so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    pub fn all_logs(&self) -> String {
        self.processes
            .iter()
            .map(|p| format!("----- {} -----\n{}", p.name, tail(&self.log(&p.name), 40)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn pid(&self, name: &str) -> u32 {
        self.children
            .lock()
            .unwrap()
            .get(name)
            .unwrap_or_else(|| panic!("{name} not running"))
            .id()
    }

    /// Sends `signal` (`"KILL"`, `"TERM"`) to `name`'s process group.
    pub fn signal(&self, name: &str, signal: &str) {
        let pid = self.pid(name);
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg("--")
            .arg(format!("-{pid}"))
            .status();
    }

    /// Waits for `name` to exit and returns its exit code (None: signal).
    pub fn wait_exit(&self, name: &str, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut children = self.children.lock().unwrap();
                let child = children
                    .get_mut(name)
                    .unwrap_or_else(|| panic!("{name} not running"));
                if let Some(status) = child.try_wait().expect("try_wait") {
                    return status.code();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts `name` again (as `availability: restart` would) and waits for
    /// its readiness probe.
    pub async fn restart(&self, name: &str) {
        let process = self.process(name).clone();
        if let Some(mut old) = self.children.lock().unwrap().remove(name) {
            let _ = old.wait();
        }
        self.spawn(&process);
        let deadline = Instant::now() + BOOT_TIMEOUT;
        while !self.probe(&process).await {
            self.assert_running(name);
            assert!(
                Instant::now() < deadline,
                "{name} not ready after restart:\n{}",
                self.log(name)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resident memory of every process (KiB), read from /proc.
    pub fn resident_memory_kib(&self) -> BTreeMap<String, u64> {
        let children = self.children.lock().unwrap();
        children
            .iter()
            .map(|(name, child)| (name.clone(), tree_rss_kib(child.id())))
            .collect()
    }

    fn stop_all(&self) {
        let mut children = self.children.lock().unwrap();
        // Reverse start order: the gateway first, Redis last.
        for process in self.processes.iter().rev() {
            let Some(child) = children.get_mut(&process.name) else {
                continue;
            };
            if child.try_wait().ok().flatten().is_some() {
                continue;
            }
            let pid = child.id();
            let _ = Command::new("kill")
                .arg(format!("-{}", process.shutdown_signal))
                .arg("--")
                .arg(format!("-{pid}"))
                .status();
            let deadline = Instant::now() + Duration::from_secs(process.shutdown_timeout_secs);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if child.try_wait().ok().flatten().is_none() {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg("--")
                    .arg(format!("-{pid}"))
                    .status();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop_all();
        if std::thread::panicking() {
            eprintln!("stack logs at failure:\n{}", self.all_logs());
        }
    }
}

fn process_dir(root: &Path, process: &Process) -> PathBuf {
    match &process.working_dir {
        Some(dir) => root.join(dir),
        None => root.to_path_buf(),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// VmRSS of `pid` plus its children (bash -c usually exec'd away, but not
/// always).
fn tree_rss_kib(pid: u32) -> u64 {
    let own = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    let children: u64 = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .map(tree_rss_kib)
        .sum();
    own + children
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaps_known_ports_and_refuses_unknown_ones() {
        let ports = BTreeMap::from([(6390, 16390), (8000, 18000)]);
        let remapped = remap_ports(
            "redis-server --port 6390 x:8000 DELAY_MS=2000 8000",
            &ports,
            "t",
        );
        assert_eq!(
            remapped,
            "redis-server --port 16390 x:18000 DELAY_MS=2000 18000"
        );
        assert!(std::panic::catch_unwind(|| remap_ports("127.0.0.1:9999", &ports, "t")).is_err());
        assert_eq!(remap_ports("2000", &ports, "t"), "2000");
        assert_eq!(remap_probe_port("8000", &ports, "t"), "18000");
        assert!(std::panic::catch_unwind(|| remap_probe_port("9999", &ports, "t")).is_err());
    }
}
