//! The sandbox's charge API, booted in-process on port 0 and as the real
//! binary for the lifecycle tests.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use platform::config::Secs;
use platform::testing::{ChildGuard, Spawned, free_port, wait_for_port};
use psp_sandbox::{Config, FailureRate};
use serde_json::{Value, json};

struct Sandbox {
    url: String,
    _served: Spawned,
}

async fn boot(configure: impl FnOnce(&mut Config)) -> Sandbox {
    let mut config = Config::on(SocketAddr::from(([127, 0, 0, 1], 0)));
    configure(&mut config);
    let served = Spawned::start(config, psp_sandbox::build).await;
    Sandbox {
        url: served.url(),
        _served: served,
    }
}

fn charge_body(card: &str) -> Value {
    json!({
        "amount": 1299,
        "currency": "EUR",
        "card": {"number": card, "expiry_month": 12, "expiry_year": 2030, "cvc": "123"},
        "metadata": {"transaction_id": "tx_1"}
    })
}

async fn charge(sandbox: &Sandbox, key: Option<&str>, body: &Value) -> (u16, Value, bool) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/charges", sandbox.url))
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("charge request");
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    (status, response.json().await.expect("JSON body"), replayed)
}

async fn stats(sandbox: &Sandbox) -> Value {
    reqwest::get(format!("{}/charges/stats", sandbox.url))
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats JSON")
}

#[tokio::test]
async fn missing_idempotency_key_is_a_json_400() {
    let sandbox = boot(|_| {}).await;
    let (status, body, _) = charge(&sandbox, None, &charge_body("4242424242424242")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "idempotency_key_missing");
    assert_eq!(stats(&sandbox).await["total_charges"], 0);
}

