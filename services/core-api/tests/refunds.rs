//! `POST /transactions/{id}/refunds` against a real Redis and the real
//! binary: full and partial refunds, never more than the amount (also
//! under concurrency), idempotency, ownership, and what is written.

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use platform::keyspace;
use platform::transaction::Status;
use serde_json::{Value, json};
use support::{App, valid_body};

/// A succeeded 12.99 EUR transaction of alice's; its id.
async fn paid(app: &App) -> String {
    let created = app.create(&app.alice(), &valid_body(), None).await;
    assert_eq!(created.status, 202, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    app.charged(&id, "ch_test").await;
    id
}

fn queued_refunds(app: &App) -> Vec<platform::refund::RefundMessage> {
    let mut conn = app.redis.connection();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(keyspace::REFUND_STREAM)
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| {
            let (_, payload) = fields
                .iter()
                .find(|(name, _)| name == keyspace::PAYLOAD_FIELD)
                .unwrap();
            platform::refund::RefundMessage::from_payload(payload).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_full_refund_without_a_body_refunds_everything() {
    let app = App::start().await;
    let id = paid(&app).await;
    let refund = app.refund(&app.alice(), &id, None, None).await;
    assert_eq!(refund.status, 202, "{}", refund.text);
    assert_eq!(refund.json["amount"], 1299);
    assert_eq!(refund.json["currency"], "EUR");
    assert_eq!(refund.json["status"], "pending");
    assert_eq!(refund.json["psp"], "psp-a");
    assert_eq!(refund.json["transaction_id"], id.as_str());
    assert!(refund.json["id"].as_str().unwrap().starts_with("re_"));
    assert_eq!(
        refund.header("location"),
        Some(format!("/transactions/{id}/refunds").as_str())
    );
    // Queued for the connector.
    let queued = queued_refunds(&app);
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].refund_id.as_str(), refund.json["id"]);
    assert_eq!(queued[0].transaction_id.as_str(), id);

    // Nothing is left: another refund, of the rest or of one cent, is 422.
    let again = app.refund(&app.alice(), &id, Some(&json!({})), None).await;
    assert_eq!(
        again.error(),
        (422, "refund_exceeds_amount", Some("amount"))
    );
    let cent = app
        .refund(&app.alice(), &id, Some(&json!({"amount": 1})), None)
        .await;
    assert_eq!(cent.error(), (422, "refund_exceeds_amount", Some("amount")));

    // Listed on the transaction and on its own route.
    let tx = app.get(&app.alice(), &format!("/transactions/{id}")).await;
    assert_eq!(
        tx.json["refunds"].as_array().unwrap().len(),
        1,
        "{}",
        tx.text
    );
    assert_eq!(tx.json["refunds"][0], refund.json);
    assert_eq!(
        tx.json["refunded_amount"], 0,
        "pending refunds are not refunded yet"
    );
    let list = app
        .get(&app.alice(), &format!("/transactions/{id}/refunds"))
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json["data"], json!([refund.json]));
}

#[tokio::test]
async fn partial_refunds_add_up_to_the_amount_and_no_further() {
    let app = App::start().await;
    let id = paid(&app).await;
    let first = app
        .refund(&app.alice(), &id, Some(&json!({"amount": 500})), None)
        .await;
    assert_eq!(first.status, 202, "{}", first.text);
    let second = app
        .refund(&app.alice(), &id, Some(&json!({"amount": 700})), None)
        .await;
    assert_eq!(second.status, 202, "{}", second.text);
    // 99 left.
    let over = app
        .refund(&app.alice(), &id, Some(&json!({"amount": 100})), None)
        .await;
    assert_eq!(over.error(), (422, "refund_exceeds_amount", Some("amount")));
    assert!(
        over.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("99")
    );
    let rest = app.refund(&app.alice(), &id, None, None).await;
    assert_eq!(rest.status, 202, "{}", rest.text);
    assert_eq!(rest.json["amount"], 99);
    let list = app
        .get(&app.alice(), &format!("/transactions/{id}/refunds"))
        .await;
    let amounts: Vec<u64> = list.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["amount"].as_u64().unwrap())
        .collect();
    assert_eq!(amounts, [500, 700, 99], "oldest first");
    assert_eq!(queued_refunds(&app).len(), 3);
}

