//! A merchant's client of the booted stack, shared by the fault, abuse and
//! schema tests: log in, pay, poll until final, look into Redis and the
//! sandbox's counters, and scan every process log for secrets.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::stack::Stack;

pub use psp_sandbox::cards::{
    APPROVED, DECLINED, EXPIRED_CARD, INSUFFICIENT_FUNDS, PROCESSING_ERROR,
};

/// The numbers of the PSP Sandbox's test cards (README, after the
/// walkthrough): none may ever reach a log.
pub fn test_cards() -> Vec<&'static str> {
    psp_sandbox::cards::TEST_CARDS
        .iter()
        .map(|(number, _)| *number)
        .collect()
}

/// The dev users' password (config/users.toml, DEV ONLY).
pub const DEV_PASSWORD: &str = "password";

/// Statuses after which a transaction never changes again.
pub const FINAL: &[&str] = &["succeeded", "declined", "failed"];

/// A client with a bounded per-request timeout, so a hung request fails the
/// test instead of hanging it.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("http client")
}

/// A token for `user` (`alice` → acme, `bob` → globex), logged in through
/// the gateway with a form, as the README does. A 503 (auth-api or its
/// Redis coming back after a fault) is retried for up to 10 s, as a client
/// would.
pub async fn login(client: &reqwest::Client, gateway: &str, user: &str) -> String {
    login_response(client, gateway, user).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// The whole `POST /auth/token` answer of [`login`].
pub async fn login_response(client: &reqwest::Client, gateway: &str, user: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    let response = loop {
        let response = client
            .post(format!("{gateway}/auth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("username={user}&password={DEV_PASSWORD}"))
            .send()
            .await
            .expect("login request");
        if response.status() != 503 || Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(response.status(), 200, "login of {user}");
    response.json().await.expect("token JSON")
}

/// A valid payment body with `card`.
pub fn payment(card: &str, customer: &str, reference: &str) -> Value {
    json!({
        "amount": 1299,
        "currency": "EUR",
        "customer_id": customer,
        "reference": reference,
        "payment_method": {"type": "card", "number": card, "expiry_month": 12, "expiry_year": 2030, "cvc": "123"},
        "metadata": {"source": "e2e"}
    })
}

/// `POST /transactions` with a fresh Idempotency-Key.
pub async fn create(
    client: &reqwest::Client,
    gateway: &str,
    token: &str,
    body: &Value,
) -> reqwest::Result<reqwest::Response> {
    create_with_key(
        client,
        gateway,
        token,
        body,
        &uuid::Uuid::new_v4().to_string(),
    )
    .await
}

pub async fn create_with_key(
    client: &reqwest::Client,
    gateway: &str,
    token: &str,
    body: &Value,
    key: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{gateway}/transactions"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
}

/// Creates a transaction and returns its id; panics unless the answer is 202.
pub async fn create_accepted(
    client: &reqwest::Client,
    gateway: &str,
    token: &str,
    body: &Value,
) -> String {
    let response = create(client, gateway, token, body)
        .await
        .expect("POST /transactions");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(status, 202, "{text}");
    let created: Value = serde_json::from_str(&text).expect("transaction JSON");
    created["id"].as_str().expect("id").to_owned()
}

/// `GET url` with `credential` (a token or an API key) as Bearer, read as
/// JSON whatever the status: for tests that look at the body.
pub async fn get_json(client: &reqwest::Client, url: &str, credential: &str) -> Value {
    client
        .get(url)
        .bearer_auth(credential)
        .send()
        .await
        .expect("GET request")
        .json()
        .await
        .expect("a JSON body")
}

/// The transaction, or None for a 404.
pub async fn fetch(
    client: &reqwest::Client,
    gateway: &str,
    token: &str,
    id: &str,
) -> Option<Value> {
    let response = client
        .get(format!("{gateway}/transactions/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /transactions/{id}");
    if response.status() == 404 {
        return None;
    }
    assert_eq!(response.status(), 200);
    Some(response.json().await.expect("transaction JSON"))
}

/// Polls one transaction until it is final (within 20 s, one token).
pub async fn wait_final(client: &reqwest::Client, gateway: &str, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let transaction = fetch(client, gateway, token, id)
            .await
            .unwrap_or_else(|| panic!("{id} not found"));
        if FINAL.contains(&transaction["status"].as_str().unwrap_or_default()) {
            return transaction;
        }
        assert!(
            Instant::now() < deadline,
            "{id} still {}",
            transaction["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls every id until all are final; returns them in order. Tokens live
/// 30 s, so `user` logs in again as needed.
pub async fn wait_all_final(
    client: &reqwest::Client,
    gateway: &str,
    user: &str,
    ids: &[String],
    timeout: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut token = login(client, gateway, user).await;
    let mut token_at = Instant::now();
    let mut done: Vec<Option<Value>> = vec![None; ids.len()];
    loop {
        if token_at.elapsed() > Duration::from_secs(20) {
            token = login(client, gateway, user).await;
            token_at = Instant::now();
        }
        let mut pending = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if done[i].is_some() {
                continue;
            }
            let transaction = fetch(client, gateway, &token, id)
                .await
                .unwrap_or_else(|| panic!("{id} was accepted but does not exist"));
            if FINAL.contains(&transaction["status"].as_str().unwrap_or_default()) {
                done[i] = Some(transaction);
            } else {
                pending.push(format!("{id}: {}", transaction["status"]));
            }
        }
        if pending.is_empty() {
            return done.into_iter().map(Option::unwrap).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} transactions not final after {timeout:?}, e.g. {:?}",
            pending.len(),
            &pending[..pending.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sandboxes of process-compose.yaml: name and the port the file gives
/// it by default.
pub const SANDBOXES: [(&str, u16); 2] = [("psp-a", 7401), ("psp-b", 7402)];

/// The base URL of sandbox `name` of the stack.
pub fn sandbox_url(stack: &Stack, name: &str) -> String {
    let (_, port) = SANDBOXES
        .iter()
        .find(|(psp, _)| *psp == name)
        .unwrap_or_else(|| panic!("no sandbox {name}"));
    format!("http://127.0.0.1:{}", stack.port(*port))
}

/// `GET /charges/stats` of one sandbox.
pub async fn psp_stats(client: &reqwest::Client, stack: &Stack, name: &str) -> Value {
    client
        .get(format!("{}/charges/stats", sandbox_url(stack, name)))
        .send()
        .await
        .expect("sandbox stats")
        .json()
        .await
        .expect("stats JSON")
}

/// The sandboxes' stats together: counts summed, `max_charges_per_key`
/// the largest, each sandbox's own under `psps`. Keys are per payment and
/// PSP, so `total_charges` equal to the payments decided is the proof that
/// no payment was charged at two PSPs.
pub async fn sandbox_stats(client: &reqwest::Client, stack: &Stack) -> Value {
    let mut total = serde_json::Map::new();
    let mut each = serde_json::Map::new();
    for (name, _) in SANDBOXES {
        let stats = psp_stats(client, stack, name).await;
        for (field, value) in stats.as_object().expect("stats object") {
            let Some(number) = value.as_u64() else {
                continue;
            };
            let sum = total.get(field).and_then(Value::as_u64).unwrap_or(0);
            let combined = if field == "max_charges_per_key" {
                sum.max(number)
            } else {
                sum + number
            };
            total.insert(field.clone(), combined.into());
        }
        each.insert(name.to_owned(), stats);
    }
    total.insert("psps".into(), Value::Object(each));
    Value::Object(total)
}

/// A blocking connection to the stack's Redis.
pub fn redis(stack: &Stack) -> redis::Connection {
    redis::Client::open(stack.redis_url())
        .expect("redis url")
        .get_connection_with_timeout(Duration::from_secs(5))
        .expect("connect to the stack's redis")
}

/// Every key in Redis with, for streams, its length: a fingerprint of what
/// is stored, to prove a request wrote nothing.
pub fn redis_snapshot(connection: &mut redis::Connection) -> Vec<(String, String)> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(connection).expect("KEYS");
    keys.sort();
    keys.into_iter()
        .map(|key| {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query(connection)
                .expect("TYPE");
            let size: i64 = match kind.as_str() {
                "stream" => redis::cmd("XLEN").arg(&key).query(connection),
                "zset" => redis::cmd("ZCARD").arg(&key).query(connection),
                "hash" => redis::cmd("HLEN").arg(&key).query(connection),
                "string" => redis::cmd("STRLEN").arg(&key).query(connection),
                _ => Ok(0),
            }
            .unwrap_or(-1);
            (key, format!("{kind}:{size}"))
        })
        .collect()
}

/// Panics if any process log of `stack` holds a test card number, one of
/// `secrets` (tokens, passwords the test sent), or the dev password as a
/// value (`password=password`, `"password":"password"`).
pub fn assert_no_secrets_in_logs(stack: &Stack, secrets: &[&str]) {
    let dev_password_values = [
        format!("password={DEV_PASSWORD}"),
        format!("\"password\":\"{DEV_PASSWORD}\""),
        format!("\\\"password\\\":\\\"{DEV_PASSWORD}\\\""),
    ];
    for name in stack.process_names() {
        let log = stack.log(name);
        for (n, line) in log.lines().enumerate() {
            for card in test_cards() {
                assert!(
                    !line.contains(card),
                    "{} log line {} holds card {card}: {line}",
                    name,
                    n + 1
                );
            }
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                assert!(
                    !line.contains(secret),
                    "{} log line {} holds a secret the test sent: {line}",
                    name,
                    n + 1
                );
            }
            for value in &dev_password_values {
                assert!(
                    !line.contains(value.as_str()),
                    "{} log line {} holds the dev password: {line}",
                    name,
                    n + 1
                );
            }
        }
    }
}

/// The dev `JWT_SECRET` process-compose.yaml gives the services.
pub fn dev_jwt_secret(_stack: &Stack) -> String {
    let file = crate::compose::ComposeFile::load(
        &crate::repo_root().join("process-compose.yaml"),
        &|_| None,
    );
    file.environment
        .iter()
        .find_map(|entry| entry.strip_prefix("JWT_SECRET="))
        .map(str::to_owned)
        .expect("process-compose.yaml sets JWT_SECRET")
}

/// A new API key of `admin`'s merchant (`alice` → acme, `bob` → globex:
/// users who manage API keys), created through the gateway: `(key, id)`.
pub async fn create_api_key(
    client: &reqwest::Client,
    gateway: &str,
    admin: &str,
) -> (String, String) {
    let token = login(client, gateway, admin).await;
    let response = client
        .post(format!("{gateway}/auth/api_keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "e2e"}))
        .send()
        .await
        .expect("POST /auth/api_keys");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(status, 201, "{text}");
    let created: Value = serde_json::from_str(&text).expect("API key JSON");
    (
        created["key"].as_str().expect("key").to_owned(),
        created["id"].as_str().expect("id").to_owned(),
    )
}

/// `PUT` (link) or `DELETE` (unlink) `/auth/users/{user}/customers/{customer}`
/// with `key`; returns the status and body.
pub async fn set_link(
    client: &reqwest::Client,
    gateway: &str,
    key: &str,
    user: &str,
    customer: &str,
    linked: bool,
) -> (u16, Value) {
    let url = format!("{gateway}/auth/users/{user}/customers/{customer}");
    let request = if linked {
        client.put(url)
    } else {
        client.delete(url)
    };
    let response = request.bearer_auth(key).send().await.expect("link request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Links `user` to `customers` with a new API key of the user's merchant
/// (created by `admin`), so the user's tokens may pay for them.
pub async fn link_customers(
    client: &reqwest::Client,
    gateway: &str,
    admin: &str,
    user: &str,
    customers: &[&str],
) {
    let (key, _) = create_api_key(client, gateway, admin).await;
    for customer in customers {
        let (status, body) = set_link(client, gateway, &key, user, customer, true).await;
        assert_eq!(status, 200, "link {user} to {customer}: {body}");
    }
}

/// Runs the README's HTTPie walkthrough (`scripts/walkthrough`, all of it,
/// or one `section`) verbatim against the booted stack, with a fresh HOME,
/// and returns the JSON body each call printed, in order.
pub fn run_walkthrough(stack: &Stack, section: Option<&str>) -> Vec<Value> {
    let http =
        platform::testing::require_program("http", "`apt-get install httpie`, or `nix develop`");
    platform::testing::require_program("jq", "`apt-get install jq`, or `nix develop`");
    let home = tempfile::tempdir().unwrap();
    // Through bash, not the shebang: the Nix build sandbox has no /usr/bin/env.
    let output = std::process::Command::new("bash")
        .arg(crate::repo_root().join("scripts/walkthrough"))
        .args(section)
        .env("PLATFORM_PORT", stack.port(8000).to_string())
        .env("HOME", home.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                http.parent().unwrap().display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "walkthrough {section:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // Each HTTPie call printed its JSON body; off a terminal, HTTPie adds no
    // newline, so read them as a stream of values.
    serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| {
            panic!("walkthrough output is not a sequence of JSON bodies ({e}):\n{stdout}")
        })
}
