//! The whole platform under the real process-compose, on free ports.
//!
//! [`Stack::boot`] runs `process-compose up` on the repository's own
//! `process-compose.yaml`, exactly as a developer does, with three things
//! changed through process-compose's own mechanisms: every port variable
//! the file reads (`${NAME:-default}`) set to a free port in its
//! environment, a second `-f` file in a temporary directory that adds the
//! test's environment overrides and a log file, and `PLATFORM_DATA_DIR`
//! pointing into that directory. Readiness, pids, exit codes and restarts
//! come from process-compose's REST API; dropping the [`Stack`] runs
//! `process-compose down`.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::Commands;

use crate::supervisor::{self, Api, ProcessState};

/// How long the whole stack may take to become ready.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// Per-test adjustments on top of the file.
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// Extra environment for processes whose file name (`core-api`, not
    /// `core-api-0`) matches: `(process, variable, value)`.
    pub env: Vec<(String, String, String)>,
    /// Run process-compose with its terminal UI inside a tmux session
    /// (named in [`Stack::tmux_session`]) instead of headless.
    pub tui: bool,
}

impl StackOptions {
    pub fn env(mut self, process: &str, variable: &str, value: &str) -> Self {
        self.env
            .push((process.into(), variable.into(), value.into()));
        self
    }

    pub fn tui(mut self) -> Self {
        self.tui = true;
        self
    }
}

/// A port variable of process-compose.yaml: `NAME` with its default. A
/// `*_PORT_PREFIX` variable is the first digits of replica ports: replica
/// N listens on `<prefix>N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortVariable {
    pub name: String,
    pub default: u16,
}

impl PortVariable {
    pub fn is_prefix(&self) -> bool {
        self.name.ends_with("_PORT_PREFIX")
    }
}

/// Every `${NAME:-default}` of the file whose name ends in `_PORT`,
/// `_PORT_NUM` or `_PORT_PREFIX`: the file is the one place the default
/// ports are written.
pub fn port_variables(file: &Path) -> Vec<PortVariable> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut found: Vec<PortVariable> = Vec::new();
    for rest in text.split("${").skip(1) {
        let Some((name, rest)) = rest.split_once(":-") else {
            continue;
        };
        let Some((default, _)) = rest.split_once('}') else {
            continue;
        };
        let is_port = name.ends_with("_PORT")
            || name.ends_with("_PORT_NUM")
            || name.ends_with("_PORT_PREFIX");
        if !is_port || !name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            continue;
        }
        let default: u16 = default
            .parse()
            .unwrap_or_else(|_| panic!("${{{name}:-{default}}}: the default is not a port"));
        let variable = PortVariable {
            name: name.to_owned(),
            default,
        };
        match found.iter().find(|v| v.name == variable.name) {
            Some(seen) => assert_eq!(
                seen.default,
                variable.default,
                "{name} has two defaults in {}",
                file.display()
            ),
            None => found.push(variable),
        }
    }
    found
}

