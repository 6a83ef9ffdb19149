//! POST and GET of single transactions against the real binary and a real
//! Redis: the happy path, every validation failure, authentication,
//! merchant isolation and the OpenAPI document.

mod support;

use serde_json::{Value, json};
use support::{App, CARD, valid_body};

#[tokio::test(flavor = "multi_thread")]
async fn accepted_transaction_is_recorded_indexed_and_queued() {
    let app = App::start().await;
    let token = app.alice();
    let response = app
        .client
        .post(format!("{}/transactions", app.base))
        .bearer_auth(&token)
        .header("X-Request-Id", "req-happy-1")
        .json(&valid_body())
        .send()
        .await
        .unwrap();
    let reply = support::Reply::from(response).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let tx = &reply.json;
    let id = tx["id"].as_str().unwrap();
    assert!(
        platform::transaction::TransactionId::parse(id).is_ok(),
        "{id}"
    );
    assert_eq!(
        reply.header("location"),
        Some(format!("/transactions/{id}").as_str())
    );
    assert_eq!(tx["status"], "pending");
    assert_eq!(tx["amount"], 1299);
    assert_eq!(tx["currency"], "EUR");
    assert_eq!(tx["customer_id"], "cus_1");
    assert_eq!(tx["reference"], "order-42");
    assert_eq!(tx["merchant_id"], "acme");
    assert_eq!(tx["created_by"], "alice");
    assert_eq!(
        tx["payment_method"],
        json!({"type": "card", "brand": "visa", "last4": "4242"})
    );
    assert_eq!(tx["attempts"], 0);
    assert_eq!(tx["metadata"], json!({"any": "string values"}));
    for field in ["created_at", "updated_at"] {
        let text = tx[field].as_str().unwrap();
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| panic!("{field} is not RFC 3339: {text}"));
    }
    assert!(tx.get("decline_code").is_none() && tx.get("failure_reason").is_none());
    assert!(!reply.text.contains(CARD) && !reply.text.contains("\"123\""));

    // GET returns the same object.
    let fetched = app.get(&token, &format!("/transactions/{id}")).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(&fetched.json, tx);

    // The record holds no card data; the message carries it and the request id.
    let mut conn = app.redis.connection();
    let record: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("tx:{id}"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(record["request_id"], "req-happy-1");
    assert!(
        record.values().all(|v| !v.contains(CARD) && v != "123"),
        "{record:?}"
    );
    let queued = app.queued();
    assert_eq!(queued.len(), 1);
    let message = &queued[0];
    assert_eq!(message.transaction_id, id);
    assert_eq!(message.request_id, "req-happy-1");
    assert_eq!(message.merchant_id, "acme");
    assert_eq!((message.amount, message.currency.as_str()), (1299, "EUR"));
    // The card travels sealed for the connector; it opens to what was sent.
    let card = message
        .open_card(&platform::crypto::CardKey::development())
        .expect("sealed with the (default) development key");
    assert_eq!(card.number, CARD);
    assert_eq!((card.expiry_month, card.expiry_year), (12, 2030));
    assert_eq!(card.cvc, "123");
    let payload = message.to_payload();
    assert!(
        !payload.contains(CARD) && !payload.contains("cvc"),
        "{payload}"
    );

    // Every index holds the id.
    use platform::keyspace::Index;
    for index in [
        Index::All,
        Index::Status(platform::transaction::Status::Pending),
        Index::Customer("cus_1"),
        Index::Reference("order-42"),
        Index::CreatedBy("alice"),
    ]
    .map(|index| index.key("acme"))
    {
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(&index)
            .arg(id)
            .query(&mut conn)
            .unwrap();
        assert_eq!(score, Some(0.0), "{index}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn optional_fields_may_be_left_out() {
    let app = App::start().await;
    let mut body = valid_body();
    let object = body.as_object_mut().unwrap();
    for field in ["customer_id", "reference", "metadata"] {
        object.remove(field);
    }
    // With an API key: a user token needs a customer linked to the user.
    let (key, key_id) = app.api_key("acme");
    let reply = app.create(&key, &body, None).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(reply.json["created_by"], key_id.as_str());
    assert_eq!(reply.json["customer_id"], Value::Null);
    assert_eq!(reply.json["reference"], Value::Null);
    assert_eq!(reply.json["metadata"], json!({}));
}

/// Sets `pointer` (a JSON pointer into the valid body) to `value`, or
/// removes the field when `value` is `None`.
fn with(pointer: &str, value: Option<Value>) -> Value {
    let mut body = valid_body();
    let (parent, field) = pointer.rsplit_once('/').unwrap();
    let parent = body.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    match value {
        Some(value) => parent.insert(field.to_owned(), value),
        None => parent.remove(field),
    };
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn each_invalid_field_has_its_own_code_and_param() {
    let app = App::start().await;
    let token = app.alice();
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            with("/amount", Some(json!(0))),
            422,
            "invalid_amount",
            "amount",
        ),
        (
            with("/amount", Some(json!(-5))),
            422,
            "invalid_amount",
            "amount",
        ),
        (
            with("/amount", Some(json!(12.5))),
            422,
            "invalid_amount",
            "amount",
        ),
        (
            with("/amount", Some(json!("1299"))),
            422,
            "invalid_amount",
            "amount",
        ),
        (
            with("/amount", Some(json!(1_000_000_000_001u64))),
            422,
            "invalid_amount",
            "amount",
        ),
        (with("/amount", None), 422, "missing_field", "amount"),
        (
            with("/currency", Some(json!("eur"))),
            422,
            "invalid_currency",
            "currency",
        ),
        (
            with("/currency", Some(json!("ABC"))),
            422,
            "invalid_currency",
            "currency",
        ),
        (
            with("/currency", Some(json!(978))),
            422,
            "invalid_field",
            "currency",
        ),
        (
            with("/customer_id", Some(json!("has space"))),
            422,
            "invalid_customer_id",
            "customer_id",
        ),
        (
            with("/customer_id", Some(json!("x".repeat(65)))),
            422,
            "invalid_customer_id",
            "customer_id",
        ),
        (
            with("/reference", Some(json!(""))),
            422,
            "invalid_reference",
            "reference",
        ),
        (
            with("/reference", Some(json!("a/b"))),
            422,
            "invalid_reference",
            "reference",
        ),
        (
            with("/payment_method/type", Some(json!("sepa"))),
            422,
            "invalid_payment_method_type",
            "payment_method.type",
        ),
        (
            with("/payment_method/number", Some(json!("4242424242424241"))),
            422,
            "invalid_card_number",
            "payment_method.number",
        ),
        (
            with("/payment_method/number", Some(json!("4242"))),
            422,
            "invalid_card_number",
            "payment_method.number",
        ),
        (
            with("/payment_method/number", Some(json!("4242-4242-4242-4242"))),
            422,
            "invalid_card_number",
            "payment_method.number",
        ),
        (
            with("/payment_method/number", Some(json!(4242424242424242u64))),
            422,
            "invalid_card_number",
            "payment_method.number",
        ),
        (
            with("/payment_method/number", None),
            422,
            "missing_field",
            "payment_method.number",
        ),
        (
            with("/payment_method/expiry_month", Some(json!(13))),
            422,
            "invalid_expiry",
            "payment_method.expiry_month",
        ),
        (
            with("/payment_method/expiry_year", Some(json!(2020))),
            422,
            "card_expired",
            "payment_method.expiry_year",
        ),
        (
            with("/payment_method/expiry_year", Some(json!(30))),
            422,
            "invalid_expiry",
            "payment_method.expiry_year",
        ),
        (
            with("/payment_method/cvc", Some(json!("12"))),
            422,
            "invalid_cvc",
            "payment_method.cvc",
        ),
        (
            with("/payment_method/cvc", Some(json!(123))),
            422,
            "invalid_cvc",
            "payment_method.cvc",
        ),
        (
            with("/metadata", Some(json!({"n": 1}))),
            422,
            "invalid_metadata",
            "metadata.n",
        ),
        (
            with("/metadata", Some(json!({"k": "x".repeat(501)}))),
            422,
            "invalid_metadata",
            "metadata.k",
        ),
        (
            with(
                "/metadata",
                Some(Value::Object(
                    (0..21).map(|i| (format!("k{i}"), json!("v"))).collect(),
                )),
            ),
            422,
            "invalid_metadata",
            "metadata",
        ),
        (
            with("/surprise", Some(json!(1))),
            422,
            "unknown_field",
            "surprise",
        ),
        (
            with("/payment_method/pin", Some(json!("0000"))),
            422,
            "unknown_field",
            "payment_method.pin",
        ),
    ];
    for (body, status, code, param) in &cases {
        let reply = app.create(&token, body, None).await;
        assert_eq!(
            reply.error(),
            (*status, *code, Some(*param)),
            "body {body}: {}",
            reply.text
        );
        assert!(!reply.text.contains("424242424242"), "{}", reply.text);
    }

    // This month is still valid; last month (or last year's December) is not.
    let now = time::OffsetDateTime::now_utc();
    let (year, month) = (now.year(), u8::from(now.month()));
    let mut this_month = with("/payment_method/expiry_month", Some(json!(month)));
    this_month["payment_method"]["expiry_year"] = json!(year);
    assert_eq!(app.create(&token, &this_month, None).await.status, 202);
    let mut past = valid_body();
    let (past_year, past_month) = if month == 1 {
        (year - 1, 12)
    } else {
        (year, month - 1)
    };
    past["payment_method"]["expiry_year"] = json!(past_year);
    past["payment_method"]["expiry_month"] = json!(past_month);
    let expired = app.create(&token, &past, None).await;
    assert_eq!(expired.error().1, "card_expired");

    // Bodies that are not JSON objects at all.
    let not_json = app
        .client
        .post(format!("{}/transactions", app.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"amount\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(
        support::Reply::from(not_json).await.error().1,
        "malformed_body"
    );
    let form = app
        .client
        .post(format!("{}/transactions", app.base))
        .bearer_auth(&token)
        .form(&[("amount", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(support::Reply::from(form).await.error().0, 415);

    // An invalid Idempotency-Key header is a 400 naming the header.
    let long_key = "k".repeat(256);
    let reply = app.create(&token, &valid_body(), Some(&long_key)).await;
    assert_eq!(
        reply.error(),
        (400, "invalid_idempotency_key", Some("Idempotency-Key"))
    );

    // Only the one valid request above was written.
    assert_eq!(app.record_ids().len(), 1);
    assert_eq!(app.queued().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_required_and_checked() {
    let app = App::start().await;
    let no_token = app
        .client
        .post(format!("{}/transactions", app.base))
        .json(&valid_body())
        .send()
        .await
        .unwrap();
    assert_eq!(
        support::Reply::from(no_token).await.error().1,
        "missing_token"
    );
    let bad = app.create("not.a.token", &valid_body(), None).await;
    assert_eq!(bad.error().1, "token_invalid");
    let list = app.get("nope", "/transactions").await;
    assert_eq!(list.status, 401);
    assert!(app.record_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_malformed_and_foreign_ids_are_all_404() {
    let app = App::start().await;
    let acme = app.alice();
    let globex = app.bob();
    let created = app.create(&acme, &valid_body(), None).await;
    let id = created.json["id"].as_str().unwrap().to_owned();

    let unknown = platform::transaction::TransactionId::generate();
    for path in [
        format!("/transactions/{unknown}"),
        "/transactions/tx_nope".to_owned(),
        "/transactions/..%2F..%2Fetc".to_owned(),
        format!("/transactions/{}", id.to_uppercase()),
    ] {
        let reply = app.get(&acme, &path).await;
        assert_eq!(reply.error(), (404, "not_found", None), "{path}");
    }

    // globex sees nothing of acme's, by id or by list, with any filter.
    let foreign = app.get(&globex, &format!("/transactions/{id}")).await;
    assert_eq!(foreign.error(), (404, "not_found", None));
    assert_eq!(
        foreign.json,
        app.get(&globex, &format!("/transactions/{unknown}"))
            .await
            .json
    );
    for query in [
        "",
        "?customer_id=cus_1",
        "?reference=order-42",
        "?status=pending",
        "?created_by=alice",
    ] {
        let list = app.get(&globex, &format!("/transactions{query}")).await;
        assert_eq!(list.status, 200);
        assert_eq!(list.json["data"], json!([]), "{query}");
    }
    // acme does see it.
    assert_eq!(
        app.get(&acme, &format!("/transactions/{id}")).await.status,
        200
    );
    let list = app.get(&acme, "/transactions").await;
    assert_eq!(list.json["data"][0]["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_describes_every_route_and_error() {
    let app = App::start().await;
    let reply = app.get("", "/openapi.json").await;
    assert_eq!(reply.status, 200);
    let doc = &reply.json;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/transactions", "post"),
        ("/transactions", "get"),
        ("/transactions/{id}", "get"),
        ("/openapi.json", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    let post = &doc["paths"]["/transactions"]["post"];
    for status in ["202", "400", "401", "409", "413", "415", "422", "503"] {
        assert!(post["responses"][status].is_object(), "POST lacks {status}");
    }
    assert_eq!(
        post["responses"]["422"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    for schema in [
        "Transaction",
        "CreateTransactionRequest",
        "TransactionList",
        "ErrorBody",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    platform::testing::assert_error_codes_documented(doc, "CreateTransactionRequest");
}
