//! What the figures were measured on: the machine, its load before and
//! after, the tool versions and the git revision (the top of latest.json).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::json;

/// Captured when the run starts; completed into the document at its end.
pub struct Provenance {
    revision: String,
    dirty: bool,
    load_before: String,
    started: Instant,
}

impl Provenance {
    pub fn capture(root: &Path) -> Provenance {
        let root = root.display().to_string();
        let revision = first_line("git", &["-C", &root, "rev-parse", "HEAD"]);
        let dirty = Command::new("git")
            .args(["-C", &root])
            .args(["status", "--porcelain", "--untracked-files=no"])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false);
        Provenance {
            revision,
            dirty,
            load_before: loadavg(),
            started: Instant::now(),
        }
    }

    /// latest.json: this, the settings, each scenario's figures and the table.
    pub fn document(
        &self,
        load_after: &str,
        settings: serde_json::Value,
        scenarios: serde_json::Value,
        table: &str,
    ) -> anyhow::Result<serde_json::Value> {
        Ok(json!({
            "revision": self.revision,
            "worktree_dirty": self.dirty,
            "finished_at": time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)?,
            "duration_s": self.started.elapsed().as_secs_f64(),
            "machine": machine(),
            "load_average": {"before": self.load_before, "after": load_after},
            "tools": {
                "wrk": first_line("wrk", &["-v"]),
                "caddy": first_line("caddy", &["version"]),
                "redis": first_line("redis-server", &["--version"]),
            },
            "settings": settings,
            "scenarios": scenarios,
            "table_markdown": table,
        }))
    }

    /// The line printed above the table.
    pub fn headline(&self, cores: &serde_json::Value, load_after: &str) -> String {
        format!(
            "machine: {cores} cores, load average {} → {load_after}; revision {}{}\n",
            self.load_before,
            self.revision,
            if self.dirty {
                " (work tree modified)"
            } else {
                ""
            }
        )
    }
}

/// The first line a program prints (stdout, else stderr); empty if it cannot run.
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

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