#[tokio::test]
async fn only_a_succeeded_transaction_is_refundable() {
    let app = App::start().await;
    let pending = app.create(&app.alice(), &valid_body(), None).await;
    let pending = pending.json["id"].as_str().unwrap().to_owned();
    let refused = app.refund(&app.alice(), &pending, None, None).await;
    assert_eq!(refused.error(), (409, "transaction_not_refundable", None));
    let declined = app.create(&app.alice(), &valid_body(), None).await;
    let declined = declined.json["id"].as_str().unwrap().to_owned();
    app.make_final(&declined, Status::Declined).await;
    let refused = app.refund(&app.alice(), &declined, None, None).await;
    assert_eq!(refused.error(), (409, "transaction_not_refundable", None));
    assert!(queued_refunds(&app).is_empty());
    let mut conn = app.redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("refund:*").query(&mut conn).unwrap();
    assert!(keys.is_empty(), "nothing written: {keys:?}");
}

#[tokio::test]
async fn bad_requests_are_4xx_and_write_nothing() {
    let app = App::start().await;
    let id = paid(&app).await;
    let token = app.alice();
    for (body, code) in [
        (json!({"amount": 0}), "invalid_amount"),
        (json!({"amount": -5}), "invalid_amount"),
        (json!({"amount": "100"}), "invalid_amount"),
        (json!({"amount": 1.5}), "invalid_amount"),
        (json!({"amount": 100, "reason": "x"}), "unknown_field"),
    ] {
        let reply = app.refund(&token, &id, Some(&body), None).await;
        assert_eq!(reply.status, 422, "{body}: {}", reply.text);
        assert_eq!(reply.error().1, code, "{body}");
    }
    let not_json = app
        .client
        .post(format!("{}/transactions/{id}/refunds", app.base))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("amount=5")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);
    // Unknown, malformed and other merchants' transactions: the same 404.
    for other in [
        "tx_nope".to_owned(),
        platform::transaction::TransactionId::generate().to_string(),
    ] {
        let reply = app.refund(&token, &other, None, None).await;
        assert_eq!(reply.error(), (404, "not_found", None));
    }
    let bobs = app.refund(&app.bob(), &id, None, None).await;
    assert_eq!(bobs.error(), (404, "not_found", None));
    let listed = app
        .get(&app.bob(), &format!("/transactions/{id}/refunds"))
        .await;
    assert_eq!(listed.error(), (404, "not_found", None));
    // A user of acme not linked to the transaction's customer.
    let carol = app.token("carol", "acme");
    let carols = app.refund(&carol, &id, None, Some("k")).await;
    assert_eq!(carols.error(), (404, "not_found", None));
    // An API key of the merchant may refund.
    let (key, _) = app.api_key("acme");
    let by_key = app
        .refund(&key, &id, Some(&json!({"amount": 1})), None)
        .await;
    assert_eq!(by_key.status, 202, "{}", by_key.text);
    assert_eq!(queued_refunds(&app).len(), 1, "only the API key's refund");
}

#[tokio::test]
async fn one_idempotency_key_makes_one_refund() {
    let app = App::start().await;
    let id = paid(&app).await;
    let token = app.alice();
    let body = json!({"amount": 300});
    let first = app.refund(&token, &id, Some(&body), Some("refund-1")).await;
    assert_eq!(first.status, 202, "{}", first.text);
    let again = app.refund(&token, &id, Some(&body), Some("refund-1")).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, first.text);
    let other_body = app
        .refund(&token, &id, Some(&json!({"amount": 301})), Some("refund-1"))
        .await;
    assert_eq!(
        other_body.error(),
        (422, "idempotency_key_reused", Some("Idempotency-Key"))
    );
    // A key of a transaction is not a key of its refund.
    let created = app.create(&token, &valid_body(), Some("order-7")).await;
    assert_eq!(created.status, 202);
    let reused = app.refund(&token, &id, Some(&body), Some("order-7")).await;
    assert_eq!(reused.error().1, "idempotency_key_reused");
    assert_eq!(queued_refunds(&app).len(), 1);
}