#[tokio::test]
async fn bad_bodies_are_refused_without_charging() {
    let sandbox = boot(|_| {}).await;
    let (status, body, _) = charge(&sandbox, Some("k1"), &charge_body("4242424242424241")).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["param"], "card.number");
    let mut zero = charge_body("4242424242424242");
    zero["amount"] = json!(0);
    let (status, body, _) = charge(&sandbox, Some("k2"), &zero).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["param"], "amount");
    let (status, body, _) = charge(&sandbox, Some("k3"), &json!({"amount": "x"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(stats(&sandbox).await["total_charges"], 0);
}

#[tokio::test]
async fn test_cards_answer_as_documented() {
    let sandbox = boot(|_| {}).await;
    let cases = [
        ("4242424242424242", 200, "succeeded", None),
        ("4000000000000002", 402, "declined", Some("card_declined")),
        (
            "4000000000009995",
            402,
            "declined",
            Some("insufficient_funds"),
        ),
        ("4000000000000069", 402, "declined", Some("expired_card")),
        ("5555555555554444", 200, "succeeded", None),
    ];
    for (card, expected_status, charge_status, decline_code) in cases {
        let (status, body, replayed) = charge(&sandbox, Some(card), &charge_body(card)).await;
        assert_eq!(status, expected_status, "{card}: {body}");
        assert_eq!(body["status"], charge_status, "{card}");
        assert_eq!(body["decline_code"], json!(decline_code), "{card}");
        assert_eq!(body["card"]["last4"], &card[12..]);
        assert!(!replayed);
    }
    let (status, body, _) =
        charge(&sandbox, Some("k-0119"), &charge_body("4000000000000119")).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "processing_error");

    let stats = stats(&sandbox).await;
    assert_eq!(stats["total_charges"], 5, "{stats}");
    assert_eq!(stats["max_charges_per_key"], 1);
    assert_eq!(stats["unavailable"], 1);
}

#[tokio::test]
async fn same_key_same_answer_and_one_charge() {
    let sandbox = boot(|_| {}).await;
    let body = charge_body("4000000000000002");
    let first = charge(&sandbox, Some("tx_same"), &body).await;
    let second = charge(&sandbox, Some("tx_same"), &body).await;
    assert_eq!(first.0, second.0);
    assert_eq!(first.1, second.1);
    assert!(second.2, "a replay says so");

    let mut other = body.clone();
    other["amount"] = json!(1);
    let (status, error, _) = charge(&sandbox, Some("tx_same"), &other).await;
    assert_eq!(status, 422);
    assert_eq!(error["error"]["code"], "idempotency_key_reused");

    let stats = stats(&sandbox).await;
    assert_eq!(stats["total_charges"], 1, "{stats}");
    assert_eq!(stats["max_charges_per_key"], 1);
    assert_eq!(stats["replays"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_charge_once() {
    let sandbox = std::sync::Arc::new(boot(|config| config.psp_latency_ms = 20).await);
    let body = charge_body("4242424242424242");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (sandbox, body) = (sandbox.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            charge(&sandbox, Some("tx_race"), &body).await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert!(answers.iter().all(|a| a.0 == 200 && a.1 == answers[0].1));
    assert_eq!(answers.iter().filter(|a| !a.2).count(), 1, "one decision");
    let stats = stats(&sandbox).await;
    assert_eq!(stats["total_charges"], 1, "{stats}");
    assert_eq!(stats["max_charges_per_key"], 1);
}

#[tokio::test]
async fn an_injected_503_does_not_use_up_the_key() {
    let sandbox = boot(|config| config.psp_failure_rate = FailureRate::new(0.5).unwrap()).await;
    let body = charge_body("4242424242424242");
    // Keys whose first answer was a 503 and which were then retried to success.
    let mut recovered = 0;
    for key in 0..20 {
        let key = format!("tx_flaky_{key}");
        let mut first = true;
        loop {
            let (status, answer, replayed) = charge(&sandbox, Some(&key), &body).await;
            match status {
                503 => first = false,
                200 => {
                    assert!(!replayed, "nothing was decided before the 503s");
                    if !first {
                        recovered += 1;
                    }
                    break;
                }
                other => panic!("unexpected {other}: {answer}"),
            }
        }
    }
    assert!(
        recovered > 0,
        "a 50 % failure rate never answered 503 first"
    );
    let stats = stats(&sandbox).await;
    assert_eq!(stats["total_charges"], 20, "{stats}");
    assert_eq!(stats["keys"], 20);
    assert_eq!(stats["max_charges_per_key"], 1);
    assert!(stats["unavailable"].as_u64().unwrap() >= recovered);
}

fn binary(envs: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_psp-sandbox"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in envs {
        command.env(name, value);
    }
    command
}

fn spawn_binary(envs: &[(&str, String)]) -> ChildGuard {
    ChildGuard(binary(envs).spawn().expect("spawn psp-sandbox"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_in_flight_charge_then_exits_0() {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut child = spawn_binary(&[
        ("PSP_SANDBOX_ADDR", addr.to_string()),
        ("PSP_LATENCY_MS", "1500".into()),
    ]);
    wait_for_port(addr, Duration::from_secs(10));

    let request = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("http://{addr}/charges"))
            .header("Idempotency-Key", "tx_sigterm")
            .json(&charge_body("4242424242424242"))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.signal("TERM");

    let response = request.await.unwrap().expect("in-flight request answered");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "succeeded");
    let status = tokio::task::spawn_blocking(move || child.wait_timeout(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn bad_failure_rate_is_a_config_error() {
    let output = binary(&[("PSP_FAILURE_RATE", "1.5".into())])
        .output()
        .expect("run psp-sandbox");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("config error: PSP_FAILURE_RATE:"),
        "{stderr}"
    );
}

/// Sends `count` approved charges with keys `{prefix}-{i}`, 16 at a time.
async fn charge_many(url: &str, prefix: &str, count: usize) {
    use futures::StreamExt;
    let client = reqwest::Client::new();
    let body = charge_body("4242424242424242");
    futures::stream::iter(0..count)
        .map(|i| {
            let request = client
                .post(format!("{url}/charges"))
                .header("Idempotency-Key", format!("{prefix}-{i}"))
                .json(&body);
            async move {
                let response = request.send().await.expect("charge");
                assert_eq!(response.status().as_u16(), 200);
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

/// The ledger keeps at most PSP_LEDGER_MAX_KEYS answers, the oldest
/// leaving first, while the double-charge stats stay exact: a key charged
/// again after its answer was evicted counts as charged twice (issue 21,
/// point 11).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_is_bounded_and_its_stats_stay_exact() {
    let sandbox = boot(|config| config.psp_ledger_max_keys = 200).await;
    charge_many(&sandbox.url, "bounded", 1000).await;
    let before = stats(&sandbox).await;
    assert_eq!(before["stored_answers"], 200, "{before}");
    assert_eq!(before["evicted_answers"], 800, "{before}");
    assert_eq!(before["total_charges"], 1000, "{before}");
    assert_eq!(before["keys"], 1000, "{before}");
    assert_eq!(before["max_charges_per_key"], 1, "{before}");

    // The newest answers are still replayed, unchanged.
    let body = charge_body("4242424242424242");
    let (status, first, replayed) = charge(&sandbox, Some("latest"), &body).await;
    assert_eq!((status, replayed), (200, false));
    let (status, again, replayed) = charge(&sandbox, Some("latest"), &body).await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(first, again, "a replay is the first answer verbatim");

    // An evicted key is a new key: charged again, and the stats say so.
    let (status, _, replayed) = charge(&sandbox, Some("bounded-0"), &body).await;
    assert_eq!((status, replayed), (200, false));
    let stats = stats(&sandbox).await;
    assert_eq!(stats["max_charges_per_key"], 2, "{stats}");
    assert_eq!(stats["total_charges"], 1002, "{stats}");
    assert_eq!(stats["keys"], 1001, "{stats}");
    assert_eq!(stats["stored_answers"], 200, "{stats}");
}

/// An answer is replayed for PSP_IDEMPOTENCY_TTL_SECS, then forgotten.
#[tokio::test]
async fn answers_expire_after_the_idempotency_ttl() {
    let sandbox =
        boot(|config| config.psp_idempotency_ttl_secs = Secs(Duration::from_secs(1))).await;
    let body = charge_body("4242424242424242");
    let (_, first, _) = charge(&sandbox, Some("ttl"), &body).await;
    let (_, _, replayed) = charge(&sandbox, Some("ttl"), &body).await;
    assert!(replayed);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, later, replayed) = charge(&sandbox, Some("ttl"), &body).await;
    assert_eq!((status, replayed), (200, false));
    assert_ne!(first["id"], later["id"], "a new charge");
    let stats = stats(&sandbox).await;
    assert_eq!(stats["max_charges_per_key"], 2, "{stats}");
    assert_eq!(stats["stored_answers"], 1, "{stats}");
}

fn resident_kib(pid: u32) -> u64 {
    platform::testing::resident_kib(pid).expect("VmRSS of a running process")
}

/// The real binary's memory after 20,000 charges with the default bound:
/// the ledger no longer grows by kilobytes per charge (it went from 9 to
/// 70 MB). Prints the figures (`--nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_over_twenty_thousand_charges() {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = spawn_binary(&[("PSP_SANDBOX_ADDR", addr.to_string())]);
    wait_for_port(addr, Duration::from_secs(10));
    let url = format!("http://{addr}");
    charge_many(&url, "warm", 1000).await;
    let warm = resident_kib(child.pid());
    charge_many(&url, "many", 20_000).await;
    let after = resident_kib(child.pid());
    eprintln!("psp-sandbox VmRSS: {warm} KiB after 1,000 charges, {after} KiB after 21,000");
    assert!(
        after < warm + 16 * 1024,
        "grew from {warm} to {after} KiB over 20,000 charges"
    );
}

/// Two `Idempotency-Key` headers: which charge would that be? 400.
#[tokio::test]
async fn two_idempotency_keys_are_refused() {
    let sandbox = boot(|_| {}).await;
    let response = reqwest::Client::new()
        .post(format!("{}/charges", sandbox.url))
        .header("Idempotency-Key", "a")
        .header("Idempotency-Key", "b")
        .json(&charge_body("4242424242424242"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "idempotency_key_invalid");
    assert_eq!(stats(&sandbox).await["total_charges"], 0);
}

async fn resolve(sandbox: &Sandbox, key: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/charges/resolve", sandbox.url))
        .header("Idempotency-Key", key)
        .send()
        .await
        .expect("resolve request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

#[tokio::test]
async fn resolve_answers_the_decision_or_abandons_the_key() {
    let sandbox = boot(|_| {}).await;
    let body = charge_body("4242424242424242");
    let (_, charged, _) = charge(&sandbox, Some("tx_r:psp-a"), &body).await;
    let (status, found) = resolve(&sandbox, "tx_r:psp-a").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["id"], charged["id"]);
    assert_eq!(found["status"], "succeeded");
    assert_eq!(found["idempotency_key"], "tx_r:psp-a");

    let (_, declined, _) = charge(&sandbox, Some("tx_d"), &charge_body("4000000000000002")).await;
    let (status, found) = resolve(&sandbox, "tx_d").await;
    assert_eq!((status, &found["status"]), (200, &json!("declined")));
    assert_eq!(found["decline_code"], declined["decline_code"]);

    // Nothing decided: 404, and the key never charges from now on.
    let (status, missing) = resolve(&sandbox, "tx_never").await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["error"]["code"], "charge_not_found");
    let (status, refused, _) = charge(&sandbox, Some("tx_never"), &body).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_key_abandoned");
    assert_eq!(resolve(&sandbox, "tx_never").await.0, 404, "still nothing");

    let stats = stats(&sandbox).await;
    assert_eq!(stats["total_charges"], 2, "{stats}");
    assert_eq!(stats["abandoned_keys"], 1);
    assert_eq!(stats["refused_abandoned"], 1);
    assert_eq!(stats["resolves"], 4);
    assert_eq!(stats["psp"], "psp-a");
}

/// An approved charge under `key`, sent while the test goes on; its status.
fn charge_in_background(sandbox: &Sandbox, key: &'static str) -> tokio::task::JoinHandle<u16> {
    let url = sandbox.url.clone();
    tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{url}/charges"))
            .header("Idempotency-Key", key)
            .json(&charge_body("4242424242424242"))
            .send()
            .await
            .expect("charge answered")
            .status()
            .as_u16()
    })
}

/// The race the fence exists for: a charge still on its way in (the first
/// half of its latency) when its caller, having timed out, resolves.
#[tokio::test]
async fn a_resolve_during_a_slow_charge_fences_it_or_finds_it() {
    let sandbox = boot(|config| config.psp_latency_ms = 400).await;
    let in_flight = charge_in_background(&sandbox, "tx_race");
    // Before the decision (about 200 ms in): fenced.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(resolve(&sandbox, "tx_race").await.0, 404);
    assert_eq!(in_flight.await.unwrap(), 409);
    assert_eq!(stats(&sandbox).await["total_charges"], 0);

    // After the decision, before the answer is out: found.
    let in_flight = charge_in_background(&sandbox, "tx_race_2");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, found) = resolve(&sandbox, "tx_race_2").await;
    assert_eq!((status, &found["status"]), (200, &json!("succeeded")));
    assert_eq!(in_flight.await.unwrap(), 200);
    assert_eq!(stats(&sandbox).await["total_charges"], 1);
}

#[tokio::test]
async fn faults_change_while_running_and_bad_settings_are_refused() {
    let sandbox =
        boot(|config| config.psp_sandbox_name = platform::psp::PspName::parse("psp-b").unwrap())
            .await;
    let client = reqwest::Client::new();
    let faults = format!("{}/faults", sandbox.url);
    let settings = || async {
        let answer = client.get(&faults).send().await.unwrap();
        answer.json::<Value>().await.unwrap()
    };
    let current = settings().await;
    assert_eq!(current, json!({"latency_ms": 0, "failure_rate": 0.0}));

    let put = |body: Value| client.put(&faults).json(&body).send();
    let changed = put(json!({"failure_rate": 1.0})).await.unwrap();
    assert_eq!(changed.status(), 200);
    let (status, _, _) = charge(&sandbox, Some("k1"), &charge_body("4242424242424242")).await;
    assert_eq!(status, 503, "a failure rate of 1 fails every charge");

    for (body, param) in [
        (json!({"failure_rate": 1.5}), "failure_rate"),
        (
            json!({"latency_ms": 600_001, "failure_rate": 0.0}),
            "latency_ms",
        ),
    ] {
        let refused = put(body.clone()).await.unwrap();
        assert_eq!(refused.status(), 422, "{body}");
        let refused: Value = refused.json().await.unwrap();
        assert_eq!(refused["error"]["code"], "invalid_faults");
        assert_eq!(refused["error"]["param"], param);
    }
    let unknown = put(json!({"failure": 0})).await.unwrap();
    assert_eq!(unknown.status().as_u16() / 100, 4);
    let current = settings().await;
    assert_eq!(
        current,
        json!({"latency_ms": 0, "failure_rate": 1.0}),
        "a refused change changes nothing"
    );

    put(json!({"failure_rate": 0})).await.unwrap();
    let (status, _, _) = charge(&sandbox, Some("k1"), &charge_body("4242424242424242")).await;
    assert_eq!(status, 200);
    assert_eq!(stats(&sandbox).await["psp"], "psp-b");
}
