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

/// Point 8: a card number where none belongs — an identifier, a reference,
/// metadata — is refused (422, naming the field) before anything is
/// stored or becomes part of a key name; accepted card numbers are exactly
/// those the logs mask (13–19 digits, never all zeros).
#[tokio::test(flavor = "multi_thread")]
async fn card_numbers_outside_the_card_are_refused_and_card_lengths_match_the_masking() {
    let app = App::start().await;
    let alice = app.alice();
    let with = |field: &str, value: serde_json::Value| {
        let mut body = valid_body();
        match field.split_once('.') {
            Some((outer, inner)) => body[outer][inner] = value,
            None => body[field] = value,
        }
        body
    };
    for (field, value, param) in [
        ("customer_id", "4242424242424242", "customer_id"),
        ("customer_id", "cus-4242-4242-4242-4242", "customer_id"),
        ("reference", "4000000000000002", "reference"),
        ("reference", "order-378282246310005", "reference"),
        ("metadata.note", "card 4242 4242 4242 4242", "metadata.note"),
        ("metadata.note", "4242-4242-4242-4242", "metadata.note"),
    ] {
        let reply = app
            .create(&alice, &with(field, serde_json::json!(value)), None)
            .await;
        assert_eq!(
            reply.error(),
            (422, "card_number_not_allowed", Some(param)),
            "{field}={value}: {}",
            reply.text
        );
        assert!(!reply.text.contains(value), "never echoed: {}", reply.text);
    }
    let mut key = valid_body();
    key["metadata"] = serde_json::json!({"4242424242424242": "x"});
    let reply = app.create(&alice, &key, None).await;
    assert_eq!(
        reply.error(),
        (422, "card_number_not_allowed", Some("metadata"))
    );

    for number in ["424242424242", "0000000000000000", "0000000000000"] {
        let reply = app
            .create(
                &alice,
                &with("payment_method.number", serde_json::json!(number)),
                None,
            )
            .await;
        assert_eq!(
            reply.error(),
            (422, "invalid_card_number", Some("payment_method.number")),
            "{number}: {}",
            reply.text
        );
    }
    assert!(app.record_ids().is_empty(), "nothing was stored");
    // A PAN as a list filter is refused too (it would be a key name).
    let reply = app
        .get(&alice, "/transactions?customer_id=4242424242424242")
        .await;
    assert_eq!(reply.error().0, 400);
    // Near misses are fine: a 13-digit card, numeric references.
    let reply = app
        .create(
            &alice,
            &with("payment_method.number", serde_json::json!("4222222222222")),
            None,
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let reply = app
        .create(
            &alice,
            &with("reference", serde_json::json!("order-20261122-0042")),
            None,
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert!(
        !app.logs().contains("4242424242424242"),
        "no card number in the log"
    );
}
