//! CPU time per request of each process in a scenario, from
//! /proc/<pid>/stat (user + system), to say where a scenario's time goes.

use std::collections::BTreeMap;
use std::process::Command;

/// CPU seconds `pid` has used so far (0 when it is gone).
fn cpu_seconds(pid: u32, ticks_per_second: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / ticks_per_second
}

/// The processes of one scenario and their CPU time at the start.
pub struct Meter {
    processes: Vec<(String, u32)>,
    start: Vec<f64>,
    ticks_per_second: f64,
}

impl Meter {
    pub fn start(processes: Vec<(String, u32)>) -> Meter {
        let ticks_per_second = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0);
        let start = processes
            .iter()
            .map(|(_, pid)| cpu_seconds(*pid, ticks_per_second))
            .collect();
        Meter {
            processes,
            start,
            ticks_per_second,
        }
    }

    /// Microseconds of CPU per request of each process since `start`.
    pub fn per_request_us(&self, requests: f64) -> BTreeMap<String, f64> {
        self.processes
            .iter()
            .zip(&self.start)
            .map(|((name, pid), start)| {
                let used = cpu_seconds(*pid, self.ticks_per_second) - start;
                (name.clone(), used * 1e6 / requests.max(1.0))
            })
            .collect()
    }
}

/// `name 12 µs, other 3 µs`.
pub fn describe(per_request: &BTreeMap<String, f64>) -> String {
    per_request
        .iter()
        .map(|(name, us)| format!("{name} {us:.0} µs"))
        .collect::<Vec<_>>()
        .join(", ")
}
