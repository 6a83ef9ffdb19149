//! Routing across two real sandboxes (`psp-a`, `psp-b`): rules, failover
//! on proof of no charge, the lookup after a timeout, the shared circuit
//! breaker, and a connector killed mid-failover. Every test ends on the
//! sandboxes' own stats: at most one charge per payment across both.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{
    Connector, Record, Sandbox, pending_for, records, seed, seed_payments, stat, wait_final,
    wait_until,
};
use platform::psp::PspName;
use platform::testing::RedisServer;
use platform::transaction::{AttemptOutcome, TransactionId};
use psp_sandbox::cards::APPROVED;

/// Not test cards: approved like any other valid card, of these brands.
const AMEX: &str = "378282246310005";
const MASTERCARD: &str = "5555555555554444";

struct Pair {
    a: Sandbox,
    b: Sandbox,
}

impl Pair {
    async fn start(a: (u64, f64), b: (u64, f64)) -> Self {
        Self {
            a: Sandbox::named("psp-a", 0, a.0, a.1).await,
            b: Sandbox::named("psp-b", 0, b.0, b.1).await,
        }
    }

    fn connector(&self, redis: &RedisServer, extra: &[(&str, String)]) -> Connector {
        Connector::spawn_routed(
            &redis.url(),
            &[("psp-a", &self.a), ("psp-b", &self.b)],
            extra,
        )
    }

    /// Charges at each, and the proof: no key charged twice anywhere.
    async fn charges(&self) -> (u64, u64) {
        let (a, b) = (self.a.stats().await, self.b.stats().await);
        assert_eq!(a["psp"], "psp-a");
        assert_eq!(b["psp"], "psp-b");
        for stats in [&a, &b] {
            assert!(stat(stats, "max_charges_per_key") <= 1, "{stats}");
        }
        (stat(&a, "total_charges"), stat(&b, "total_charges"))
    }
}

fn breaker_state(conn: &mut redis::Connection, psp: &str) -> String {
    let hash: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(platform::keyspace::breaker(&PspName::parse(psp).unwrap()))
        .query(conn)
        .unwrap();
    hash.get("state")
        .cloned()
        .unwrap_or_else(|| "closed".into())
}

fn at(records: &HashMap<TransactionId, Record>, ids: &[TransactionId]) -> Vec<Option<String>> {
    ids.iter().map(|id| records[id].psp.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_route_as_configured() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let pair = Pair::start((0, 0.0), (0, 0.0)).await;
    let rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        rules.path(),
        r#"
        default = ["psp-a", "psp-b"]

        [[rule]]
        name = "amex-at-b"
        brand = ["amex"]
        psps = ["psp-b"]

        [[rule]]
        name = "large-usd-at-b"
        currency = ["USD"]
        amount_min = 10000
        psps = ["psp-b", "psp-a"]
        "#,
    )
    .unwrap();
    let connector = pair.connector(
        &redis,
        &[("ROUTING_FILE", rules.path().display().to_string())],
    );
    connector.wait_ready().await;

    let ids = seed_payments(
        &redis,
        &[
            (APPROVED, 1299, "EUR"),
            (AMEX, 1299, "EUR"),
            (MASTERCARD, 10_000, "USD"),
            (MASTERCARD, 9_999, "USD"),
            (APPROVED, 50_000, "EUR"),
        ],
    )
    .await;
    let records = wait_final(&mut conn, &ids, Duration::from_secs(20)).await;
    let expected = ["psp-a", "psp-b", "psp-b", "psp-a", "psp-a"];
    assert_eq!(
        at(&records, &ids),
        expected.map(|psp| Some(psp.to_owned())).to_vec()
    );
    for id in &ids {
        let record = &records[id];
        assert_eq!(record.status, "succeeded", "{record:?}");
        assert!(
            record
                .psp_reference
                .as_deref()
                .is_some_and(|r| r.starts_with("ch_")),
            "{record:?}"
        );
        assert_eq!(
            record.calls(),
            vec![(record.psp.clone().unwrap(), AttemptOutcome::Approved)]
        );
    }
    assert_eq!(pair.charges().await, (3, 2));
}