pub struct Stack {
    dir: tempfile::TempDir,
    /// Port variable → the value this stack runs with.
    ports: BTreeMap<String, u16>,
    variables: Vec<PortVariable>,
    api: Api,
    supervisor: Mutex<Option<Child>>,
    tmux_session: Option<String>,
    /// Each process' pid when the test last signalled it.
    signalled: Mutex<BTreeMap<String, u32>>,
    names: Vec<String>,
    /// From `process-compose up` to every process Ready.
    pub boot_time: Duration,
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
        supervisor::caddy();
        let process_compose = supervisor::process_compose();
        if options.tui {
            platform::testing::require_program("tmux", "`apt-get install tmux`");
        }
        // A free port can be taken by a parallel test between choosing it
        // and the process binding it; such a boot is retried on new ports.
        let mut attempt = 1;
        loop {
            let options = options.clone();
            let process_compose = process_compose.clone();
            let boot =
                tokio::task::spawn_blocking(move || Self::try_boot(&process_compose, options));
            match boot.await.expect("boot thread") {
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
    fn try_boot(process_compose: &Path, options: StackOptions) -> Result<Stack, String> {
        let root = crate::repo_root();
        let file = root.join("process-compose.yaml");
        let dir = tempfile::tempdir().expect("stack temp dir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
        let variables = port_variables(&file);
        let ports: BTreeMap<String, u16> = variables
            .iter()
            .map(|v| {
                let port = if v.is_prefix() {
                    free_prefix()
                } else {
                    platform::testing::free_port()
                };
                (v.name.clone(), port)
            })
            .collect();
        let api = Api {
            port: ports["PC_PORT_NUM"],
        };

        let override_file = dir.path().join("test.override.yaml");
        std::fs::write(&override_file, override_yaml(dir.path(), &options))
            .expect("write override");
        // Both files named, so process-compose does not also pick up
        // process-compose.override.yaml (the dev-loop watcher).
        let files = [file.clone(), override_file];

        let mut environment: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                format!(
                    "{}:{}",
                    crate::binary_dir().display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            ),
            ("HOME".into(), dir.path().display().to_string()),
            (
                "PLATFORM_DATA_DIR".into(),
                dir.path().join("data").display().to_string(),
            ),
            (
                "PC_LOG_FILE".into(),
                dir.path()
                    .join("logs/process-compose.log")
                    .display()
                    .to_string(),
            ),
        ];
        environment.extend(ports.iter().map(|(k, v)| (k.clone(), v.to_string())));
        for passed in ["CARGO_TARGET_DIR"] {
            if let Ok(value) = std::env::var(passed) {
                environment.push((passed.into(), value));
            }
        }

        let started = Instant::now();
        let mut args: Vec<String> = vec!["up".into()];
        for file in &files {
            args.push("-f".into());
            args.push(file.display().to_string());
        }
        let (supervisor, tmux_session) = if options.tui {
            let session = format!("stack-{}", api.port);
            // The terminal tmux gives its panes (CI has no TERM of its own).
            let mut command = format!(
                "cd {} && exec env -i TERM=screen",
                shell_quote(&root.display().to_string())
            );
            for (k, v) in &environment {
                command.push_str(&format!(" {k}={}", shell_quote(v)));
            }
            command.push_str(&format!(
                " {}",
                shell_quote(&process_compose.display().to_string())
            ));
            for arg in &args {
                command.push_str(&format!(" {}", shell_quote(arg)));
            }
            let status = Command::new("tmux")
                .args(["new-session", "-d", "-x", "220", "-y", "50", "-s", &session])
                .arg(command)
                .status()
                .expect("tmux");
            assert!(status.success(), "tmux new-session failed");
            (None, Some(session))
        } else {
            let output = File::create(dir.path().join("logs/process-compose.out")).expect("out");
            let child = Command::new(process_compose)
                .args(&args)
                .arg("--tui=false")
                .current_dir(&root)
                .env_clear()
                .envs(environment.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(output.try_clone().expect("clone"))
                .stderr(output)
                // Its own process group: a signal a test sends to a
                // service never reaches the test or the supervisor.
                .process_group(0)
                .spawn()
                .expect("spawn process-compose");
            (Some(child), None)
        };

        let mut stack = Stack {
            dir,
            ports,
            variables,
            api,
            supervisor: Mutex::new(supervisor),
            tmux_session,
            signalled: Mutex::new(BTreeMap::new()),
            names: Vec::new(),
            boot_time: Duration::ZERO,
        };
        let states = stack.wait_all_up()?;
        stack.boot_time = started.elapsed();
        stack.names = states.into_iter().map(|s| s.name).collect();
        stack.names.sort();
        Ok(stack)
    }

    /// Polls the API until every process is up; `Err` on a port collision.
    fn wait_all_up(&self) -> Result<Vec<ProcessState>, String> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Some(status) = self.supervisor_exit() {
                let out = self.supervisor_output();
                if out.contains("address already in use") {
                    return Err(format!(
                        "process-compose could not bind its API port: {out}"
                    ));
                }
                panic!(
                    "process-compose exited with {status} during start-up:\n{out}\n{}",
                    self.all_logs()
                );
            }
            if let Ok(states) = self.api.processes()
                && !states.is_empty()
            {
                for state in &states {
                    let log = self.log(&state.name);
                    if log.contains("address already in use")
                        || log.contains("Address already in use")
                    {
                        return Err(format!("{} could not bind its port", state.name));
                    }
                    if state.has_ended() || state.restarts > 0 {
                        panic!(
                            "{} {} (exit {}, {} restarts) during start-up:\n{}",
                            state.name,
                            state.status,
                            state.exit_code,
                            state.restarts,
                            self.all_logs()
                        );
                    }
                }
                if states.iter().all(ProcessState::is_up) {
                    return Ok(states);
                }
                if Instant::now() > deadline {
                    panic!(
                        "stack not ready within {BOOT_TIMEOUT:?}: {states:#?}\n{}",
                        self.all_logs()
                    );
                }
            } else if Instant::now() > deadline {
                panic!(
                    "process-compose API not answering within {BOOT_TIMEOUT:?}:\n{}",
                    self.supervisor_output()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn supervisor_exit(&self) -> Option<ExitStatus> {
        let mut supervisor = self.supervisor.lock().unwrap();
        supervisor.as_mut()?.try_wait().ok().flatten()
    }

    /// What process-compose itself printed (headless) and logged.
    pub fn supervisor_output(&self) -> String {
        let read = |name: &str| {
            std::fs::read_to_string(self.dir.path().join("logs").join(name)).unwrap_or_default()
        };
        format!(
            "{}{}",
            read("process-compose.out"),
            tail(&read("process-compose.log"), 40)
        )
    }

    /// process-compose's own log (JSON lines: starts, exits, restarts).
    pub fn supervisor_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/process-compose.log"))
            .unwrap_or_default()
    }

    /// The REST API of this stack's process-compose.
    pub fn api(&self) -> Api {
        self.api
    }

    /// The tmux session the TUI runs in ([`StackOptions::tui`]).
    pub fn tmux_session(&self) -> Option<&str> {
        self.tmux_session.as_deref()
    }

    /// `http://127.0.0.1:<gateway port>`.
    pub fn gateway(&self) -> String {
        format!("http://127.0.0.1:{}", self.port(8000))
    }

    /// The port this stack uses where the file's default is `default`
    /// (`8000`, `7101`, replica ports such as `7201`).
    pub fn port(&self, default: u16) -> u16 {
        for variable in &self.variables {
            let actual = self.ports[&variable.name];
            if variable.is_prefix() {
                if default / 10 == variable.default {
                    return actual * 10 + default % 10;
                }
            } else if variable.default == default {
                return actual;
            }
        }
        panic!("no port variable of process-compose.yaml defaults to {default}")
    }

    /// The value of one port variable of the file (`PC_PORT_NUM`, …).
    pub fn port_variable(&self, name: &str) -> u16 {
        self.ports[name]
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port(6390))
    }

    /// Every process name (replicas as `core-api-0`, …), sorted.
    pub fn process_names(&self) -> &[String] {
        &self.names
    }

    pub fn state(&self, name: &str) -> ProcessState {
        self.api.process(name)
    }

    /// Everything `name` has written to stdout and stderr so far, one line
    /// per line it wrote (from the log file process-compose keeps).
    pub fn log(&self, name: &str) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("logs/processes.log")).unwrap_or_default();
        let mut out = String::new();
        for line in text.lines() {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if entry["process"] == name {
                out.push_str(entry["message"].as_str().unwrap_or_default());
                out.push('\n');
            }
        }
        out
    }

    pub fn all_logs(&self) -> String {
        let mut names: Vec<String> = self.names.clone();
        if names.is_empty() {
            names = self
                .api
                .processes()
                .map(|s| s.into_iter().map(|s| s.name).collect())
                .unwrap_or_default();
        }
        names
            .iter()
            .map(|name| format!("----- {name} -----\n{}", tail(&self.log(name), 40)))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n----- process-compose -----\n"
            + &self.supervisor_output()
    }

    pub fn pid(&self, name: &str) -> u32 {
        let pid = self.api.process(name).pid;
        assert!(pid != 0, "{name} is not running");
        pid
    }

    /// Sends `signal` (`"KILL"`, `"TERM"`, `"STOP"`) to `name`.
    pub fn signal(&self, name: &str, signal: &str) {
        let pid = self.pid(name);
        self.signalled.lock().unwrap().insert(name.to_owned(), pid);
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid} ({name}) failed");
    }

