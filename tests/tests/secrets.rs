//! Secrets: the development `JWT_SECRET` of process-compose.yaml is refused
//! outside development (`PLATFORM_ENV` other than `development`), by the
//! real binaries, with the one-line config error and exit code 2; and a
//! full merchant session — every test card, failed logins, a replay —
//! leaves no card number, password or token in any process log.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::client::{self, http_client, login, payment, test_cards};
use e2e::stack::{Stack, StackOptions};
use serde_json::json;

/// The dev secret, as the file sets it.
fn dev_secret() -> String {
    let file =
        e2e::compose::ComposeFile::load(&e2e::repo_root().join("process-compose.yaml"), &|_| None);
    file.processes()
        .iter()
        .flat_map(|p| p.environment.iter())
        .find(|(name, _)| name == "JWT_SECRET")
        .map(|(_, value)| value.clone())
        .expect("process-compose.yaml sets JWT_SECRET")
}

/// Runs `binary` with `env`; its exit code and stderr if it exits within
/// `wait`, None if it is still running then (and it is killed). Config
/// errors stop a service before any I/O, within milliseconds.
fn run(binary: &str, env: &[(&str, &str)]) -> Option<(Option<i32>, String)> {
    run_for(binary, env, Duration::from_secs(5))
}

/// True if `binary` is still running after a second.
fn starts(binary: &str, env: &[(&str, &str)]) -> bool {
    run_for(binary, env, Duration::from_secs(1)).is_none()
}