#[test]
fn a_bad_routing_file_stops_the_connector_with_one_line() {
    let rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(rules.path(), "[[rule]]\nname = \"x\"\npsps = [\"psp-c\"]\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_psp-connector"))
        .env_clear()
        .env(
            "PSP_URLS",
            "psp-a@http://127.0.0.1:1,psp-b@http://127.0.0.1:2",
        )
        .env("ROUTING_FILE", rules.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim_end(),
        "config error: ROUTING_FILE: rule \"x\": psps: unknown PSP psp-c (known: psp-a, psp-b)"
    );
}

/// psp-a answers 503 to everything: every payment succeeds at psp-b, and
/// nothing is charged at psp-a.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_psp_is_failed_over_and_nothing_is_charged_twice() {
    const PAYMENTS: usize = 200;
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let pair = Pair::start((0, 1.0), (0, 0.0)).await;
    let connector = pair.connector(&redis, &[]);
    connector.wait_ready().await;

    let ids = seed(&redis, &[APPROVED; PAYMENTS]).await;
    let records = wait_final(&mut conn, &ids, Duration::from_secs(30)).await;
    let mut failed_over = 0;
    for record in records.values() {
        assert_eq!(record.status, "succeeded", "{record:?}");
        assert_eq!(record.psp.as_deref(), Some("psp-b"));
        let calls = record.calls();
        assert_eq!(
            calls.last(),
            Some(&("psp-b".into(), AttemptOutcome::Approved))
        );
        // psp-a was tried first until its breaker opened, then skipped.
        if calls.len() == 2 {
            assert_eq!(calls[0], ("psp-a".into(), AttemptOutcome::Unavailable));
            failed_over += 1;
        }
        assert_eq!(record.attempts as usize, calls.len(), "{record:?}");
    }
    assert!(failed_over > 0, "some payments met psp-a's 503 first");
    assert_eq!(pair.charges().await, (0, PAYMENTS as u64));
    assert_eq!(breaker_state(&mut conn, "psp-a"), "open");
    let a = pair.a.stats().await;
    assert!(
        stat(&a, "requests") < PAYMENTS as u64,
        "the open breaker spared psp-a most calls: {a}"
    );
}

/// psp-a decides its charges but answers after the connector's timeout:
/// the lookup finds each charge, so nothing goes to psp-b. With psp-a
/// slower still, the timeout comes before the decision: the lookup finds
/// nothing and fences the key, the payment moves to psp-b, and psp-a
/// refuses the late charge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_looked_up_before_any_failover() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    // Decided at ~600 ms, answered at ~1200 ms; the timeout is 900 ms.
    let pair = Pair::start((1200, 0.0), (0, 0.0)).await;
    let connector = pair.connector(
        &redis,
        &[
            ("PSP_TIMEOUT_MS", "900".into()),
            ("BREAKER_FAILURE_THRESHOLD", "1000".into()),
        ],
    );
    connector.wait_ready().await;

    let charged_late = seed(&redis, &[APPROVED; 10]).await;
    let records = wait_final(&mut conn, &charged_late, Duration::from_secs(20)).await;
    for record in records.values() {
        assert_eq!(record.status, "succeeded", "{record:?}");
        assert_eq!(record.psp.as_deref(), Some("psp-a"), "{record:?}");
        assert_eq!(
            record.calls(),
            vec![("psp-a".into(), AttemptOutcome::Approved)]
        );
    }
    assert_eq!(pair.charges().await, (10, 0));

    // Decided at ~1500 ms, after the 900 ms timeout.
    pair.a.set_faults(3000, 0.0).await;
    let never_charged = seed(&redis, &[APPROVED; 10]).await;
    let records = wait_final(&mut conn, &never_charged, Duration::from_secs(20)).await;
    for record in records.values() {
        assert_eq!(record.status, "succeeded", "{record:?}");
        assert_eq!(record.psp.as_deref(), Some("psp-b"), "{record:?}");
        assert_eq!(
            record.calls(),
            vec![
                ("psp-a".into(), AttemptOutcome::Unavailable),
                ("psp-b".into(), AttemptOutcome::Approved)
            ]
        );
        let error = record.attempt_log[0].error.as_deref().unwrap_or_default();
        assert!(error.contains("the lookup found no charge"), "{error}");
    }
    // The late charges reach psp-a after their keys were fenced.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stat(&pair.a.stats().await, "refused_abandoned") < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "psp-a refused the late charges"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pair.charges().await, (10, 10));
}