    /// Waits until the process the test last signalled has exited, as
    /// process-compose saw it, and returns its exit code (None: killed by
    /// a signal).
    pub fn wait_exit(&self, name: &str, timeout: Duration) -> Option<i32> {
        let old = self.signalled.lock().unwrap().get(name).copied();
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.api.process(name);
            let exited = match old {
                Some(old) => state.pid != old || state.status != "Running",
                None => state.status != "Running",
            };
            if exited {
                return (state.exit_code != -1).then_some(state.exit_code);
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not exit within {timeout:?}: {state:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Brings `name` back after the test stopped or killed it: a process
    /// that process-compose restarts by itself (`availability: restart:
    /// on_failure` after a crash) is waited for; one that ended cleanly is
    /// started through the API. Returns once it is up with a new pid.
    pub async fn restart(&self, name: &str) {
        let old = self.signalled.lock().unwrap().get(name).copied();
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut started = false;
        loop {
            let state = self.api.process(name);
            if Some(state.pid) != old && state.is_up() {
                return;
            }
            if state.has_ended() && !started {
                self.api.start(name);
                started = true;
            }
            assert!(
                Instant::now() < deadline,
                "{name} not up again: {state:?}\n{}",
                self.log(name)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resident memory of every process (KiB), read from /proc.
    pub fn resident_memory_kib(&self) -> BTreeMap<String, u64> {
        self.api
            .processes()
            .expect("process-compose API")
            .into_iter()
            .filter(|s| s.pid != 0)
            .map(|s| (s.name, tree_rss_kib(s.pid)))
            .collect()
    }

    /// `process-compose down`: the command a developer types. Returns the
    /// exit status of the supervisor (`process-compose up`) once it has
    /// stopped everything and exited. (The `down` client's own status is
    /// not a verdict: process-compose answers it only once its handler
    /// returns, after the shutdown, and may exit first.)
    pub fn down(&self) -> Option<ExitStatus> {
        let _ = Command::new(supervisor::process_compose())
            .arg("down")
            .env("PC_PORT_NUM", self.api.port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("process-compose down");
        self.wait_supervisor(Duration::from_secs(60))
    }

    /// Waits for process-compose to exit (headless: its exit status).
    fn wait_supervisor(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.supervisor_exit() {
                return Some(status);
            }
            if self.tmux_session.is_some() && self.api.call("GET", "/live").is_err() {
                return None;
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Stack {
    /// Every key in the stack's Redis that [`platform::keyspace`] does not
    /// own, and the patterns of those it does; empty when Redis is not
    /// reachable (a test that stopped it).
    pub fn audit_keyspace(&self) -> (Vec<String>, std::collections::BTreeSet<&'static str>) {
        let mut unowned = Vec::new();
        let mut patterns = std::collections::BTreeSet::new();
        let Ok(client) = redis::Client::open(self.redis_url()) else {
            return (unowned, patterns);
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
            return (unowned, patterns);
        };
        let Ok(keys) = conn.scan::<String>() else {
            return (unowned, patterns);
        };
        for key in keys.filter_map(Result::ok) {
            match platform::keyspace::owner(&key) {
                Some(pattern) => {
                    patterns.insert(pattern);
                }
                None => unowned.push(key),
            }
        }
        (unowned, patterns)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("stack logs at failure:\n{}", self.all_logs());
        }
        // Every stack of the suite checks that nothing wrote a key the
        // keyspace module does not own.
        let (unowned, _) = self.audit_keyspace();
        let unowned_message = (!unowned.is_empty())
            .then(|| format!("keys not owned by platform::keyspace: {unowned:?}"));
        let pids: Vec<u32> = self
            .api
            .processes()
            .map(|states| {
                states
                    .into_iter()
                    .map(|s| s.pid)
                    .filter(|&p| p != 0)
                    .collect()
            })
            .unwrap_or_default();
        if self.api.call("GET", "/live").is_ok() {
            let _ = self.api.call("POST", "/project/stop");
        }
        if self.wait_supervisor(Duration::from_secs(60)).is_none()
            && let Some(child) = self.supervisor.lock().unwrap().as_mut()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Nothing outlives the test, even if process-compose could not stop it.
        for pid in pids {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(session) = &self.tmux_session {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", session])
                .stderr(Stdio::null())
                .status();
        }
        if let Some(message) = unowned_message
            && !std::thread::panicking()
        {
            panic!("{message}");
        }
    }
}

/// The second `-f` file: a log file for every process' output, and the
/// test's environment overrides (process-compose merges `environment` by
/// variable name).
fn override_yaml(dir: &Path, options: &StackOptions) -> String {
    let mut yaml = format!(
        "version: \"0.5\"\nis_strict: true\nlog_location: {}\nlog_configuration:\n  flush_each_line: true\n",
        serde_json::to_string(&dir.join("logs/processes.log").display().to_string()).unwrap()
    );
    let mut by_process: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (process, variable, value) in &options.env {
        // process-compose's merge splits each entry at every `=`.
        assert!(
            !value.contains('='),
            "{variable}: an override value cannot contain '='"
        );
        by_process
            .entry(process)
            .or_default()
            .push(format!("{variable}={value}"));
    }
    if !by_process.is_empty() {
        yaml.push_str("processes:\n");
        for (process, entries) in by_process {
            yaml.push_str(&format!("  {process}:\n    environment:\n"));
            for entry in entries {
                yaml.push_str(&format!(
                    "      - {}\n",
                    serde_json::to_string(&entry).unwrap()
                ));
            }
        }
    }
    yaml
}

/// A port prefix P whose replica ports P0 and P1 are both free right now.
pub fn free_prefix() -> u16 {
    for _ in 0..1000 {
        let prefix = platform::testing::free_port() / 10;
        if (0..2).all(|n| std::net::TcpListener::bind(("127.0.0.1", prefix * 10 + n)).is_ok()) {
            return prefix;
        }
    }
    panic!("no free pair of replica ports")
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// VmRSS of `pid` plus its children.
fn tree_rss_kib(pid: u32) -> u64 {
    let own = platform::testing::resident_kib(pid).unwrap_or(0);
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
    fn port_variables_come_from_the_file_with_their_defaults() {
        let variables = port_variables(&crate::repo_root().join("process-compose.yaml"));
        let names: Vec<&str> = variables.iter().map(|v| v.name.as_str()).collect();
        for expected in [
            "PLATFORM_PORT",
            "REDIS_PORT",
            "CORE_API_PORT_PREFIX",
            "PC_PORT_NUM",
        ] {
            assert!(names.contains(&expected), "{expected} not in {names:?}");
        }
        let core = variables
            .iter()
            .find(|v| v.name == "CORE_API_PORT_PREFIX")
            .unwrap();
        assert!(core.is_prefix());
        assert_eq!(core.default, 720);
    }

    #[test]
    fn overrides_are_merged_by_variable() {
        let yaml = override_yaml(
            Path::new("/tmp/x"),
            &StackOptions::default().env("psp-a", "PSP_LATENCY_MS", "50"),
        );
        assert!(
            yaml.contains("  psp-a:\n    environment:\n      - \"PSP_LATENCY_MS=50\"\n"),
            "{yaml}"
        );
        assert!(
            yaml.contains("log_location: \"/tmp/x/logs/processes.log\""),
            "{yaml}"
        );
    }
}
