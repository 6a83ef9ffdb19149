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
            (400, "invalid_parameter", Some(param)),
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
        (422, "invalid_field", Some("amount")),
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
    // A PAN as a list filter finds nothing (nothing stored can match).
    let reply = app
        .get(&alice, "/transactions?customer_id=4242424242424242")
        .await;
    assert_eq!(
        (reply.status, &reply.json["data"]),
        (200, &serde_json::json!([]))
    );
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

/// Writes `count` succeeded transactions of `customer` for merchant acme,
/// in core-api's layout (record, merchant/customer/user/status indexes).
/// `count` transactions of alice's `customer`, written by core-api's own
/// create path and made final by the status script, as the connector would
/// (without a connector: faster, and nothing else runs): `failed` for the
/// positions in `failed`, `succeeded` for the rest.
async fn seed_final(app: &App, customer: &str, count: usize, failed: &[usize]) -> Vec<String> {
    use core_api::transactions::request::CreateTransactionRequest;
    use platform::transaction::{Status, Transition, transition};
    let client = redis::Client::open(app.redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let caller = platform::auth::Caller {
        merchant: "acme".into(),
        principal: platform::auth::Principal::User("alice".into()),
    };
    let key = platform::crypto::CardKey::development();
    let mut body = valid_body();
    body["customer_id"] = customer.into();
    let new = serde_json::from_value::<CreateTransactionRequest>(body)
        .unwrap()
        .validate()
        .unwrap();
    let settle = |to| Transition {
        from: vec![Status::Pending],
        to,
        add_attempts: 1,
        log: None,
        fields: Vec::new(),
    };
    let (succeeded, failed_with) = (settle(Status::Succeeded), settle(Status::Failed));
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let created = core_api::transactions::accept(&mut conn, &key, &caller, "seed", &new)
            .await
            .expect("seed");
        let id = platform::transaction::TransactionId::parse(&created.id).unwrap();
        let to = if failed.contains(&i) {
            &failed_with
        } else {
            &succeeded
        };
        transition(&mut conn, &id, "acme", to).await.unwrap();
        ids.push(created.id);
    }
    ids
}

/// Point 7: a customer with 20,000 transactions, none failed, listed with
/// `customer_id` and `status=failed`. Before, one request read all 20,000
/// records (1.3 s, and eight at once slowed every other merchant); now a
/// request scans a bounded slice of the customer's index and, if it found
/// too few matches, says `has_more` with a cursor to resume from. Following
/// the cursors still finds exactly the matches. Prints the timings
/// (`cargo test -p core-api --test hardening combined -- --nocapture`).
#[tokio::test(flavor = "multi_thread")]
async fn combined_filters_scan_a_bounded_slice_and_resume_with_a_cursor() {
    let app = App::start().await;
    let alice = app.alice();
    app.link("acme", "alice", &["cus_big"]);
    // Three real failures among them, found by following the cursor.
    let failed_at = [10, 9_000, 19_990];
    let seeded = seed_final(&app, "cus_big", 20_000, &failed_at).await;
    let failed: Vec<&String> = failed_at.iter().map(|&i| &seeded[i]).collect();

    let started = std::time::Instant::now();
    let first = app
        .get(
            &alice,
            "/transactions?customer_id=cus_big&status=failed&limit=10",
        )
        .await;
    let first_took = started.elapsed();
    assert_eq!(first.status, 200, "{}", first.text);

    let mut found = Vec::new();
    let mut requests = 0;
    let mut slowest = std::time::Duration::ZERO;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/transactions?customer_id=cus_big&status=failed&limit=10".to_owned();
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&starting_after={cursor}"));
        }
        let started = std::time::Instant::now();
        let page = app.get(&alice, &path).await;
        slowest = slowest.max(started.elapsed());
        requests += 1;
        assert_eq!(page.status, 200, "{}", page.text);
        for tx in page.json["data"].as_array().unwrap() {
            assert_eq!(tx["status"], "failed");
            found.push(tx["id"].as_str().unwrap().to_owned());
        }
        if page.json["has_more"] != serde_json::json!(true) {
            break;
        }
        cursor = Some(page.json["next_cursor"].as_str().unwrap().to_owned());
        assert!(requests < 100, "the cursor must move");
    }
    eprintln!(
        "customer_id+status over 20,000: first page {first_took:?}; all pages: {requests} \
         requests, slowest {slowest:?}"
    );
    let mut expected: Vec<String> = failed.iter().map(|id| (*id).clone()).collect();
    expected.sort();
    expected.reverse();
    assert_eq!(found, expected, "exactly the failed ones, newest first");
    assert!(
        requests > 1,
        "one request scanned all 20,000 records: a page must stop at its scan budget"
    );
}