#[tokio::test]
async fn concurrent_refunds_with_different_keys_never_exceed_the_amount() {
    let app = Arc::new(App::start().await);
    let id = paid(&app).await;
    let token = app.alice();
    // Thirty refunds of 100 on 1299: twelve fit.
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (app, id, token) = (app.clone(), id.clone(), token.clone());
            tokio::spawn(async move {
                let key = format!("k{i}");
                let body = json!({"amount": 100});
                let reply = app.refund(&token, &id, Some(&body), Some(&key)).await;
                (reply.status, reply.json)
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            202 => accepted += 1,
            422 => assert_eq!(body["error"]["code"], "refund_exceeds_amount"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(accepted, 12);
    // Concurrent refunds of the rest: one gets the 99 left, the rest 422.
    let rests: Vec<_> = (0..10)
        .map(|_| {
            let (app, id, token) = (app.clone(), id.clone(), token.clone());
            tokio::spawn(async move { app.refund(&token, &id, None, None).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in rests {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "{statuses:?}"
    );
    let queued = queued_refunds(&app);
    assert_eq!(queued.len(), 13);
    let mut conn = app.redis.connection();
    let reserved: u64 = redis::cmd("HGET")
        .arg(keyspace::record(&queued[0].transaction_id))
        .arg(keyspace::field::REFUND_RESERVED)
        .query(&mut conn)
        .unwrap();
    assert_eq!(reserved, 1299);
}

#[tokio::test]
async fn concurrent_refunds_with_one_key_make_one_refund() {
    let app = Arc::new(App::start().await);
    let id = paid(&app).await;
    let token = app.alice();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (app, id, token) = (app.clone(), id.clone(), token.clone());
            tokio::spawn(async move {
                let body = json!({"amount": 200});
                let reply = app.refund(&token, &id, Some(&body), Some("same")).await;
                (reply.status, reply.json)
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        let (status, body): (u16, Value) = task.await.unwrap();
        match status {
            202 => {
                ids.insert(body["id"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(body["error"]["code"], "request_in_progress"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(queued_refunds(&app).len(), 1);
    let list = app
        .get(&app.alice(), &format!("/transactions/{id}/refunds"))
        .await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failed_refund_gives_its_amount_back() {
    let app = App::start().await;
    let id = paid(&app).await;
    let first = app.refund(&app.alice(), &id, None, None).await;
    assert_eq!(first.status, 202);
    // The connector's settlement of a refund the PSP refused.
    let client = redis::Client::open(app.redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let refund = platform::refund::RefundId::parse(first.json["id"].as_str().unwrap()).unwrap();
    let tx = platform::transaction::TransactionId::parse(&id).unwrap();
    let failed = platform::refund::settle(
        &mut conn,
        &refund,
        &tx,
        "acme",
        platform::refund::RefundStatus::Failed,
        &[(
            keyspace::refund_field::FAILURE_REASON,
            "psp_unavailable".into(),
        )],
    )
    .await
    .unwrap();
    assert_eq!(failed, platform::refund::SettleOutcome::Applied);
    // Settled once only.
    let again = platform::refund::settle(
        &mut conn,
        &refund,
        &tx,
        "acme",
        platform::refund::RefundStatus::Succeeded,
        &[],
    )
    .await
    .unwrap();
    assert!(matches!(
        again,
        platform::refund::SettleOutcome::Refused { .. }
    ));
    let second = app.refund(&app.alice(), &id, None, None).await;
    assert_eq!(second.status, 202, "{}", second.text);
    assert_eq!(second.json["amount"], 1299);
    let tx = app.get(&app.alice(), &format!("/transactions/{id}")).await;
    assert_eq!(tx.json["refunds"][0]["status"], "failed");
    assert_eq!(tx.json["refunds"][0]["failure_reason"], "psp_unavailable");
    assert_eq!(tx.json["refunds"][1]["status"], "pending");
    // The settlement wrote its event, once, with the refund and the
    // transaction as it left them.
    let events = app.get(&app.alice(), "/events?type=refund.failed").await;
    assert_eq!(events.status, 200, "{}", events.text);
    let data = events.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{}", events.text);
    assert_eq!(data[0]["type"], "refund.failed");
    assert_eq!(data[0]["data"]["refund"]["id"], first.json["id"]);
    assert_eq!(data[0]["data"]["refund"]["status"], "failed");
    assert_eq!(data[0]["data"]["object"]["id"], id.as_str());
    let none = app.get(&app.alice(), "/events?type=refund.succeeded").await;
    assert_eq!(none.json["data"], json!([]));
}
