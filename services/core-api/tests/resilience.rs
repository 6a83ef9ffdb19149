//! Failure and secrecy: Redis stopping in the middle of a burst of
//! requests (503 JSON, and nothing half-written once it is back), and the
//! service's captured logs never holding a card number.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use support::{App, CARD, Reply, valid_body};

async fn post(client: &reqwest::Client, base: &str, token: &str, key: Option<&str>) -> Reply {
    let mut request = client
        .post(format!("{base}/transactions"))
        .bearer_auth(token)
        .json(&valid_body());
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    Reply::from(request.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stopping_mid_burst_answers_503_and_leaves_nothing_half_written() {
    let mut app = App::start().await;
    let token = app.alice();

    // Keep requests flowing from several clients while Redis goes away.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..8 {
        let (http, base, token, stop) = (
            app.client.clone(),
            app.base.clone(),
            token.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut replies = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Half with an idempotency key, half without.
                let key = format!("c{client}-{n}");
                let key = (n % 2 == 0u32).then_some(key.as_str());
                replies.push(post(&http, &base, &token, key).await);
            }
            replies
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SIGTERM: Redis finishes the command it is running, flushes its
    // append-only file and exits; requests in flight lose their connection.
    tokio::task::block_in_place(|| app.redis.stop());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut replies = Vec::new();
    for client in clients {
        replies.extend(client.await.unwrap());
    }

    // While Redis is down: 503 with the JSON error shape.
    let down = post(&app.client, &app.base, &token, Some("while-down")).await;
    assert_eq!(
        down.error(),
        (503, "storage_unavailable", None),
        "{}",
        down.text
    );
    assert_eq!(down.json["error"]["type"], "api_error");
    let list = app.get(&token, "/transactions").await;
    assert_eq!(list.error().0, 503);

    let accepted: Vec<String> = replies
        .iter()
        .filter(|r| r.status == 202)
        .map(|r| r.json["id"].as_str().unwrap().to_owned())
        .collect();
    let unavailable = replies.iter().filter(|r| r.status == 503).count();
    for reply in &replies {
        match reply.status {
            202 => {}
            503 => assert_eq!(reply.error().1, "storage_unavailable"),
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    eprintln!("{} accepted, {unavailable} unavailable", accepted.len());
    assert!(
        !accepted.is_empty(),
        "some requests succeeded before the stop"
    );
    assert!(unavailable > 0, "some requests met the stopped Redis");

    // Redis back (same data): the service reconnects by itself.
    tokio::task::block_in_place(|| app.redis.restart());
    app.wait_ready().await;
    let after = post(&app.client, &app.base, &token, Some("after")).await;
    assert_eq!(after.status, 202, "{}", after.text);

    // Every record has exactly its message, every message its record, and
    // every index entry a record: nothing half-written either way.
    let records: HashSet<String> = app.record_ids().into_iter().collect();
    let queued = app.queued();
    let messages: HashSet<String> = queued.iter().map(|m| m.transaction_id.clone()).collect();
    assert_eq!(queued.len(), messages.len(), "one message per transaction");
    assert_eq!(records, messages, "records and queue messages match");
    let mut conn = app.redis.connection();
    let indexed: Vec<String> = redis::cmd("ZRANGE")
        .arg(platform::keyspace::Index::All.key("acme"))
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .unwrap();
    assert_eq!(indexed.into_iter().collect::<HashSet<_>>(), records);
    // Every transaction that was acknowledged with 202 survived.
    for id in &accepted {
        assert!(records.contains(id), "accepted {id} was lost");
    }
    // No idempotency key is left locked by the failure: a retry of a
    // request that met the stopped Redis goes through or replays.
    let retry = post(&app.client, &app.base, &token, Some("while-down")).await;
    assert_eq!(retry.status, 202, "{}", retry.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_never_contain_the_card_number() {
    let app = App::start().await;
    let token = app.alice();
    // Success, replay, and every way a card number can be wrong or misplaced.
    assert_eq!(
        app.create(&token, &valid_body(), Some("log-key"))
            .await
            .status,
        202
    );
    assert_eq!(
        app.create(&token, &valid_body(), Some("log-key"))
            .await
            .status,
        202
    );
    let mut reused = valid_body();
    reused["amount"] = json!(5);
    app.create(&token, &reused, Some("log-key")).await;
    for number in [
        json!("4242424242424241"),
        json!(4242424242424242u64),
        json!("4242 4242 4242 4242"),
    ] {
        let mut body = valid_body();
        body["payment_method"]["number"] = number;
        assert_eq!(app.create(&token, &body, None).await.status, 422);
    }
    let mut misplaced = valid_body();
    misplaced["customer_id"] = json!(CARD);
    misplaced["payment_method"]["number"] = json!("not a card");
    app.create(&token, &misplaced, None).await;
    let mut unknown = valid_body();
    unknown["payment_method"]["pan"] = json!(CARD);
    app.create(&token, &unknown, None).await;
    // A request that fails deep inside (storage down) logs too.
    let mut app = app;
    tokio::task::block_in_place(|| app.redis.stop());
    assert_eq!(app.create(&token, &valid_body(), None).await.status, 503);

    // The card did reach the queue (so the test used it)...
    tokio::task::block_in_place(|| app.redis.restart());
    let key = platform::crypto::CardKey::development();
    assert!(
        app.queued()
            .iter()
            .any(|m| m.open_card(&key).is_ok_and(|card| card.number == CARD))
    );
    // ...and the logs have the request lines but never the number.
    let logs = app.logs();
    assert!(logs.contains("transaction accepted"), "{logs}");
    assert!(logs.lines().count() > 5, "{logs}");
    assert!(
        !logs.contains("424242424242"),
        "card number in logs:\n{logs}"
    );
    assert!(!logs.contains("4242 4242"), "card number in logs:\n{logs}");
    assert!(!logs.contains("\"123\""), "cvc in logs:\n{logs}");
}
