//! The real `auth-api` binary: configuration errors and token lifetime.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use platform::auth::{JwtSecret, TokenError, TokenVerifier};
use platform::testing::{ChildGuard, RedisServer, free_port, wait_for_port};

const BINARY: &str = env!("CARGO_BIN_EXE_auth-api");
const SECRET: &str = "binary-test-secret-binary-test-secret";
const DEV_USERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/users.toml");

fn command(vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("LOG_FORMAT", "json")
        .env("AUTH_USERS_FILE", DEV_USERS)
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .envs(vars.iter().copied())
        .stdin(Stdio::null());
    command
}

/// Runs the binary expecting a config error; returns its stderr.
fn config_error(vars: &[(&str, &str)]) -> String {
    let mut child = command(vars)
        .env("AUTH_API_ADDR", format!("127.0.0.1:{}", free_port()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn auth-api");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("auth-api kept running with {vars:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{vars:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line for {vars:?}: {stderr}");
    stderr
}

#[test]
fn a_short_jwt_secret_is_a_one_line_config_error() {
    let stderr = config_error(&[("JWT_SECRET", "too-short")]);
    assert!(stderr.starts_with("config error: JWT_SECRET: "), "{stderr}");
    assert!(
        !stderr.contains("too-short"),
        "the secret is not echoed: {stderr}"
    );
    let stderr = config_error(&[]);
    assert!(stderr.starts_with("config error: JWT_SECRET: "), "{stderr}");
}

#[test]
fn a_bad_token_ttl_is_a_config_error() {
    for ttl in ["0", "-1", "soon", "86400"] {
        let stderr = config_error(&[("JWT_SECRET", SECRET), ("AUTH_TOKEN_TTL_SECS", ttl)]);
        assert!(
            stderr.starts_with("config error: AUTH_TOKEN_TTL_SECS: "),
            "{stderr}"
        );
    }
}

#[test]
fn a_bad_users_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let garbage = dir.path().join("garbage.toml");
    std::fs::write(&garbage, "[[users]\nusername = ").unwrap();
    let bcrypt = dir.path().join("bcrypt.toml");
    std::fs::write(
        &bcrypt,
        "[[users]]\nusername = \"eve\"\nmerchant_id = \"m\"\npassword_hash = \
         \"$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW\"\n",
    )
    .unwrap();
    for (file, problem) in [
        (&missing, "cannot read"),
        (&garbage, "not valid"),
        (&bcrypt, "password_hash"),
    ] {
        let stderr = config_error(&[
            ("JWT_SECRET", SECRET),
            ("AUTH_USERS_FILE", file.to_str().unwrap()),
        ]);
        assert!(
            stderr.starts_with("config error: AUTH_USERS_FILE: "),
            "{stderr}"
        );
        assert!(stderr.contains(problem), "{stderr}");
    }
}

#[tokio::test]
async fn a_one_second_token_is_accepted_then_expires() {
    let redis = RedisServer::start();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _service = ChildGuard(
        command(&[
            ("JWT_SECRET", SECRET),
            ("AUTH_TOKEN_TTL_SECS", "1"),
            ("REDIS_URL", &redis.url()),
            ("AUTH_API_ADDR", &addr.to_string()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn auth-api"),
    );
    wait_for_port(addr, Duration::from_secs(10));

    let response = reqwest::Client::new()
        .post(format!("http://{addr}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=alice&password=password")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 1);
    let token = body["access_token"].as_str().unwrap();

    let verifier = TokenVerifier::new(&JwtSecret::new(SECRET).unwrap());
    let claims = verifier.verify(token).expect("accepted while fresh");
    assert_eq!(claims.exp - claims.iat, 1);

    // `exp` has one-second resolution and no leeway: it lapses within 2 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match verifier.verify(token) {
            Err(TokenError::Expired) => break,
            Ok(_) => assert!(Instant::now() < deadline, "still accepted after 5 s"),
            Err(other) => panic!("expected expiry, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
