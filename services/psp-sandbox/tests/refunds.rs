//! The sandbox's refund API, booted in-process on port 0: the same
//! idempotency promise as charges, and never more refunded than charged.

use std::net::SocketAddr;

use platform::testing::Spawned;
use psp_sandbox::{Config, FailureRate};
use serde_json::{Value, json};

struct Sandbox {
    url: String,
    client: reqwest::Client,
    _served: Spawned,
}

async fn boot(failure_rate: f64) -> Sandbox {
    let mut config = Config::on(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.psp_failure_rate = FailureRate::new(failure_rate).unwrap();
    let served = Spawned::start(config, psp_sandbox::build).await;
    Sandbox {
        url: served.url(),
        client: reqwest::Client::new(),
        _served: served,
    }
}

impl Sandbox {
    /// An approved charge of `amount` EUR cents (retried under its key
    /// through injected 503s); its id.
    async fn charge(&self, amount: u64, card: &str) -> (u16, Value) {
        let key = format!("c{}", fastrand_key());
        loop {
            let response = self
                .client
                .post(format!("{}/charges", self.url))
                .header("Idempotency-Key", &key)
                .json(&json!({
                    "amount": amount, "currency": "EUR",
                    "card": {"number": card, "expiry_month": 12, "expiry_year": 2030, "cvc": "123"},
                }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            if status != 503 {
                return (status, response.json().await.unwrap());
            }
        }
    }

    async fn refund(&self, charge: &str, key: Option<&str>, body: &Value) -> (u16, Value, bool) {
        let mut request = self
            .client
            .post(format!("{}/charges/{charge}/refunds", self.url))
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let replayed = response.headers().get("idempotent-replayed").is_some();
        (status, response.json().await.unwrap(), replayed)
    }

    async fn stats(&self) -> Value {
        self.client
            .get(format!("{}/refunds/stats", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn refunds_are_idempotent_and_never_exceed_the_charge() {
    let sandbox = boot(0.0).await;
    let (status, charge) = sandbox.charge(1299, "4242424242424242").await;
    assert_eq!(status, 200, "{charge}");
    let charge = charge["id"].as_str().unwrap().to_owned();

    let (status, first, replayed) = sandbox
        .refund(&charge, Some("r1"), &json!({"amount": 500}))
        .await;
    assert_eq!((status, replayed), (200, false), "{first}");
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["charge"], charge.as_str());
    assert_eq!(first["currency"], "EUR");
    assert!(first["id"].as_str().unwrap().starts_with("re_"));

    // The same key and body: the first answer again, marked.
    let (status, again, replayed) = sandbox
        .refund(&charge, Some("r1"), &json!({"amount": 500}))
        .await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(again, first);
    // The same key, another body (or another charge): refused.
    let (status, body, _) = sandbox
        .refund(&charge, Some("r1"), &json!({"amount": 501}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["code"], "idempotency_key_reused");

    // 799 left: 800 is too much, and refused without being stored.
    let (status, body, _) = sandbox
        .refund(&charge, Some("r2"), &json!({"amount": 800}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["code"], "refund_exceeds_charge");
    let (status, _, _) = sandbox
        .refund(&charge, Some("r3"), &json!({"amount": 799}))
        .await;
    assert_eq!(status, 200);
    let (status, body, _) = sandbox
        .refund(&charge, Some("r4"), &json!({"amount": 1}))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("refund_exceeds_charge"))
    );

    // Unknown and declined charges are not found; bad requests are 4xx.
    let (status, body, _) = sandbox
        .refund("ch_nope", Some("r5"), &json!({"amount": 1}))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("charge_not_found"))
    );
    let (status, declined) = sandbox.charge(1299, "4000000000000002").await;
    assert_eq!(status, 402);
    let (status, _, _) = sandbox
        .refund(
            declined["id"].as_str().unwrap(),
            Some("r6"),
            &json!({"amount": 1}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body, _) = sandbox.refund(&charge, None, &json!({"amount": 1})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("idempotency_key_missing"))
    );
    let (status, _, _) = sandbox
        .refund(&charge, Some("r7"), &json!({"amount": 0}))
        .await;
    assert_eq!(status, 422);

    let stats = sandbox.stats().await;
    assert_eq!(stats["total_refunds"], 2, "{stats}");
    assert_eq!(stats["refunded_amount"], 1299);
    assert_eq!(stats["max_refunds_per_key"], 1);
    assert_eq!(stats["replays"], 1);
    assert_eq!(stats["refused_exceeding"], 2);
    assert_eq!(stats["over_refunded_charges"], 0);
}

#[tokio::test]
async fn concurrent_refunds_decide_once_per_key_and_never_overdraw() {
    let sandbox = std::sync::Arc::new(boot(0.0).await);
    let (_, charge) = sandbox.charge(1000, "4242424242424242").await;
    let charge = charge["id"].as_str().unwrap().to_owned();

    // Twenty requests with one key: one refund, nineteen replays of it.
    let same: Vec<_> = (0..20)
        .map(|_| {
            let (sandbox, charge) = (sandbox.clone(), charge.clone());
            tokio::spawn(async move {
                sandbox
                    .refund(&charge, Some("one-key"), &json!({"amount": 300}))
                    .await
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for task in same {
        let (status, body, _) = task.await.unwrap();
        assert_eq!(status, 200);
        ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);

    // Twenty keys of 100 each on the 700 left: exactly seven fit.
    let many: Vec<_> = (0..20)
        .map(|i| {
            let (sandbox, charge) = (sandbox.clone(), charge.clone());
            tokio::spawn(async move {
                sandbox
                    .refund(&charge, Some(&format!("k{i}")), &json!({"amount": 100}))
                    .await
                    .0
            })
        })
        .collect();
    let mut accepted = 0;
    for task in many {
        match task.await.unwrap() {
            200 => accepted += 1,
            422 => {}
            other => panic!("status {other}"),
        }
    }
    assert_eq!(accepted, 7);
    let stats = sandbox.stats().await;
    assert_eq!(stats["total_refunds"], 8, "{stats}");
    assert_eq!(stats["refunded_amount"], 1000);
    assert_eq!(stats["max_refunds_per_key"], 1);
    assert_eq!(stats["over_refunded_charges"], 0);
}

#[tokio::test]
async fn an_injected_503_decides_nothing() {
    let sandbox = boot(0.5).await;
    let (_, charge) = sandbox.charge(1000, "4242424242424242").await;
    let charge = charge["id"].as_str().unwrap().to_owned();
    let mut unavailable = 0;
    loop {
        let (status, _, replayed) = sandbox
            .refund(&charge, Some("retried"), &json!({"amount": 1000}))
            .await;
        match status {
            503 => unavailable += 1,
            200 => {
                assert!(!replayed, "the first 200 is the decision");
                break;
            }
            other => panic!("status {other}"),
        }
    }
    let stats = sandbox.stats().await;
    assert_eq!(stats["total_refunds"], 1, "{stats}");
    assert_eq!(stats["unavailable"], unavailable);
    assert_eq!(stats["max_refunds_per_key"], 1);
}

/// A fresh key per charge.
fn fastrand_key() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