fn run_for(binary: &str, env: &[(&str, &str)], wait: Duration) -> Option<(Option<i32>, String)> {
    let port = platform::testing::free_port();
    let mut child = Command::new(e2e::binary_dir().join(binary))
        .env_clear()
        .env("AUTH_API_ADDR", format!("127.0.0.1:{port}"))
        .env("CORE_API_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "AUTH_USERS_FILE",
            e2e::repo_root().join("config/users.toml"),
        )
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("LOG_FORMAT", "json")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{binary}: {e} (run `cargo build --workspace --bins`)"));
    let deadline = Instant::now() + wait;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            return Some((
                status.code(),
                String::from_utf8_lossy(&output.stderr).into(),
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_development_jwt_secret_is_refused_outside_development() {
    let dev = dev_secret();
    assert!(
        dev.contains(platform::auth::DEVELOPMENT_SECRET_MARKER),
        "process-compose.yaml's JWT_SECRET must carry the development marker"
    );
    let own = "f3b1c9d2e8a7465b9c0d1e2f3a4b5c6d7e8f9a0b";
    for binary in ["auth-api", "core-api"] {
        for env in ["production", "staging"] {
            let (code, stderr) = run(binary, &[("JWT_SECRET", &dev), ("PLATFORM_ENV", env)])
                .unwrap_or_else(|| panic!("{binary} started with the dev secret in {env}"));
            assert_eq!(code, Some(2), "{binary} in {env}: {stderr}");
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{binary}: one line: {stderr}");
            assert!(
                lines[0].starts_with("config error: JWT_SECRET: is a development secret"),
                "{binary}: {stderr}"
            );
            assert!(!stderr.contains(&dev), "{binary} echoed the secret");
        }
        // Development (explicit or by default) and a secret of one's own
        // in production both start.
        assert!(
            starts(binary, &[("JWT_SECRET", &dev)]),
            "{binary} refused the dev secret in development"
        );
        assert!(
            starts(
                binary,
                &[("JWT_SECRET", &dev), ("PLATFORM_ENV", "development")]
            ),
            "{binary} refused the dev secret with PLATFORM_ENV=development"
        );
        // (core-api also needs a card key of its own there.)
        let own_card_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        assert!(
            starts(
                binary,
                &[
                    ("JWT_SECRET", own),
                    ("CARD_ENCRYPTION_KEY", own_card_key),
                    ("PLATFORM_ENV", "production")
                ]
            ),
            "{binary} refused its own secret in production"
        );
        let (code, stderr) = run(binary, &[("JWT_SECRET", own), ("PLATFORM_ENV", "Prod")])
            .expect("a bad PLATFORM_ENV stops the process");
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.starts_with("config error: PLATFORM_ENV: "),
            "{stderr}"
        );
    }
}

/// Every path a secret could take into a log: logins that succeed and
/// fail (JSON and form), payments with every test card, a replay, a reused
/// key, a card in the wrong field — then every process log is scanned.
#[tokio::test(flavor = "multi_thread")]
async fn no_log_line_holds_a_card_number_password_or_token() {
    // The card that always answers 503 fails once this budget is spent
    // (default 5 minutes), within the test's wait.
    let stack = Stack::boot_with(StackOptions::default().env(
        "psp-connector",
        "PSP_RETRY_BUDGET_SECS",
        "3",
    ))
    .await;
    let gateway = stack.gateway();
    let http = http_client();
    let wrong_password = "correct-horse-battery-staple-9";
    for body in [
        json!({"username": "alice", "password": wrong_password}),
        json!({"username": "nobody", "password": wrong_password}),
    ] {
        let response = http
            .post(format!("{gateway}/auth/token"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let token = login(&http, &gateway, "alice").await;
    // An API key: created, paid with, sent truncated, revoked.
    let cards = test_cards();
    let (api_key, api_key_id) = client::create_api_key(&http, &gateway, "alice").await;
    let truncated_key = &api_key[..api_key.len() - 1];
    let mut ids = vec![
        client::create_accepted(
            &http,
            &gateway,
            &api_key,
            &payment(cards[0], "cus_1", "secrets-key"),
        )
        .await,
    ];
    let response = client::create(
        &http,
        &gateway,
        truncated_key,
        &payment(cards[0], "cus_1", "x"),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 401);
    let response = http
        .delete(format!("{gateway}/auth/api_keys/{api_key_id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for (i, card) in cards.iter().enumerate() {
        let body = payment(card, "cus_1", &format!("secrets-{i}"));
        ids.push(client::create_accepted(&http, &gateway, &token, &body).await);
    }
    // A replay and a reused key, which compare fingerprints of the card.
    let body = payment(cards[0], "cus_1", "secrets-replay");
    for _ in 0..2 {
        let response = client::create_with_key(&http, &gateway, &token, &body, "secrets-key")
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    let reused = payment(cards[1], "cus_1", "secrets-replay");
    let response = client::create_with_key(&http, &gateway, &token, &reused, "secrets-key")
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    // Card numbers where they do not belong.
    for (pointer, value) in [
        ("/customer_id", json!(cards[0])),
        ("/reference", json!(cards[1])),
        ("/payment_method/cvc", json!(cards[2])),
        (
            "/payment_method/number",
            json!(cards[3].parse::<u64>().unwrap()),
        ),
        ("/amount", json!(cards[4])),
    ] {
        let mut body = payment("4242424242424241", "cus_1", "secrets-bad");
        *body.pointer_mut(pointer).unwrap() = value;
        let response = client::create(&http, &gateway, &token, &body)
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{pointer}");
        let text = response.text().await.unwrap();
        for card in &cards {
            assert!(!text.contains(card), "error body echoes a card: {text}");
        }
    }
    // A card number used as an id and as a query value, through the
    // gateway: Caddy's access log and the services' both mask it.
    let response = http
        .get(format!(
            "{gateway}/transactions/{}?customer_id={}",
            cards[0], cards[1]
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = http
        .get(format!("{gateway}/transactions?customer_id={}", cards[1]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A careless client: card numbers written in groups, and a password in
    // a query string. The gateway logs none of them.
    let careless = [
        "/transactions?customer_id=4242-4242-4242-4242",
        "/transactions/4242%204242%204242%204242",
        "/transactions?reference=4000+0000+0000+0002",
        "/auth/token?username=alice&password=hunter2-in-a-query",
    ];
    for path in careless {
        let _ = http
            .get(format!("{gateway}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
    }
    // A card number sent as the request id, which every service logs: the
    // gateway replaces it, and masks it in its own access log line.
    let response = http
        .get(format!("{gateway}/transactions?limit=1"))
        .header("x-request-id", cards[2])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let replaced = response.headers()["x-request-id"].to_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(replaced).is_ok(),
        "request id passed on: {replaced}"
    );
    // Log lines are written by background writers: wait for them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let gateway_log = stack.log("gateway");
        let gateway_masked = gateway_log
            .contains("/transactions/[redacted]?customer_id=[redacted]")
            && gateway_log.contains("password=[redacted]")
            && gateway_log.contains("/transactions/[redacted]\"");
        for leaked in [
            "4242-4242",
            "4242%204242",
            "4000+0000",
            "hunter2-in-a-query",
        ] {
            assert!(!gateway_log.contains(leaked), "the gateway logged {leaked}");
        }
        let replicas = stack.log("core-api-0") + &stack.log("core-api-1");
        if gateway_masked && replicas.contains("/transactions/[card]") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway ({gateway_masked}) and a replica must log the request with the numbers masked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client::wait_all_final(&http, &gateway, "alice", &ids, Duration::from_secs(30)).await;
    // Let the connectors write their last lines.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let secret = client::dev_jwt_secret(&stack);
    client::assert_no_secrets_in_logs(
        &stack,
        &[
            wrong_password,
            &token,
            &secret,
            &api_key,
            truncated_key,
            &api_key[8..],
        ],
    );
}
