//! `Idempotency-Key` (docs/architecture.md "Keyspace") against the real binary and Redis: replay,
//! reuse with another body, per-merchant scope, and a burst of concurrent
//! requests with one key producing exactly one transaction and message.

mod support;

use platform::keyspace::idempotency;
use serde_json::json;
use support::{App, valid_body};

#[tokio::test(flavor = "multi_thread")]
async fn same_key_same_body_replays_the_first_response() {
    let app = App::start().await;
    let token = app.alice();
    let first = app
        .create(&token, &valid_body(), Some("order-42-try"))
        .await;
    assert_eq!(first.status, 202);
    assert_eq!(first.header("idempotent-replayed"), None);

    // Key order and whitespace do not make a body different.
    let mut reordered = serde_json::Map::new();
    for (key, value) in valid_body().as_object().unwrap().iter().rev() {
        reordered.insert(key.clone(), value.clone());
    }
    let second = app
        .create(
            &app.token("alice", "acme"),
            &reordered.into(),
            Some("order-42-try"),
        )
        .await;
    assert_eq!(second.status, 202);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.text, first.text, "the first response, byte for byte");
    assert_eq!(second.header("location"), first.header("location"));

    assert_eq!(app.record_ids().len(), 1);
    assert_eq!(app.queued().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn same_key_other_body_is_refused() {
    let app = App::start().await;
    let token = app.alice();
    assert_eq!(
        app.create(&token, &valid_body(), Some("k1")).await.status,
        202
    );
    let mut other = valid_body();
    other["amount"] = json!(1300);
    let reply = app.create(&token, &other, Some("k1")).await;
    assert_eq!(
        reply.error(),
        (422, "idempotency_key_reused", Some("Idempotency-Key"))
    );
    assert_eq!(reply.json["error"]["type"], "idempotency_error");
    // The card is part of the body too.
    let mut other_card = valid_body();
    other_card["payment_method"]["number"] = json!("5555555555554444");
    let reply = app.create(&token, &other_card, Some("k1")).await;
    assert_eq!(reply.error().1, "idempotency_key_reused");

    assert_eq!(app.record_ids().len(), 1);
    assert_eq!(app.queued().len(), 1);

    // An invalid body does not consume the key.
    let mut invalid = valid_body();
    invalid["amount"] = json!(0);
    assert_eq!(
        app.create(&token, &invalid, Some("k2")).await.error().1,
        "invalid_amount"
    );
    assert_eq!(
        app.create(&token, &valid_body(), Some("k2")).await.status,
        202
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_per_merchant() {
    let app = App::start().await;
    let acme = app
        .create(&app.alice(), &valid_body(), Some("shared-key"))
        .await;
    let globex = app
        .create(&app.bob(), &valid_body(), Some("shared-key"))
        .await;
    assert_eq!((acme.status, globex.status), (202, 202));
    assert_eq!(globex.header("idempotent-replayed"), None);
    assert_ne!(acme.json["id"], globex.json["id"]);
    assert_eq!(globex.json["merchant_id"], "globex");
    assert_eq!(app.queued().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_requests_with_one_key_create_one_transaction() {
    let app = App::start().await;
    let token = app.alice();
    let body = valid_body();
    let replies =
        futures::future::join_all((0..20).map(|_| app.create(&token, &body, Some("burst-key"))))
            .await;

    let created: Vec<_> = replies
        .iter()
        .filter(|r| r.status == 202 && r.header("idempotent-replayed").is_none())
        .collect();
    assert_eq!(created.len(), 1, "exactly one request creates");
    let conflicts = replies.iter().filter(|r| r.status == 409).count();
    eprintln!(
        "1 created, {conflicts} in progress, {} replayed",
        19 - conflicts
    );
    let id = created[0].json["id"].as_str().unwrap();
    for reply in &replies {
        match reply.status {
            202 => assert_eq!(
                reply.json["id"], id,
                "a replay answers the same transaction"
            ),
            409 => assert_eq!(reply.error(), (409, "request_in_progress", None)),
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    assert_eq!(app.record_ids(), vec![id.to_owned()]);
    let queued = app.queued();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].transaction_id, id);

    // Once the first has finished, every retry is a replay.
    let retry = app.create(&token, &body, Some("burst-key")).await;
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.json["id"], id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_in_flight_answers_409_until_it_completes() {
    let app = App::start().await;
    let token = app.alice();
    // Claim the key the way a request in flight holds it: an in-progress
    // marker with this body's fingerprint. Learn the fingerprint from a
    // completed entry under another key.
    assert_eq!(
        app.create(&token, &valid_body(), Some("probe"))
            .await
            .status,
        202
    );
    let mut conn = app.redis.connection();
    let completed: String = redis::cmd("GET")
        .arg(idempotency("acme", "probe"))
        .query(&mut conn)
        .unwrap();
    let completed: serde_json::Value = serde_json::from_str(&completed).unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(idempotency("acme", "probe"))
        .query(&mut conn)
        .unwrap();
    assert!(
        ttl > 23 * 3600 * 1000,
        "completed entries are kept 24 h, got {ttl} ms"
    );
    let marker = json!({
        "state": "in_progress",
        "owner": "another-request",
        "fingerprint": completed["fingerprint"],
    });
    let _: () = redis::cmd("SET")
        .arg(idempotency("acme", "held"))
        .arg(marker.to_string())
        .query(&mut conn)
        .unwrap();

    let reply = app.create(&token, &valid_body(), Some("held")).await;
    assert_eq!(reply.error(), (409, "request_in_progress", None));
    let mut other = valid_body();
    other["amount"] = json!(1);
    assert_eq!(
        app.create(&token, &other, Some("held")).await.error().1,
        "idempotency_key_reused"
    );
    assert_eq!(app.queued().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn scripts_forgotten_by_redis_are_loaded_again() {
    let app = App::start().await;
    let token = app.alice();
    assert_eq!(
        app.create(&token, &valid_body(), Some("a")).await.status,
        202
    );
    let mut conn = app.redis.connection();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut conn).unwrap();
    assert_eq!(
        app.create(&token, &valid_body(), Some("b")).await.status,
        202
    );
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut conn).unwrap();
    assert_eq!(app.create(&token, &valid_body(), None).await.status, 202);
    let replay = app.create(&token, &valid_body(), Some("b")).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.record_ids().len(), 3);
    assert_eq!(app.queued().len(), 3);
}
