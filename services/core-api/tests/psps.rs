//! `GET /psps` and the orchestration fields of a transaction (`psp`,
//! `psp_reference`, `attempt_log`), on the real core-api binary and a real
//! Redis written through the platform's own scripts and keys.

mod support;

use platform::keyspace;
use platform::psp::PspName;
use platform::transaction::{Attempt, AttemptOutcome, Status, TransactionId, Transition};
use support::*;

fn attempt(psp: &str, outcome: AttemptOutcome, error: Option<&str>) -> Attempt {
    Attempt {
        psp: psp.into(),
        outcome,
        latency_ms: 12,
        at: "2026-12-03T10:00:00.000Z".into(),
        error: error.map(Into::into),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_over_transaction_shows_every_attempt_and_the_psp_that_charged() {
    let app = App::start().await;
    let token = app.alice();
    let created = app.create(&token, &valid_body(), None).await;
    assert_eq!(created.status, 202, "{}", created.json);
    let id = created.json["id"].as_str().unwrap().to_owned();
    assert_eq!(created.json["attempt_log"], serde_json::json!([]));
    assert!(created.json["psp"].is_null());

    let client = redis::Client::open(app.redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let tx = TransactionId::parse(&id).unwrap();
    let steps = [
        Transition {
            from: vec![Status::Pending, Status::Processing],
            to: Status::Processing,
            add_attempts: 1,
            log: None,
            fields: vec![(keyspace::field::PSP, "psp-a".into())],
        },
        Transition {
            from: vec![Status::Pending, Status::Processing],
            to: Status::Processing,
            add_attempts: 1,
            log: Some(attempt(
                "psp-a",
                AttemptOutcome::Unavailable,
                Some("http 503"),
            )),
            fields: vec![(keyspace::field::PSP, "psp-b".into())],
        },
        Transition {
            from: vec![Status::Pending, Status::Processing],
            to: Status::Succeeded,
            add_attempts: 0,
            log: Some(attempt("psp-b", AttemptOutcome::Approved, None)),
            fields: vec![(keyspace::field::PSP_REFERENCE, "ch_123".into())],
        },
    ];
    for step in &steps {
        platform::transaction::transition(&mut conn, &tx, "acme", step)
            .await
            .unwrap();
    }

    let shown = app.get(&token, &format!("/transactions/{id}")).await;
    assert_eq!(shown.status, 200);
    let body = &shown.json;
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["attempts"], 2, "the count stays a number");
    assert_eq!(body["psp"], "psp-b");
    assert_eq!(body["psp_reference"], "ch_123");
    let log = body["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2, "{body}");
    assert_eq!(log[0]["psp"], "psp-a");
    assert_eq!(log[0]["outcome"], "unavailable");
    assert_eq!(log[0]["error"], "http 503");
    assert_eq!(log[1]["outcome"], "approved");
    assert!(log[1].get("error").is_none());
    assert_eq!(log[1]["latency_ms"], 12);
}

#[tokio::test(flavor = "multi_thread")]
async fn psps_lists_the_directory_with_each_breaker() {
    let app = App::start().await;
    let token = app.alice();
    let empty = app.get(&token, "/psps").await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.json["data"], serde_json::json!([]));

    let mut conn = app.redis.connection();
    let _: () = redis::cmd("HSET")
        .arg(keyspace::PSP_DIRECTORY)
        .arg(&[
            ("psp-b", "http://127.0.0.1:7402"),
            ("psp-a", "http://127.0.0.1:7401"),
        ])
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(keyspace::breaker(&PspName::parse("psp-a").unwrap()))
        .arg(&[
            (keyspace::breaker_field::STATE, "open"),
            (keyspace::breaker_field::FAILURES, "5"),
            (keyspace::breaker_field::CALLS, "6"),
            (keyspace::breaker_field::WINDOW_STARTED_MS, "1000"),
            (keyspace::breaker_field::OPENED_AT_MS, "2000"),
        ])
        .query(&mut conn)
        .unwrap();

    let listed = app.get(&token, "/psps").await;
    assert_eq!(listed.status, 200);
    let data = listed.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["name"], "psp-a");
    assert_eq!(data[0]["url"], "http://127.0.0.1:7401");
    assert_eq!(data[0]["breaker"]["state"], "open");
    assert_eq!(data[0]["breaker"]["failures"], 5);
    assert_eq!(data[0]["breaker"]["opened_at_ms"], 2000);
    assert_eq!(data[1]["name"], "psp-b");
    assert_eq!(data[1]["breaker"]["state"], "closed", "no hash: closed");

    let anonymous = app
        .client
        .get(format!("{}/psps", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}
