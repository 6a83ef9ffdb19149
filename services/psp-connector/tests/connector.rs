//! The connector against real Redis, the real sandbox and real connector
//! processes (issue 5's required tests).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{
    Connector, Sandbox, pending_count, pending_for, records, seed, stat, stream_entries,
    wait_final, wait_until,
};
use platform::keyspace::{DEAD_LETTER_STREAM, Index, PAYLOAD_FIELD, RETRY_SET, STREAM};
use platform::testing::{RedisServer, free_port};
use platform::transaction::Status;
use redis::Commands;

use psp_sandbox::cards::{
    APPROVED, DECLINED, EXPIRED_CARD as EXPIRED, INSUFFICIENT_FUNDS as INSUFFICIENT,
    PROCESSING_ERROR,
};
/// Not a test card: approved like any other valid card.
const OTHER_APPROVED: &str = "5555555555554444";

fn expected(card: &str) -> (&'static str, Option<&'static str>, Option<&'static str>) {
    match card {
        DECLINED => ("declined", Some("card_declined"), None),
        INSUFFICIENT => ("declined", Some("insufficient_funds"), None),
        EXPIRED => ("declined", Some("expired_card"), None),
        PROCESSING_ERROR => ("failed", None, Some("psp_unavailable")),
        _ => ("succeeded", None, None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_mixed_transactions_reach_their_expected_status() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let sandbox = Sandbox::start(0, 0, 0.0).await;
    let connector = Connector::spawn(&redis.url(), &sandbox.url(), &[]);
    connector.wait_ready().await;

    let mix = [
        APPROVED,
        OTHER_APPROVED,
        DECLINED,
        APPROVED,
        INSUFFICIENT,
        APPROVED,
        EXPIRED,
        APPROVED,
        PROCESSING_ERROR,
        APPROVED,
    ];
    let cards: Vec<&str> = (0..1000).map(|i| mix[i % mix.len()]).collect();
    let ids = seed(&redis, &cards).await;
    let records = wait_final(&mut conn, &ids, Duration::from_secs(60)).await;

    let mut decided = 0;
    let mut attempts = 0;
    for (id, card) in ids.iter().zip(&cards) {
        let record = &records[id];
        let (status, decline_code, failure_reason) = expected(card);
        assert_eq!(record.status, status, "{id} ({card})");
        assert_eq!(record.decline_code.as_deref(), decline_code, "{id}");
        assert_eq!(record.failure_reason.as_deref(), failure_reason, "{id}");
        if *card == PROCESSING_ERROR {
            assert_eq!(record.attempts, 3, "{id} tried PSP_MAX_ATTEMPTS times");
        } else {
            assert_eq!(record.attempts, 1, "{id}");
            decided += 1;
        }
        attempts += u64::from(record.attempts);
    }

    let stats = sandbox.stats().await;
    assert_eq!(stat(&stats, "total_charges"), decided, "{stats}");
    assert_eq!(stat(&stats, "keys"), decided, "{stats}");
    assert_eq!(stat(&stats, "max_charges_per_key"), 1, "{stats}");
    assert_eq!(
        stat(&stats, "requests"),
        attempts,
        "every attempt reached the PSP once: {stats}"
    );

    // Finished entries are gone (no card numbers linger); nothing pending.
    wait_until("stream emptied", Duration::from_secs(5), || {
        conn.xlen::<_, u64>(STREAM).unwrap() == 0 && pending_count(&mut conn) == 0
    })
    .await;
    let dead = stream_entries(&mut conn, DEAD_LETTER_STREAM);
    assert_eq!(dead.len(), 100, "one dead letter per 0119 card");
    assert!(
        dead.iter()
            .all(|(_, f)| f["reason"] == "max_attempts_exceeded")
    );
    let retry_left: u64 = conn.zcard(RETRY_SET).unwrap();
    assert_eq!(retry_left, 0);
    // The status indexes followed the status.
    let succeeded: u64 = conn
        .zcard(Index::Status(Status::Succeeded).key(common::MERCHANT))
        .unwrap();
    assert_eq!(succeeded, 600);
    let pending: u64 = conn
        .zcard(Index::Status(Status::Pending).key(common::MERCHANT))
        .unwrap();
    assert_eq!(pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_psp_still_settles_everything_once() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let sandbox = Sandbox::start(0, 0, 0.3).await;
    // 0.3^10: a transaction failing every attempt is not a realistic flake.
    let connector = Connector::spawn(
        &redis.url(),
        &sandbox.url(),
        &[("PSP_MAX_ATTEMPTS", "10".into())],
    );
    connector.wait_ready().await;

    let ids = seed(&redis, &[APPROVED; 300]).await;
    let records = wait_final(&mut conn, &ids, Duration::from_secs(60)).await;
    assert!(
        records.values().all(|r| r.status == "succeeded"),
        "{records:?}"
    );
    let retried = records.values().filter(|r| r.attempts > 1).count();
    assert!(
        retried > 0,
        "with 30 % 503s some transactions needed retries"
    );

    let stats = sandbox.stats().await;
    assert_eq!(stat(&stats, "total_charges"), 300, "{stats}");
    assert_eq!(stat(&stats, "max_charges_per_key"), 1, "{stats}");
    let attempts: u64 = records.values().map(|r| u64::from(r.attempts)).sum();
    assert_eq!(stat(&stats, "requests"), attempts, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psp_down_fails_after_max_attempts_then_recovers() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    // Nothing listens on this port until the sandbox comes back.
    let port = free_port();
    let psp_url = format!("http://127.0.0.1:{port}");
    // PSP_MAX_ATTEMPTS is the subject here; an open breaker would stop the
    // attempts short of it (the breaker has tests of its own).
    let connector = Connector::spawn(
        &redis.url(),
        &psp_url,
        &[("BREAKER_FAILURE_THRESHOLD", "1000000".into())],
    );
    connector.wait_ready().await;

    let down = seed(&redis, &[APPROVED; 20]).await;
    let records = wait_final(&mut conn, &down, Duration::from_secs(30)).await;
    for (id, record) in &records {
        assert_eq!(record.status, "failed", "{id}");
        assert_eq!(record.failure_reason.as_deref(), Some("psp_unavailable"));
        assert_eq!(record.attempts, 3, "{id}: PSP_MAX_ATTEMPTS");
    }
    wait_until("dead letters written", Duration::from_secs(5), || {
        stream_entries(&mut conn, DEAD_LETTER_STREAM).len() == 20
    })
    .await;
    let dead = stream_entries(&mut conn, DEAD_LETTER_STREAM);
    let dead_ids: Vec<&str> = dead
        .iter()
        .map(|(_, f)| f["transaction_id"].as_str())
        .collect();
    for id in &down {
        assert!(dead_ids.contains(&id.as_str()), "{id} dead-lettered");
    }
    for (_, fields) in &dead {
        assert_eq!(fields["reason"], "max_attempts_exceeded");
        assert_eq!(fields["error"], "connection failed");
        assert_eq!(fields["attempts"], "3");
        assert!(fields["request_id"].starts_with("req-"));
        assert!(!fields["entry_id"].is_empty());
        assert!(
            fields.values().all(|v| !v.contains(APPROVED)),
            "no card number in a dead letter: {fields:?}"
        );
    }

    let sandbox = Sandbox::start(port, 0, 0.0).await;
    let up = seed(&redis, &[APPROVED; 20]).await;
    let records = wait_final(&mut conn, &up, Duration::from_secs(30)).await;
    assert!(
        records.values().all(|r| r.status == "succeeded"),
        "{records:?}"
    );
    assert_eq!(stat(&sandbox.stats().await, "total_charges"), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_in_flight_messages_loses_nothing_and_charges_once() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    // Latency 2 s: the sandbox decides after 1 s and answers after 2 s.
    let sandbox = Sandbox::start(0, 2000, 0.0).await;
    let settings = |name: &str| {
        vec![
            ("CONNECTOR_CONSUMER_NAME", name.to_owned()),
            // Above the 2 s charges: only the dead consumer's entries go idle.
            ("CONNECTOR_CLAIM_IDLE_MS", "3000".to_owned()),
            ("PSP_TIMEOUT_MS", "5000".to_owned()),
            ("CONNECTOR_CONCURRENCY", "32".to_owned()),
        ]
    };
    let victim = Connector::spawn(&redis.url(), &sandbox.url(), &settings("victim"));
    let survivor = Connector::spawn(&redis.url(), &sandbox.url(), &settings("survivor"));
    victim.wait_ready().await;
    survivor.wait_ready().await;

    let ids = seed(&redis, &[APPROVED; 300]).await;
    // Kill while the victim holds messages whose charges the sandbox has
    // already decided but not yet answered (it decides half-way through its
    // latency): the survivor must get the stored answer, not a new charge.
    // The victim sends a charge as soon as it holds an entry, and it stays
    // saturated (300 charges of 2 s over 64 slots), so 1.2 s after it first
    // holds entries its earliest charges are decided and not yet answered
    // — with 800 ms to spare for a loaded machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pending_for(&mut conn, "victim") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "victim never had charges in flight"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    victim.child.signal("KILL");
    let held = pending_for(&mut conn, "victim");
    assert!(held > 0);

    // 300 × 2 s over 64 slots is ~10 s, plus the 3 s claim idle time;
    // 40 s is slack for a loaded machine.
    let records = wait_final(&mut conn, &ids, Duration::from_secs(40)).await;
    assert!(
        records.values().all(|r| r.status == "succeeded"),
        "{records:?}"
    );
    let reclaimed = records.values().filter(|r| r.attempts > 1).count();
    assert!(
        reclaimed > 0,
        "messages held by the killed consumer were charged again"
    );

    let stats = sandbox.stats().await;
    assert_eq!(stat(&stats, "total_charges"), 300, "{stats}");
    assert_eq!(stat(&stats, "max_charges_per_key"), 1, "{stats}");
    assert!(
        stat(&stats, "replays") > 0,
        "a reclaimed charge was answered from the key: {stats}"
    );
    wait_until("nothing pending", Duration::from_secs(5), || {
        pending_count(&mut conn) == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_is_dead_lettered_and_the_queue_keeps_flowing() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let sandbox = Sandbox::start(0, 0, 0.0).await;
    let connector = Connector::spawn(&redis.url(), &sandbox.url(), &[]);
    connector.wait_ready().await;

    let not_json: String = conn
        .xadd(
            STREAM,
            "*",
            &[(
                PAYLOAD_FIELD,
                "{\"card\": {\"number\": \"4242424242424242\"",
            )],
        )
        .unwrap();
    let no_payload: String = conn.xadd(STREAM, "*", &[("something", "else")]).unwrap();
    let ids = seed(&redis, &[APPROVED; 10]).await;

    let records = wait_final(&mut conn, &ids, Duration::from_secs(20)).await;
    assert!(records.values().all(|r| r.status == "succeeded"));
    wait_until("poison dead-lettered", Duration::from_secs(5), || {
        stream_entries(&mut conn, DEAD_LETTER_STREAM).len() == 2
    })
    .await;
    let dead: HashMap<String, HashMap<String, String>> =
        stream_entries(&mut conn, DEAD_LETTER_STREAM)
            .into_iter()
            .map(|(_, fields)| (fields["entry_id"].clone(), fields))
            .collect();
    for poison in [&not_json, &no_payload] {
        assert_eq!(dead[poison]["reason"], "undecodable", "{dead:?}");
        assert!(!dead[poison]["error"].contains("4242"), "{dead:?}");
    }
    wait_until(
        "poison acknowledged and deleted",
        Duration::from_secs(5),
        || conn.xlen::<_, u64>(STREAM).unwrap() == 0 && pending_count(&mut conn) == 0,
    )
    .await;

    // A duplicate delivery of a finished transaction is only acknowledged.
    let first = &ids[0];
    let message = platform::queue::ChargeMessage {
        transaction_id: first.to_string(),
        request_id: "req-dup".into(),
        merchant_id: common::MERCHANT.into(),
        amount: 1299,
        currency: "EUR".into(),
        card: platform::crypto::CardKey::development().seal(
            &platform::queue::CardDetails {
                number: APPROVED.into(),
                expiry_month: 12,
                expiry_year: 2030,
                cvc: "123".into(),
            },
            first.as_str(),
            common::MERCHANT,
        ),
        first_attempt_ms: None,
    };
    let _: String = conn
        .xadd(STREAM, "*", &[(PAYLOAD_FIELD, message.to_payload())])
        .unwrap();
    wait_until("duplicate acknowledged", Duration::from_secs(5), || {
        conn.xlen::<_, u64>(STREAM).unwrap() == 0 && pending_count(&mut conn) == 0
    })
    .await;
    assert_eq!(records_of(&mut conn, first).attempts, 1, "no new attempt");
    let stats = sandbox.stats().await;
    assert_eq!(stat(&stats, "requests"), 10, "{stats}");
}

fn records_of(
    conn: &mut redis::Connection,
    id: &platform::transaction::TransactionId,
) -> common::Record {
    records(conn, std::slice::from_ref(id)).remove(id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_charges_and_exits_0() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let sandbox = Sandbox::start(0, 1500, 0.0).await;
    let connector = Connector::spawn(&redis.url(), &sandbox.url(), &[]);
    connector.wait_ready().await;

    let ids = seed(&redis, &[APPROVED; 5]).await;
    wait_until("all five in flight", Duration::from_secs(5), || {
        records(&mut conn, &ids)
            .values()
            .all(|r| r.status == "processing")
    })
    .await;
    connector.child.signal("TERM");
    let (status, logs) = connector.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{logs}");

    let records = records(&mut conn, &ids);
    assert!(
        records.values().all(|r| r.status == "succeeded"),
        "{records:?}"
    );
    assert_eq!(pending_count(&mut conn), 0);

    // Every line about a transaction names it and the request that made it.
    for id in &ids {
        let line = logs
            .lines()
            .find(|line| line.contains("transaction final") && line.contains(id.as_str()))
            .unwrap_or_else(|| panic!("no final log line for {id}:\n{logs}"));
        let request_id: String = conn
            .hget(
                platform::keyspace::record(id),
                platform::keyspace::field::REQUEST_ID,
            )
            .unwrap();
        assert!(line.contains(&request_id), "{request_id}: {line}");
    }
    assert!(!logs.contains(APPROVED), "card number in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_not_finished_within_the_drain_timeout_is_reclaimed() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let sandbox = Sandbox::start(0, 3000, 0.0).await;
    let first = Connector::spawn(
        &redis.url(),
        &sandbox.url(),
        &[
            ("SHUTDOWN_TIMEOUT_SECS", "1".into()),
            ("PSP_TIMEOUT_MS", "5000".into()),
        ],
    );
    first.wait_ready().await;
    let ids = seed(&redis, &[APPROVED; 3]).await;
    wait_until("in flight", Duration::from_secs(5), || {
        records(&mut conn, &ids)
            .values()
            .all(|r| r.status == "processing")
    })
    .await;
    first.child.signal("TERM");
    let (status, logs) = first.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{logs}");
    assert_eq!(
        pending_count(&mut conn),
        3,
        "unfinished messages stay pending"
    );

    let second = Connector::spawn(
        &redis.url(),
        &sandbox.url(),
        &[
            ("CONNECTOR_CLAIM_IDLE_MS", "500".into()),
            ("PSP_TIMEOUT_MS", "5000".into()),
        ],
    );
    second.wait_ready().await;
    let records = wait_final(&mut conn, &ids, Duration::from_secs(20)).await;
    assert!(
        records.values().all(|r| r.status == "succeeded"),
        "{records:?}"
    );
    let stats = sandbox.stats().await;
    assert_eq!(stat(&stats, "max_charges_per_key"), 1, "{stats}");
    assert_eq!(stat(&stats, "total_charges"), 3, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_redis_and_work_resumes_after_a_restart() {
    let mut redis = RedisServer::start();
    let sandbox = Sandbox::start(0, 0, 0.0).await;
    let connector = Connector::spawn(&redis.url(), &sandbox.url(), &[]);
    connector.wait_ready().await;
    let readyz = format!("http://{}/readyz", connector.health);

    redis.stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = reqwest::get(&readyz).await.expect("readyz answers");
        if response.status() == 503 {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "not_ready");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still ready without Redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let healthz = reqwest::get(format!("http://{}/healthz", connector.health))
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200, "alive, just not ready");

    redis.restart();
    connector.wait_ready().await;
    let mut conn = redis.connection();
    let ids = seed(&redis, &[APPROVED; 10]).await;
    let records = wait_final(&mut conn, &ids, Duration::from_secs(20)).await;
    assert!(records.values().all(|r| r.status == "succeeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_of_exited_processes_are_removed_from_the_group() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let sandbox = Sandbox::start(0, 0, 0.0).await;
    let gone = Connector::spawn(
        &redis.url(),
        &sandbox.url(),
        &[("CONNECTOR_CONSUMER_NAME", "gone".into())],
    );
    gone.wait_ready().await;
    let names = |conn: &mut redis::Connection| -> Vec<String> {
        let reply: redis::streams::StreamInfoConsumersReply = conn
            .xinfo_consumers(STREAM, platform::keyspace::GROUP)
            .unwrap();
        reply.consumers.into_iter().map(|c| c.name).collect()
    };
    // A consumer joins the group with the first entry it is handed.
    let ids = seed(&redis, &[APPROVED]).await;
    wait_final(&mut conn, &ids, Duration::from_secs(10)).await;
    wait_until("consumer joined the group", Duration::from_secs(5), || {
        names(&mut conn).contains(&"gone".to_owned())
    })
    .await;
    gone.child.signal("TERM");
    let (status, _) = gone.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));

    let stays = Connector::spawn(
        &redis.url(),
        &sandbox.url(),
        &[
            ("CONNECTOR_CONSUMER_NAME", "stays".into()),
            ("CONNECTOR_CLAIM_IDLE_MS", "500".into()),
        ],
    );
    stays.wait_ready().await;
    // Removed once idle for 5 s (the minimum), checked every 250 ms.
    wait_until("departed consumer removed", Duration::from_secs(15), || {
        !names(&mut conn).contains(&"gone".to_owned())
    })
    .await;
    let ids = seed(&redis, &[APPROVED]).await;
    wait_final(&mut conn, &ids, Duration::from_secs(10)).await;
    assert_eq!(names(&mut conn), vec!["stays".to_owned()]);
}

#[test]
fn bad_settings_stop_the_process_with_a_one_line_error() {
    for (name, value, problem) in [
        ("PSP_MAX_ATTEMPTS", "0", "must be at least 1"),
        ("PSP_RETRY_BUDGET_SECS", "0", "at least 1 s"),
        ("CARD_ENCRYPTION_KEY", "0123", "must be 32 bytes"),
        ("CONNECTOR_CONCURRENCY", "many", "invalid digit"),
        ("PSP_URL", "ftp://psp", "http"),
        ("CONNECTOR_CLAIM_IDLE_MS", "0", "at least 1 ms"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_psp-connector"))
            .env_clear()
            .env(name, value)
            .output()
            .expect("run psp-connector");
        assert_eq!(output.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with(&format!("config error: {name}:")) && stderr.contains(problem),
            "{name}={value}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

/// A PSP answering 503 to everything for 8 s, then healthy again (issue 21,
/// point 4), with the connector's default retry settings: every payment
/// succeeds once the PSP is back, none is failed, none charged twice. With
/// the old five attempts at a 250 ms base (3.75 s at most) most failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_psp_outage_within_the_retry_budget_fails_nothing() {
    const PAYMENTS: usize = 200;
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let port = free_port();
    let outage = Sandbox::start(port, 0, 1.0).await;
    let connector = Connector::spawn(
        &redis.url(),
        &outage.url(),
        &[
            ("PSP_MAX_ATTEMPTS", String::new()),
            ("CONNECTOR_RETRY_BASE_MS", String::new()),
            ("CONNECTOR_RETRY_MAX_MS", String::new()),
        ],
    );
    connector.wait_ready().await;

    let ids = seed(&redis, &[APPROVED; PAYMENTS]).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during = records(&mut conn, &ids);
    assert!(
        during
            .values()
            .all(|r| r.status == "processing" || r.status == "pending"),
        "nothing final while the PSP answers 503: {during:?}"
    );
    // The breaker opened: the waiting payments are not hammering the PSP.
    let breaker: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(platform::keyspace::breaker(
            &platform::psp::PspName::parse("psp-a").unwrap(),
        ))
        .query(&mut conn)
        .unwrap();
    assert!(
        matches!(
            breaker.get("state").map(String::as_str),
            Some("open" | "half_open")
        ),
        "{breaker:?}"
    );
    let refused = stat(&outage.stats().await, "unavailable");
    assert_eq!(stat(&outage.stats().await, "total_charges"), 0);
    outage.stop().await;

    let healthy = Sandbox::start(port, 0, 0.0).await;
    let settled = wait_final(&mut conn, &ids, Duration::from_secs(30)).await;
    let failed: Vec<_> = settled
        .values()
        .filter(|r| r.status != "succeeded")
        .collect();
    assert!(
        failed.is_empty(),
        "{} not succeeded: {failed:?}",
        failed.len()
    );
    let stats = healthy.stats().await;
    assert_eq!(stat(&stats, "total_charges"), PAYMENTS as u64, "{stats}");
    assert_eq!(stat(&stats, "keys"), PAYMENTS as u64, "{stats}");
    assert_eq!(stat(&stats, "max_charges_per_key"), 1, "{stats}");
    assert!(stream_entries(&mut conn, DEAD_LETTER_STREAM).is_empty());
    eprintln!("{refused} requests answered 503 during the 8 s outage");
}

/// Past the budget a payment is failed and dead-lettered as
/// `retry_budget_exhausted`, however few attempts that took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_when_the_budget_is_spent() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let psp_url = format!("http://127.0.0.1:{}", free_port());
    let connector = Connector::spawn(
        &redis.url(),
        &psp_url,
        &[
            ("PSP_MAX_ATTEMPTS", String::new()),
            ("PSP_RETRY_BUDGET_SECS", "2".into()),
            ("CONNECTOR_RETRY_MAX_MS", "200".into()),
        ],
    );
    connector.wait_ready().await;
    let started = std::time::Instant::now();
    let ids = seed(&redis, &[APPROVED; 5]).await;
    let settled = wait_final(&mut conn, &ids, Duration::from_secs(15)).await;
    assert!(started.elapsed() >= Duration::from_secs(2));
    for record in settled.values() {
        assert_eq!(record.status, "failed", "{record:?}");
        assert_eq!(record.failure_reason.as_deref(), Some("psp_unavailable"));
        assert!(record.attempts > 3, "kept trying for 2 s: {record:?}");
    }
    wait_until("dead letters written", Duration::from_secs(5), || {
        stream_entries(&mut conn, DEAD_LETTER_STREAM).len() == 5
    })
    .await;
    for (_, fields) in stream_entries(&mut conn, DEAD_LETTER_STREAM) {
        assert_eq!(fields["reason"], "retry_budget_exhausted", "{fields:?}");
    }
}

/// A connector whose CARD_ENCRYPTION_KEY is not core-api's cannot open the
/// cards: each transaction is failed (`card_unreadable`) and dead-lettered
/// (`undecryptable`) at once, without a call to the PSP, and the queue
/// keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_sealed_with_another_key_fail_without_a_charge() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let sandbox = Sandbox::start(0, 0, 0.0).await;
    let other = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";
    let connector = Connector::spawn(
        &redis.url(),
        &sandbox.url(),
        &[("CARD_ENCRYPTION_KEY", other.into())],
    );
    connector.wait_ready().await;
    let ids = seed(&redis, &[APPROVED; 5]).await;
    let settled = wait_final(&mut conn, &ids, Duration::from_secs(10)).await;
    for record in settled.values() {
        assert_eq!(record.status, "failed", "{record:?}");
        assert_eq!(record.failure_reason.as_deref(), Some("card_unreadable"));
        assert_eq!(record.attempts, 0);
    }
    wait_until("dead letters written", Duration::from_secs(5), || {
        stream_entries(&mut conn, DEAD_LETTER_STREAM).len() == 5
    })
    .await;
    for (_, fields) in stream_entries(&mut conn, DEAD_LETTER_STREAM) {
        assert_eq!(fields["reason"], "undecryptable", "{fields:?}");
    }
    assert_eq!(stat(&sandbox.stats().await, "requests"), 0);
}
