//! The real `auth-api` binary on a free port with its own Redis, for the
//! burst tests (`load.rs`, `flood.rs`).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use platform::testing::{ChildGuard, RedisServer, free_port, wait_for_port};

pub const SECRET: &str = "load-test-secret-load-test-secret-0123";
const DEV_USERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/users.toml");

pub struct Service {
    /// Read by the memory test only.
    #[allow(dead_code)]
    pub child: ChildGuard,
    pub url: String,
    _redis: RedisServer,
}

pub fn start(vars: &[(&str, &str)]) -> Service {
    let redis = RedisServer::start();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let child = Command::new(env!("CARGO_BIN_EXE_auth-api"))
        .env_clear()
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .env("AUTH_USERS_FILE", DEV_USERS)
        .env("JWT_SECRET", SECRET)
        .env("REDIS_URL", redis.url())
        .env("AUTH_API_ADDR", addr.to_string())
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn auth-api");
    wait_for_port(addr, Duration::from_secs(10));
    Service {
        child: ChildGuard(child),
        url: format!("http://{addr}/token"),
        _redis: redis,
    }
}

/// One login; a 503 (hashing queue full) is retried after its Retry-After,
/// as a client would.
pub async fn login(client: &reqwest::Client, url: &str, user: &str, password: &str) -> u16 {
    loop {
        let response = client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("username={user}&password={password}"))
            .send()
            .await
            .expect("login request");
        if response.status() != 503 {
            return response.status().as_u16();
        }
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100 * retry_after)).await;
    }
}
