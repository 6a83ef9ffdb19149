//! Process lifecycle of a real service binary (docs/architecture.md "Lifecycle"), with a real
//! Redis and a real sd_notify socket: configuration errors, `READY=1` only
//! once the port accepts, `WATCHDOG=1` only while Redis answers,
//! `STOPPING=1` and exit 0 on SIGTERM.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use platform::testing::{ChildGuard, NotifySocket, RedisServer, free_port, wait_for_port};

const SECRET: &str = "lifecycle-test-secret-0123456789abcdef";

fn core_api(redis_url: &str, addr: SocketAddr) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_core-api"));
    command
        .env_clear()
        .env("CORE_API_ADDR", addr.to_string())
        .env("REDIS_URL", redis_url)
        .env("JWT_SECRET", SECRET)
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn local(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

#[test]
fn bad_configuration_stops_the_process_with_one_line() {
    let cases = [
        (
            "JWT_SECRET",
            "short",
            "config error: JWT_SECRET: must be at least 32 bytes",
        ),
        (
            "CORE_API_ADDR",
            "not-an-address",
            "config error: CORE_API_ADDR:",
        ),
        ("REDIS_URL", "http://nope", "config error: REDIS_URL:"),
        (
            "SHUTDOWN_TIMEOUT_SECS",
            "soon",
            "config error: SHUTDOWN_TIMEOUT_SECS:",
        ),
        ("LOG_FORMAT", "xml", "config error: LOG_FORMAT:"),
    ];
    for (variable, value, expected) in cases {
        let output = core_api("redis://127.0.0.1:1", local(free_port()))
            .env(variable, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{variable}={value}: {stderr}"
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "{variable}={value}: one line expected, got {stderr}"
        );
        assert!(stderr.starts_with(expected), "{variable}={value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    let output = core_api("redis://127.0.0.1:1", local(free_port()))
        .env_remove("JWT_SECRET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr.trim(),
        "config error: JWT_SECRET: is required but not set"
    );
}

#[test]
fn ready_after_listening_then_stopping_and_exit_zero_on_sigterm() {
    let redis = RedisServer::start();
    let notify = NotifySocket::new();
    let addr = local(free_port());
    let mut child = ChildGuard(
        core_api(&redis.url(), addr)
            .env("NOTIFY_SOCKET", notify.path())
            .spawn()
            .unwrap(),
    );

    notify.wait_for("READY=1", Duration::from_secs(10));
    // READY=1 promises the port already accepts connections.
    TcpStream::connect_timeout(&addr, Duration::from_millis(200))
        .expect("port accepts once READY=1 arrived");

    child.signal("TERM");
    notify.wait_for("STOPPING=1", Duration::from_secs(5));
    let status = child.wait_timeout(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigint_also_stops_cleanly() {
    let redis = RedisServer::start();
    let addr = local(free_port());
    let mut child = ChildGuard(core_api(&redis.url(), addr).spawn().unwrap());
    wait_for_port(addr, Duration::from_secs(10));
    child.signal("INT");
    assert_eq!(child.wait_timeout(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn not_ready_while_redis_is_down_at_start() {
    // Redis is not running yet: the service listens (liveness) but does not
    // announce readiness until Redis answers.
    let redis_port = free_port();
    let notify = NotifySocket::new();
    let addr = local(free_port());
    let _child = ChildGuard(
        core_api(&format!("redis://127.0.0.1:{redis_port}"), addr)
            .env("NOTIFY_SOCKET", notify.path())
            .spawn()
            .unwrap(),
    );
    wait_for_port(addr, Duration::from_secs(10));
    let early = notify.drain(Duration::from_millis(500));
    assert!(
        !early.iter().any(|m| m.contains("READY=1")),
        "READY=1 without Redis: {early:?}"
    );
}

#[test]
fn watchdog_is_petted_only_while_redis_answers() {
    let mut redis = RedisServer::start();
    let notify = NotifySocket::new();
    let addr = local(free_port());
    let _child = ChildGuard(
        core_api(&redis.url(), addr)
            .env("NOTIFY_SOCKET", notify.path())
            .env("WATCHDOG_USEC", "200000")
            .spawn()
            .unwrap(),
    );
    notify.wait_for("READY=1", Duration::from_secs(10));

    let healthy = notify.drain(Duration::from_millis(800));
    let pings = healthy.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(
        pings >= 3,
        "expected a ping every 100 ms while healthy, got {healthy:?}"
    );

    redis.stop();
    // Let the in-flight interval pass, then expect silence.
    notify.drain(Duration::from_millis(300));
    let down = notify.drain(Duration::from_millis(800));
    assert!(
        !down.iter().any(|m| m.contains("WATCHDOG=1")),
        "pinged while Redis was down: {down:?}"
    );

    redis.restart();
    notify.wait_for("WATCHDOG=1", Duration::from_secs(10));
}
