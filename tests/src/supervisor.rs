//! The real process-compose: the pinned version's binary, and a small
//! client for the REST API it serves while it supervises a stack.
//!
//! The API is plain HTTP/1.1 on loopback; the harness calls it from
//! synchronous code (drop, waits run under `block_in_place`) as well as
//! from async tests, so this is a blocking client on `std::net`, one
//! connection per call.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

/// `KEY=VALUE` from the repository's `tools.versions`.
pub fn tool_version(key: &str) -> String {
    let text =
        std::fs::read_to_string(crate::repo_root().join("tools.versions")).expect("tools.versions");
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("tools.versions has no {key}"))
        .trim()
        .to_owned()
}

/// `program` on PATH at a version of `tools.versions` (the one we build,
/// or the one the pinned nixpkgs packages, which `nix flake check` runs),
/// or a failure saying how to install it: the tests run what `nix run` runs.
pub fn require_pinned(program: &str, version_keys: &[&str], version_output: &[&str]) -> PathBuf {
    const HOW: &str = "`scripts/install-tools` builds the pinned version (then put the \
                       directory it prints on PATH), or `nix develop`";
    let path = platform::testing::require_program(program, HOW);
    let wanted: Vec<String> = version_keys.iter().map(|key| tool_version(key)).collect();
    let output = Command::new(&path)
        .args(version_output)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let matches = said
        .split(|c: char| c.is_whitespace())
        .any(|word| wanted.iter().any(|w| word.trim_start_matches('v') == w));
    assert!(
        matches,
        "{} is not {program} {} (tools.versions) but says {:?}; {HOW}",
        path.display(),
        wanted.join(" or "),
        said.trim()
    );
    path
}

/// process-compose at the pinned version.
pub fn process_compose() -> PathBuf {
    require_pinned(
        "process-compose",
        &["PROCESS_COMPOSE_VERSION", "PROCESS_COMPOSE_NIXPKGS_VERSION"],
        &["version"],
    )
}

/// Caddy at the pinned version.
pub fn caddy() -> PathBuf {
    require_pinned("caddy", &["CADDY_VERSION"], &["version"])
}

/// One process as `GET /processes` reports it (process-compose's
/// `ProcessState`; only the fields the suite reads).
#[derive(Debug, Clone, Deserialize)]
pub struct ProcessState {
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    pub status: String,
    /// `Ready`, `Not Ready`, or `-` for a process without a probe.
    pub is_ready: String,
    #[serde(default)]
    pub has_ready_probe: bool,
    pub restarts: u32,
    pub exit_code: i32,
    pub pid: u32,
}

impl ProcessState {
    /// Running and, if it has a readiness probe, passing it.
    pub fn is_up(&self) -> bool {
        self.status == "Running" && (!self.has_ready_probe || self.is_ready == "Ready")
    }

    /// Ended for good: process-compose will not start it again by itself.
    pub fn has_ended(&self) -> bool {
        matches!(self.status.as_str(), "Completed" | "Error" | "Skipped")
    }
}

#[derive(Deserialize)]
struct States {
    data: Vec<ProcessState>,
}

/// The REST API of one running process-compose.
#[derive(Debug, Clone, Copy)]
pub struct Api {
    pub port: u16,
}

/// A response: status code and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Api {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One request; `Err` when nothing answers.
    pub fn call(&self, method: &str, path: &str) -> std::io::Result<Reply> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        // One write: `write!` sends each piece of the format separately,
        // and a server that reads once (the dev-reload test's scratch
        // binary) may answer and close after the first piece, resetting the
        // connection before its answer is read.
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Ok(Reply { status, body })
    }

    fn call_ok(&self, method: &str, path: &str) -> Reply {
        let reply = self
            .call(method, path)
            .unwrap_or_else(|e| panic!("process-compose API {method} {path}: {e}"));
        assert!(
            (200..300).contains(&reply.status),
            "process-compose API {method} {path}: {} {}",
            reply.status,
            reply.body
        );
        reply
    }

    pub fn processes(&self) -> std::io::Result<Vec<ProcessState>> {
        let reply = self.call("GET", "/processes")?;
        serde_json::from_str::<States>(&reply.body)
            .map(|states| states.data)
            .map_err(|e| std::io::Error::other(format!("{e}: {}", reply.body)))
    }

    pub fn process(&self, name: &str) -> ProcessState {
        let reply = self.call_ok("GET", &format!("/process/{name}"));
        serde_json::from_str(&reply.body)
            .unwrap_or_else(|e| panic!("process {name}: {e}: {}", reply.body))
    }

    pub fn start(&self, name: &str) {
        self.call_ok("POST", &format!("/process/start/{name}"));
    }

    pub fn restart(&self, name: &str) {
        self.call_ok("POST", &format!("/process/restart/{name}"));
    }

    pub fn stop(&self, name: &str) {
        self.call_ok("PATCH", &format!("/process/stop/{name}"));
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
