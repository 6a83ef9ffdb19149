//! Start-up figures: time from process start to `READY=1` and idle resident
//! memory of each service binary, then the whole stack booted from
//! process-compose.yaml (start → every readiness probe green, and idle
//! memory of every process, Redis and Caddy included).
//!
//!     cargo build --release --workspace --bins
//!     cargo run --release -p e2e --example startup
//!
//! Prints a Markdown table; medians over several runs.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::stack::Stack;
use platform::testing::{ChildGuard, NotifySocket, RedisServer, free_port};

const RUNS: usize = 10;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn service_env(name: &str, redis: &str, port: u16) -> Vec<(String, String)> {
    let addr = format!("127.0.0.1:{port}");
    let mut env = vec![
        ("REDIS_URL".to_owned(), redis.to_owned()),
        ("LOG_FORMAT".into(), "json".into()),
    ];
    let root = e2e::repo_root();
    match name {
        "auth-api" => {
            env.push(("AUTH_API_ADDR".into(), addr));
            env.push((
                "JWT_SECRET".into(),
                "figures-secret-figures-secret-0123456789".into(),
            ));
            env.push((
                "AUTH_USERS_FILE".into(),
                root.join("config/users.toml").display().to_string(),
            ));
        }
        "core-api" => {
            env.push(("CORE_API_ADDR".into(), addr));
            env.push((
                "JWT_SECRET".into(),
                "figures-secret-figures-secret-0123456789".into(),
            ));
        }
        "psp-connector" => env.push(("PSP_CONNECTOR_ADDR".into(), addr)),
        "psp-sandbox" => env.push(("PSP_SANDBOX_ADDR".into(), addr)),
        _ => unreachable!(),
    }
    env
}

#[tokio::main]
async fn main() {
    let bin_dir = e2e::binary_dir();
    let redis = RedisServer::start();
    println!("| service | start → READY=1 (median of {RUNS}) | idle RSS after 1 s |");
    println!("|---|---|---|");
    for name in ["auth-api", "core-api", "psp-connector", "psp-sandbox"] {
        let binary = bin_dir.join(name);
        assert!(
            binary.is_file(),
            "{} missing: run `cargo build --release --workspace --bins`",
            binary.display()
        );
        let mut ready_ms = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..RUNS {
            let notify = NotifySocket::new();
            let started = Instant::now();
            let mut child = ChildGuard(
                Command::new(&binary)
                    .env_clear()
                    .envs(service_env(name, &redis.url(), free_port()))
                    .env("NOTIFY_SOCKET", notify.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            notify.wait_for("READY=1", Duration::from_secs(10));
            ready_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            std::thread::sleep(Duration::from_secs(1));
            rss.push(rss_kib(child.pid()) as f64 / 1024.0);
            child.signal("TERM");
            child.wait_timeout(Duration::from_secs(10));
        }
        println!(
            "| {name} | {:.1} ms | {:.1} MiB |",
            median(ready_ms),
            median(rss)
        );
    }
    drop(redis);

    let mut boots = Vec::new();
    let mut memory = Vec::new();
    for _ in 0..5 {
        let stack = Stack::boot().await;
        boots.push(stack.boot_time.as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        memory.push(stack.resident_memory_kib());
    }
    println!();
    println!("| whole stack (process-compose.yaml, 8 processes) | median of 5 |");
    println!("|---|---|");
    println!(
        "| start → every readiness probe green | {:.0} ms |",
        median(boots)
    );
    let last = memory.last().unwrap();
    let total: u64 = last.values().sum();
    println!(
        "| idle resident memory, all processes | {:.1} MiB |",
        total as f64 / 1024.0
    );
    for (name, kib) in last {
        println!("| &nbsp; {name} | {:.1} MiB |", *kib as f64 / 1024.0);
    }
}
