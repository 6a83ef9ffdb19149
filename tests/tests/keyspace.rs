//! Every key the stack writes belongs to `platform::keyspace`: a run that
//! touches each kind of key (logins good and bad, payments with every test
//! card and an Idempotency-Key, lists, retries, a dead letter and a refund), then a
//! SCAN of its Redis. Every other e2e stack makes the same check when it is
//! dropped; this one also lists the patterns it saw.

use std::time::Duration;

use e2e::client::{self, http_client, login, payment, test_cards};
use e2e::stack::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread")]
async fn every_key_the_stack_writes_is_owned_by_the_keyspace_module() {
    // The always-503 card gives up quickly: failed and dead-lettered.
    let stack = Stack::boot_with(
        StackOptions::default()
            .env("psp-connector", "PSP_RETRY_BUDGET_SECS", "1")
            .env("psp-connector", "CONNECTOR_RETRY_BASE_MS", "20"),
    )
    .await;
    let gateway = stack.gateway();
    let http = http_client();

    let refused = http
        .post(format!("{gateway}/auth/token"))
        .form(&[("username", "alice"), ("password", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let token = login(&http, &gateway, "alice").await;

    let mut ids = Vec::new();
    for (i, card) in test_cards().into_iter().enumerate() {
        let body = payment(card, "cus_1", &format!("keyspace-{i}"));
        ids.push(client::create_accepted(&http, &gateway, &token, &body).await);
    }
    let listed = http
        .get(format!(
            "{gateway}/transactions?customer_id=cus_1&status=succeeded"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let settled =
        client::wait_all_final(&http, &gateway, "alice", &ids, Duration::from_secs(30)).await;
    assert!(settled.iter().any(|t| t["status"] == "failed"));
    // A refund: its record, the transaction's refund index, its stream.
    let paid = settled
        .iter()
        .find(|t| t["status"] == "succeeded")
        .expect("a succeeded payment");
    let refunded = http
        .post(format!(
            "{gateway}/transactions/{}/refunds",
            paid["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .header("idempotency-key", "keyspace-refund")
        .json(&serde_json::json!({"amount": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(refunded.status(), 202);

    let (unowned, patterns) = stack.audit_keyspace();
    eprintln!("key patterns written: {patterns:#?}");
    assert!(unowned.is_empty(), "keys no module owns: {unowned:?}");
    for expected in [
        "tx:{id}",
        "merchant:{m}:tx",
        "merchant:{m}:status:{status}:tx",
        "merchant:{m}:customer:{customer_id}:tx",
        "merchant:{m}:reference:{reference}:tx",
        "merchant:{m}:created_by:{user}:tx",
        "idem:{merchant}:{key}",
        "auth:logins:{digest}",
        "transactions",
        "transactions:dead",
        "refund:{id}",
        "tx:{id}:refunds",
        "refunds",
    ] {
        assert!(
            patterns.contains(expected),
            "{expected} not seen: {patterns:?}"
        );
    }
}
