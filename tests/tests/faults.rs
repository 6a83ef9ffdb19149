//! The platform on its worst day, through the gateway: Redis killed with
//! payments in flight, core-api replicas restarted one by one under load,
//! connectors killed again and again while they charge. Each test boots its
//! own stack from process-compose.yaml and ends with a scan of every
//! process log for card numbers and secrets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use e2e::client::{self, http_client, payment};
use e2e::client::{APPROVED, DECLINED, PROCESSING_ERROR};
use e2e::stack::{Stack, StackOptions};
use platform::auth::{JwtSecret, TokenIssuer};
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

/// A token valid for `ttl`, signed with the dev secret of
/// process-compose.yaml, for load loops that outlive a 30 s login token.
fn dev_token(stack: &Stack, user: &str, merchant: &str) -> String {
    let secret = JwtSecret::new(client::dev_jwt_secret(stack)).unwrap();
    TokenIssuer::new(&secret, Duration::from_secs(600))
        .issue(user, merchant)
        .0
}

/// Redis' promise with `appendonly yes, appendfsync everysec` (the
/// process-compose.yaml setting): every write is in the AOF — handed to the
/// kernel — before its reply is sent, and fsynced within a second. So a
/// crash of the Redis *process* loses no acknowledged payment; a crash of
/// the *machine* may lose about the last second of them. This test kills
/// the process (`kill -9`) while payments are being accepted, restarts it
/// from its AOF, and requires every payment answered 202 — the ones
/// acknowledged a second before the kill and the ones acknowledged in the
/// very last moment — to exist and reach a final status. Every request that
/// failed during the outage is retried with its Idempotency-Key and must
/// then succeed, exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_with_payments_in_flight_loses_no_accepted_payment() {
    let stack = Stack::boot().await;
    let gateway = stack.gateway();
    let http = http_client();
    let token = dev_token(&stack, "alice", "acme");
    let customer = "cus_1".to_owned();
    let body = payment(APPROVED, &customer, "redis-crash");

    // Accepted well before the crash (past the everysec fsync).
    let mut accepted: BTreeMap<String, String> = BTreeMap::new(); // key → id
    for _ in 0..100 {
        let key = uuid::Uuid::new_v4().to_string();
        let id = accept(&http, &gateway, &token, &body, &key)
            .await
            .expect("accepted before the crash");
        accepted.insert(key, id);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Eight clients keep paying; Redis dies under them.
    let stop = Arc::new(AtomicBool::new(false));
    let results: Outcomes = Arc::default();
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (http, gateway, token, body) =
            (http.clone(), gateway.clone(), token.clone(), body.clone());
        let (stop, results) = (stop.clone(), results.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let key = uuid::Uuid::new_v4().to_string();
                let id = accept(&http, &gateway, &token, &body, &key).await;
                let failed = id.is_none();
                results.lock().await.push((key, id));
                if failed {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before_kill = results.lock().await.len();
    stack.signal("redis", "KILL");
    assert_eq!(stack.wait_exit("redis", Duration::from_secs(5)), None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    stack.restart("redis").await;

    let results = std::mem::take(&mut *results.lock().await);
    let during: Vec<_> = results.iter().filter(|(_, id)| id.is_some()).collect();
    let failed: Vec<_> = results.iter().filter(|(_, id)| id.is_none()).collect();
    eprintln!(
        "under the crash: {} answered 202 ({} requests answered in the 700 ms before the kill), {} failed",
        during.len(),
        before_kill,
        failed.len()
    );
    assert!(
        !during.is_empty(),
        "no payment was accepted under the crash"
    );
    assert!(!failed.is_empty(), "the kill came after the load");
    for (key, id) in &during {
        accepted.insert(key.clone(), id.clone().unwrap());
    }

    // Every failed request, retried with its key once the platform is
    // back, is accepted (new, or replayed if it had been written).
    let deadline = Instant::now() + Duration::from_secs(20);
    for (key, _) in &failed {
        loop {
            match accept(&http, &gateway, &token, &body, key).await {
                Some(id) => {
                    accepted.insert(key.clone(), id);
                    break;
                }
                None => {
                    assert!(Instant::now() < deadline, "retry of {key} never accepted");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    // Every accepted payment exists. The one exception Redis documents: if
    // a background fsync stalls for over a second (a busy disk; Redis then
    // logs it), it writes the AOF late, and a process crash can lose up to
    // two seconds of acknowledged writes. This test would then tell.
    let stalled = stack.log("redis").contains("fsync is taking too long");
    let mut missing = Vec::new();
    for (key, id) in &accepted {
        if client::fetch(&http, &gateway, &token, id).await.is_none() {
            missing.push(key.clone());
        }
    }
    assert!(
        missing.is_empty() || stalled,
        "{} accepted payments lost in the crash: {missing:?}",
        missing.len()
    );
    if !missing.is_empty() {
        eprintln!(
            "Redis reported a stalled fsync; {} payments acknowledged just before the kill were lost",
            missing.len()
        );
        for key in &missing {
            accepted.remove(key);
        }
    }
    let ids: Vec<String> = accepted.values().cloned().collect();
    let restarted = Instant::now();
    let settled =
        client::wait_all_final(&http, &gateway, "alice", &ids, Duration::from_secs(45)).await;
    for transaction in &settled {
        assert_eq!(transaction["status"], "succeeded", "{transaction}");
    }
    let retried = settled
        .iter()
        .filter(|t| t["attempts"].as_u64().unwrap_or(0) > 1)
        .count();
    eprintln!(
        "{} payments final {:?} after the restart; {retried} needed more than one attempt",
        settled.len(),
        restarted.elapsed()
    );
    // Exactly one transaction per key: the customer's list holds no more.
    let listed = list_all(&http, &gateway, &token, &customer).await;
    assert_eq!(
        listed,
        accepted.len(),
        "one transaction per Idempotency-Key"
    );
    let stats = client::sandbox_stats(&http, &stack).await;
    assert_eq!(stats["max_charges_per_key"], 1, "{stats}");
    client::assert_no_secrets_in_logs(&stack, &[&token]);
}

/// Idempotency-Key → the accepted transaction's id, None if it failed.
type Outcomes = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// POSTs the payment; the transaction id if it was accepted (202 or its
/// replay), None for any failure.
async fn accept(
    http: &reqwest::Client,
    gateway: &str,
    token: &str,
    body: &Value,
    key: &str,
) -> Option<String> {
    let response = client::create_with_key(http, gateway, token, body, key)
        .await
        .ok()?;
    if response.status() != 202 {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status.is_server_error() || status == 409,
            "unexpected answer during the crash: {status} {text}"
        );
        return None;
    }
    let created: Value = response.json().await.ok()?;
    Some(created["id"].as_str()?.to_owned())
}

/// Counts the customer's transactions through the paginated list.
async fn list_all(http: &reqwest::Client, gateway: &str, token: &str, customer: &str) -> usize {
    let mut count = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{gateway}/transactions?customer_id={customer}&limit=100");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&starting_after={cursor}"));
        }
        let page: Value = http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        count += page["data"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(next) if page["has_more"] == true => cursor = Some(next.to_owned()),
            _ => return count,
        }
    }
}

/// One request of the load: what was sent and how it ended.
#[derive(Debug)]
struct Failure {
    at: Duration,
    request: &'static str,
    outcome: String,
}

/// Restarting every core-api replica in turn, as a deploy does, while at
/// least 200 requests/s (half POSTs with unique Idempotency-Keys, half
/// reads) go through the gateway: SIGTERM, wait for the exit, start it
/// again, wait until the gateway sends it requests, then the next. Not one
/// request may fail: the replica answers /readyz 503 while it keeps
/// serving, so Caddy takes it out before it closes its port.
#[tokio::test(flavor = "multi_thread")]
async fn rolling_restart_of_core_api_under_load_fails_no_request() {
    const RATE: u64 = 250; // requests per second, offered open-loop
    const MAX_IN_FLIGHT: usize = 128;
    let stack = Stack::boot().await;
    let gateway = stack.gateway();
    let http = http_client();
    let token = dev_token(&stack, "alice", "acme");

    let stop = Arc::new(AtomicBool::new(false));
    let failures: Arc<Mutex<Vec<Failure>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let load = {
        let (stop, failures, done) = (stop.clone(), failures.clone(), done.clone());
        let (http, gateway, token) = (http.clone(), gateway.clone(), token.clone());
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
            let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut sent: u64 = 0;
            let mut tasks = tokio::task::JoinSet::new();
            while !stop.load(Ordering::Relaxed) {
                ticker.tick().await;
                let permit = slots.clone().acquire_owned().await.unwrap();
                let (http, gateway, token) = (http.clone(), gateway.clone(), token.clone());
                let (failures, done) = (failures.clone(), done.clone());
                let n = sent;
                sent += 1;
                tasks.spawn(async move {
                    let _permit = permit;
                    let (request, result) = if n.is_multiple_of(2) {
                        let body = payment(APPROVED, "cus_1", &format!("r-{n}"));
                        (
                            "POST /transactions",
                            client::create(&http, &gateway, &token, &body).await,
                        )
                    } else {
                        (
                            "GET /transactions",
                            http.get(format!("{gateway}/transactions?limit=5"))
                                .bearer_auth(&token)
                                .send()
                                .await,
                        )
                    };
                    let outcome = match result {
                        Ok(r) if r.status().is_success() => None,
                        Ok(r) => Some(format!(
                            "{} {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        )),
                        Err(e) => Some(format!("transport error: {e}")),
                    };
                    if let Some(outcome) = outcome {
                        failures.lock().await.push(Failure {
                            at: started.elapsed(),
                            request,
                            outcome,
                        });
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
            sent
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut events = Vec::new();
    for replica in ["core-api-0", "core-api-1"] {
        events.push((started.elapsed(), format!("SIGTERM {replica}")));
        stack.signal(replica, "TERM");
        let code =
            tokio::task::block_in_place(|| stack.wait_exit(replica, Duration::from_secs(20)));
        assert_eq!(code, Some(0), "{replica} drained and exited 0");
        events.push((started.elapsed(), format!("{replica} exited")));
        let served_before = served(&stack, replica);
        stack.restart(replica).await;
        events.push((started.elapsed(), format!("{replica} ready")));
        // In service again: the gateway routes requests to it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while served(&stack, replica) <= served_before {
            assert!(
                Instant::now() < deadline,
                "the gateway sends nothing to {replica} after its restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        events.push((started.elapsed(), format!("{replica} serving")));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = load.await.unwrap();
    let elapsed = started.elapsed();
    let rate = sent as f64 / elapsed.as_secs_f64();
    eprintln!(
        "{sent} requests in {elapsed:?} ({rate:.0}/s, {} completed); events: {events:?}",
        done.load(Ordering::Relaxed)
    );
    let failures = failures.lock().await;
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed during the rolling restart (events {events:?}): {:?}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .map(|f| format!("{:?} {}: {}", f.at, f.request, f.outcome))
            .collect::<Vec<_>>()
    );
    assert!(
        rate >= 200.0,
        "the load offered only {rate:.0} requests/s; the test needs at least 200"
    );
    client::assert_no_secrets_in_logs(&stack, &[&token]);
}

/// Access-log lines of `replica` for /transactions (its own log, which a
/// restarted process appends to).
fn served(stack: &Stack, replica: &str) -> usize {
    stack
        .log(replica)
        .lines()
        .filter(|l| l.contains("\"path\":\"/transactions\""))
        .count()
}

/// kill -9 of a random connector every two or three seconds while 2,000
/// payments are accepted through the gateway and charged (sandbox latency
/// 50 ms, so kills land on charges in flight); each killed connector is
/// started again at once, as `availability: restart` does. Every payment
/// must reach the status its card calls for, and the sandbox must have
/// charged every key at most once. The restarted process has the same
/// consumer name (process-compose sets `psp-connector-N`) and resumes what
/// its predecessor held at once; the default reclaim by the other
/// connector (`CONNECTOR_CLAIM_IDLE_MS`, 15 s) is the fallback.
#[tokio::test(flavor = "multi_thread")]
async fn connector_crash_storm_settles_everything_and_charges_once() {
    const TRANSACTIONS: usize = 2000;
    const RATE: u64 = 200; // payments per second
    let stack = Stack::boot_with(
        StackOptions::default()
            .env("psp-a", "PSP_LATENCY_MS", "50")
            // The card that always answers 503 fails after this budget
            // (default 5 minutes), within the test's wait.
            .env("psp-connector", "PSP_RETRY_BUDGET_SECS", "10"),
    )
    .await;
    let gateway = stack.gateway();
    let http = http_client();
    let token = dev_token(&stack, "alice", "acme");
    let customer = "cus_1".to_owned();

    // Card per payment: most approved, every 10th declined, every 100th
    // answered 503 until the connector gives up (failed).
    let card_of = |i: usize| match (i % 10, i % 100) {
        (_, 1) => PROCESSING_ERROR,
        (0, _) => DECLINED,
        _ => APPROVED,
    };
    let expected_of = |card: &str| match card {
        PROCESSING_ERROR => "failed",
        DECLINED => "declined",
        _ => "succeeded",
    };

    let creating = {
        let (http, gateway, token, customer) = (
            http.clone(),
            gateway.clone(),
            token.clone(),
            customer.clone(),
        );
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(32));
            let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..TRANSACTIONS {
                ticker.tick().await;
                let permit = slots.clone().acquire_owned().await.unwrap();
                let (http, gateway, token) = (http.clone(), gateway.clone(), token.clone());
                let body = payment(card_of(i), &customer, &format!("storm-{i}"));
                tasks.spawn(async move {
                    let _permit = permit;
                    let id = client::create_accepted(&http, &gateway, &token, &body).await;
                    (i, id)
                });
            }
            let mut ids = vec![String::new(); TRANSACTIONS];
            while let Some(joined) = tasks.join_next().await {
                let (i, id) = joined.expect("every payment is accepted");
                ids[i] = id;
            }
            ids
        })
    };

    // The storm: until every payment is accepted, and at least five kills.
    let mut kills = Vec::new();
    let storm_started = Instant::now();
    while !creating.is_finished() || kills.len() < 5 {
        tokio::time::sleep(Duration::from_millis(2000 + fastrand::u64(0..1000))).await;
        let victim = if fastrand::bool() {
            "psp-connector-0"
        } else {
            "psp-connector-1"
        };
        stack.signal(victim, "KILL");
        let code = tokio::task::block_in_place(|| stack.wait_exit(victim, Duration::from_secs(5)));
        assert_eq!(code, None, "{victim} killed by the signal");
        kills.push((storm_started.elapsed(), victim));
        stack.restart(victim).await;
        assert!(kills.len() < 20, "creating 2,000 payments takes too long");
    }
    let ids = creating.await.unwrap();
    eprintln!("{} kills: {kills:?}", kills.len());

    let settled =
        client::wait_all_final(&http, &gateway, "alice", &ids, Duration::from_secs(45)).await;
    let mut decided = 0;
    let mut retried = 0;
    for (i, transaction) in settled.iter().enumerate() {
        let expected = expected_of(card_of(i));
        assert_eq!(
            transaction["status"], expected,
            "payment {i}: {transaction}"
        );
        if expected != "failed" {
            decided += 1;
        }
        if transaction["attempts"].as_u64().unwrap_or(0) > 1 && expected != "failed" {
            retried += 1;
        }
    }
    let stats = client::sandbox_stats(&http, &stack).await;
    eprintln!("sandbox: {stats}; {retried} payments took more than one attempt");
    assert_eq!(
        stats["max_charges_per_key"], 1,
        "a key was charged twice: {stats}"
    );
    assert_eq!(stats["total_charges"], decided, "{stats}");
    assert_eq!(stats["keys"], decided, "{stats}");

    // Nothing is left pending in the group once everything is final.
    let mut redis = client::redis(&stack);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pending: redis::Value = redis::cmd("XPENDING")
            .arg("transactions")
            .arg("psp-connector")
            .query(&mut redis)
            .unwrap();
        let count = match &pending {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(n)) => *n,
                _ => 0,
            },
            _ => 0,
        };
        if count == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{count} messages still pending: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    client::assert_no_secrets_in_logs(&stack, &[&token]);
}
