//! The real core-api binary at a low file-descriptor limit (issue 21,
//! point 3): idle and slowloris connections cannot starve it.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use platform::testing::{ChildGuard, RedisServer, free_port, wait_for_port};

const SECRET: &str = "connections-test-secret-0123456789abcdef";

/// core-api started by a shell that first sets the descriptor limit with
/// `ulimit` (e.g. `-n 256`: soft and hard, `-Sn 256`: soft only).
fn core_api_with_ulimit(ulimit: &str, redis_url: &str, addr: SocketAddr) -> ChildGuard {
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit {ulimit} && exec \"$0\""))
        .arg(env!("CARGO_BIN_EXE_core-api"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CORE_API_ADDR", addr.to_string())
        .env("REDIS_URL", redis_url)
        .env("JWT_SECRET", SECRET)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn core-api");
    ChildGuard(child)
}

/// 400 idle connections against a core-api limited to 256 descriptors:
/// before, accept failed with `Too many open files` and `/readyz` went
/// unanswered until the idle clients left; now the cap (below the limit)
/// closes the longest-idle connection for each newcomer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_with_more_idle_connections_than_descriptors() {
    let redis = RedisServer::start();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _service = core_api_with_ulimit("-n 256", &redis.url(), addr);
    wait_for_port(addr, Duration::from_secs(10));

    let connect = || async {
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .expect("connected within 2 s")
            .expect("connect")
    };
    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(connect().await);
    }
    // Slowloris too: heads that never end.
    for _ in 0..100 {
        use tokio::io::AsyncWriteExt;
        let mut stream = connect().await;
        let _ = stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await;
        idle.push(stream);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    for _ in 0..5 {
        let response = client
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .expect("/readyz answers over 500 idle connections");
        assert_eq!(response.status(), 200);
    }
    // A real request too, answered (401 without a token) rather than lost.
    let response = client
        .get(format!("http://{addr}/transactions"))
        .send()
        .await
        .expect("a request is answered");
    assert_eq!(response.status(), 401);
    drop(idle);
}

fn limits_of(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("proc limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("open files line")
        .to_owned();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

/// A soft descriptor limit below the hard one is raised to it at start.
#[tokio::test]
async fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
    let redis = RedisServer::start();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let service = core_api_with_ulimit("-Sn 128", &redis.url(), addr);
    wait_for_port(addr, Duration::from_secs(10));
    let (soft, hard) = limits_of(service.pid());
    assert_eq!(soft, hard, "soft limit raised to the hard one");
    assert_ne!(soft, "128");
}
