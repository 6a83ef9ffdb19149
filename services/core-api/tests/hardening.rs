//! Careless and hostile clients (issue 21): ambiguous requests, card
//! numbers where none belong, and filtered lists that must stay cheap.

mod support;

use support::{App, valid_body};

/// Point 10: a request that says one thing twice is refused, naming what
/// was doubled, instead of silently using one of them.
#[tokio::test(flavor = "multi_thread")]
async fn doubled_headers_parameters_and_fields_are_refused_by_name() {
    let app = App::start().await;
    let alice = app.alice();

    let response = app
        .client
        .post(format!("{}/transactions", app.base))
        .bearer_auth(&alice)
        .header("Idempotency-Key", "order-42-a")
        .header("Idempotency-Key", "order-42-b")
        .json(&valid_body())
        .send()
        .await
        .unwrap();
    let reply = support::Reply::from(response).await;
    assert_eq!(
        reply.error(),
        (400, "invalid_idempotency_key", Some("Idempotency-Key")),
        "{}",
        reply.text
    );
    assert!(app.record_ids().is_empty(), "nothing written");

    for (query, param) in [
        ("status=failed&status=pending", "status"),
        ("customer_id=cus_1&limit=5&customer_id=cus_2", "customer_id"),
        ("limit=5&limit=6", "limit"),
    ] {
        let reply = app.get(&alice, &format!("/transactions?{query}")).await;
        assert_eq!(
            reply.error(),
            (400, "duplicate_parameter", Some(param)),
            "{query}: {}",
            reply.text
        );
    }

    let doubled = r#"{"amount": 1299, "amount": 1, "currency": "EUR",
        "payment_method": {"type": "card", "number": "4242424242424242",
        "expiry_month": 12, "expiry_year": 2030, "cvc": "123"}}"#;
    let response = app
        .client
        .post(format!("{}/transactions", app.base))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body(doubled)
        .send()
        .await
        .unwrap();
    let reply = support::Reply::from(response).await;
    assert_eq!(
        reply.error(),
        (422, "duplicate_field", Some("amount")),
        "{}",
        reply.text
    );
    assert!(app.record_ids().is_empty(), "nothing written");
    // One of each is fine.
    let reply = app.create(&alice, &valid_body(), Some("order-42-a")).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
}