/// Three failures open psp-a's breaker: payments go straight to psp-b.
/// Once psp-a recovers, the first call after the cool-down is the probe;
/// its success closes the breaker and payments are routed to psp-a again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_and_closes() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let pair = Pair::start((0, 1.0), (0, 0.0)).await;
    let connector = pair.connector(
        &redis,
        &[
            ("BREAKER_FAILURE_THRESHOLD", "3".into()),
            ("BREAKER_WINDOW_MS", "10000".into()),
            ("BREAKER_COOLDOWN_MS", "1500".into()),
            ("CONNECTOR_CONCURRENCY", "1".into()),
        ],
    );
    connector.wait_ready().await;

    let first = seed(&redis, &[APPROVED; 10]).await;
    let records = wait_final(&mut conn, &first, Duration::from_secs(20)).await;
    assert!(records.values().all(|r| r.psp.as_deref() == Some("psp-b")));
    assert_eq!(breaker_state(&mut conn, "psp-a"), "open");
    let calls_at_a = stat(&pair.a.stats().await, "requests");
    assert!(
        (3..10).contains(&calls_at_a),
        "three failures opened it; later payments skipped psp-a ({calls_at_a} calls)"
    );

    pair.a.set_faults(0, 0.0).await;
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let after = seed(&redis, &[APPROVED; 10]).await;
    let records = wait_final(&mut conn, &after, Duration::from_secs(20)).await;
    assert!(
        records.values().all(|r| r.psp.as_deref() == Some("psp-a")),
        "{records:?}"
    );
    assert_eq!(breaker_state(&mut conn, "psp-a"), "closed");
    assert_eq!(pair.charges().await, (10, 10));
}

/// A connector killed with SIGKILL while its payments, failed over from
/// psp-a, are in flight at psp-b (decided there, not yet answered): the
/// survivor asks psp-b first, as the record names it, and gets the stored
/// answer. Nothing is charged at psp-a, nothing twice at psp-b.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_failover_still_charges_at_most_once() {
    const PAYMENTS: usize = 100;
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let pair = Pair::start((0, 1.0), (1600, 0.0)).await;
    let settings = |name: &str| {
        vec![
            ("CONNECTOR_CONSUMER_NAME", name.to_owned()),
            ("CONNECTOR_CLAIM_IDLE_MS", "2500".to_owned()),
            ("PSP_TIMEOUT_MS", "5000".to_owned()),
            ("CONNECTOR_CONCURRENCY", "32".to_owned()),
            // Every payment meets psp-a's 503 first: the failover itself
            // is what is in flight.
            ("BREAKER_FAILURE_THRESHOLD", "100000".to_owned()),
        ]
    };
    let victim = pair.connector(&redis, &settings("victim"));
    victim.wait_ready().await;
    let ids = seed(&redis, &[APPROVED; PAYMENTS]).await;
    wait_until("the victim holds payments", Duration::from_secs(10), || {
        pending_for(&mut conn, "victim") > 0
    })
    .await;
    // psp-b decides after ~800 ms and answers after ~1600 ms.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    victim.child.signal("KILL");
    let in_flight = records(&mut conn, &ids)
        .values()
        .filter(|r| r.status == "processing" && r.psp.as_deref() == Some("psp-b"))
        .count();
    assert!(in_flight > 0, "payments were in flight at psp-b");
    let survivor = pair.connector(&redis, &settings("survivor"));
    survivor.wait_ready().await;

    let records = wait_final(&mut conn, &ids, Duration::from_secs(40)).await;
    assert!(
        records
            .values()
            .all(|r| r.status == "succeeded" && r.psp.as_deref() == Some("psp-b")),
        "{records:?}"
    );
    assert_eq!(pair.charges().await, (0, PAYMENTS as u64));
    let b = pair.b.stats().await;
    assert!(
        stat(&b, "replays") > 0,
        "reclaimed payments got psp-b's stored answer: {b}"
    );
}
