//! `/events` and `/webhook_endpoints` against the real binary and Redis:
//! an event per status change written with the change, merchant scoping,
//! pagination, endpoint validation, the secret shown once, rotation.

mod support;

use platform::transaction::Status;
use serde_json::json;
use support::{App, valid_body};

async fn post(app: &App, token: &str, path: &str, body: serde_json::Value) -> support::Reply {
    let response = app
        .client
        .post(format!("{}{path}", app.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    support::Reply::from(response).await
}

#[tokio::test]
async fn every_status_change_has_one_event_with_the_transaction_as_it_was() {
    let app = App::start().await;
    let token = app.alice();
    let created = app.create(&token, &valid_body(), None).await;
    assert_eq!(created.status, 202, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    // No change, no event: a new transaction is pending without one.
    let none = app.get(&token, "/events").await;
    assert_eq!(none.json["data"], json!([]));

    app.make_final(&id, Status::Succeeded).await;
    // A refused change (already final) writes nothing.
    {
        use platform::transaction::{TransactionId, Transition, TransitionOutcome};
        let client = redis::Client::open(app.redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let refused = platform::transaction::transition(
            &mut conn,
            &TransactionId::parse(&id).unwrap(),
            "acme",
            &Transition {
                from: vec![Status::Pending],
                to: Status::Failed,
                add_attempts: 0,
                log: None,
                fields: Vec::new(),
            },
        )
        .await
        .unwrap();
        assert!(matches!(refused, TransitionOutcome::Refused { .. }));
    }

    let events = app.get(&token, "/events").await;
    assert_eq!(events.status, 200, "{}", events.text);
    let data = events.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{}", events.text);
    let event = &data[0];
    assert_eq!(event["type"], "transaction.succeeded");
    assert!(event["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(event["data"]["object"]["id"], id.as_str());
    assert_eq!(event["data"]["object"]["status"], "succeeded");
    assert_eq!(event["data"]["object"]["attempts"], 1);
    assert!(event["data"]["object"].get("number").is_none());

    let one = app
        .get(
            &token,
            &format!("/events/{}", event["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(&one.json, event);

    // The stream entry the dispatcher reads was written with it.
    let mut conn = app.redis.connection();
    let length: u64 = redis::cmd("XLEN")
        .arg(platform::keyspace::EVENT_STREAM)
        .query(&mut conn)
        .unwrap();
    assert_eq!(length, 1);

    // Another merchant sees none of it.
    let bob = app.bob();
    assert_eq!(app.get(&bob, "/events").await.json["data"], json!([]));
    let other = app
        .get(&bob, &format!("/events/{}", event["id"].as_str().unwrap()))
        .await;
    assert_eq!(other.error(), (404, "not_found", None));
    let redeliver = post(
        &app,
        &bob,
        &format!("/events/{}/redeliver", event["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    assert_eq!(redeliver.error(), (404, "not_found", None));
}

#[tokio::test]
async fn events_page_newest_first_and_filter_by_type() {
    let app = App::start().await;
    let token = app.alice();
    let mut ids = Vec::new();
    for (n, status) in [Status::Succeeded, Status::Declined, Status::Succeeded]
        .into_iter()
        .enumerate()
    {
        let mut body = valid_body();
        body["reference"] = json!(format!("order-{n}"));
        let id = app.create(&token, &body, None).await.json["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.make_final(&id, status).await;
        ids.push(id);
    }
    let first = app.get(&token, "/events?limit=2").await;
    assert_eq!(first.status, 200, "{}", first.text);
    let page: Vec<_> = first.json["data"].as_array().unwrap().clone();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["data"]["object"]["id"], ids[2].as_str());
    assert_eq!(first.json["has_more"], true);
    let cursor = first.json["next_cursor"].as_str().unwrap();
    let second = app
        .get(&token, &format!("/events?limit=2&starting_after={cursor}"))
        .await;
    assert_eq!(second.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(second.json["has_more"], false);
    assert_eq!(
        second.json["data"][0]["data"]["object"]["id"],
        ids[0].as_str()
    );

    let declined = app.get(&token, "/events?type=transaction.declined").await;
    let data = declined.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["data"]["object"]["id"], ids[1].as_str());

    for bad in [
        "type=charge.refunded",
        "limit=0",
        "limit=101",
        "starting_after=tx_1",
    ] {
        let reply = app.get(&token, &format!("/events?{bad}")).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text);
        assert_eq!(reply.error().1, "invalid_parameter", "{bad}");
    }
    assert_eq!(
        app.get(&token, "/events/evt_nope").await.error(),
        (404, "not_found", None)
    );
}

#[tokio::test]
async fn endpoints_show_their_secret_once_and_belong_to_one_merchant() {
    let app = App::start().await;
    let (token, _) = app.api_key("acme");
    let created = post(
        &app,
        &token,
        "/webhook_endpoints",
        json!({"url": "http://127.0.0.1:9/hooks", "events": ["transaction.succeeded"], "description": "orders"}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    let secret = created.json["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created.json["events"], json!(["transaction.succeeded"]));

    let listed = app.get(&token, "/webhook_endpoints").await;
    assert_eq!(listed.json["data"].as_array().unwrap().len(), 1);
    assert!(!listed.text.contains(&secret), "the secret is shown once");
    let one = app.get(&token, &format!("/webhook_endpoints/{id}")).await;
    assert_eq!(one.status, 200);
    assert!(one.json.get("secret").is_none());

    // Rotation: a new secret, shown once; the old one in its grace period.
    let rotated = post(
        &app,
        &token,
        &format!("/webhook_endpoints/{id}/rotate_secret?grace_period_secs=60"),
        json!({}),
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let new_secret = rotated.json["secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert!(rotated.json["previous_secret_expires_at"].is_string());
    let attempts = app
        .get(&token, &format!("/webhook_endpoints/{id}/attempts"))
        .await;
    assert_eq!(attempts.json["data"], json!([]));

    // Bob's merchant sees nothing of it, under any route.
    let (bob, _) = app.api_key("globex");
    assert_eq!(
        app.get(&bob, "/webhook_endpoints").await.json["data"],
        json!([])
    );
    for path in [
        format!("/webhook_endpoints/{id}"),
        format!("/webhook_endpoints/{id}/attempts"),
    ] {
        assert_eq!(app.get(&bob, &path).await.error(), (404, "not_found", None));
    }
    let delete_as_bob = app
        .client
        .delete(format!("{}/webhook_endpoints/{id}", app.base))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(delete_as_bob.status(), 404);

    let deleted = app
        .client
        .delete(format!("{}/webhook_endpoints/{id}", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(
        app.get(&token, &format!("/webhook_endpoints/{id}"))
            .await
            .error(),
        (404, "not_found", None)
    );
    // The secret is never logged.
    assert!(!app.logs().contains(&secret));
    assert!(!app.logs().contains(new_secret));
}

#[tokio::test]
async fn endpoint_urls_and_events_are_validated() {
    let app = App::start().await;
    let (token, _) = app.api_key("acme");
    let long = format!("http://127.0.0.1/{}", "a".repeat(2100));
    for (body, status, code) in [
        (
            json!({"url": "ftp://127.0.0.1/x", "events": ["*"]}),
            422,
            "invalid_field",
        ),
        (
            json!({"url": "not a url", "events": ["*"]}),
            422,
            "invalid_field",
        ),
        (json!({"url": long, "events": ["*"]}), 422, "invalid_field"),
        (
            json!({"url": "http://user:pw@127.0.0.1/x", "events": ["*"]}),
            422,
            "invalid_field",
        ),
        (
            json!({"url": "https://example.com/hooks", "events": ["*"]}),
            400,
            "url_not_allowed",
        ),
        (
            json!({"url": "http://127.0.0.1/x", "events": []}),
            422,
            "invalid_field",
        ),
        (
            json!({"url": "http://127.0.0.1/x", "events": ["*", "transaction.failed"]}),
            422,
            "invalid_field",
        ),
        (
            json!({"url": "http://127.0.0.1/x", "events": ["charge.refunded"]}),
            422,
            "invalid_field",
        ),
        (json!({"url": "http://127.0.0.1/x"}), 422, "missing_field"),
        (
            json!({"url": "http://127.0.0.1/x", "events": ["*"], "colour": 1}),
            422,
            "unknown_field",
        ),
    ] {
        let reply = post(&app, &token, "/webhook_endpoints", body.clone()).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.text);
        assert_eq!(reply.error().1, code, "{body}");
    }
    for _ in 0..16 {
        let ok = post(
            &app,
            &token,
            "/webhook_endpoints",
            json!({"url": "http://localhost:9/x", "events": ["*"]}),
        )
        .await;
        assert_eq!(ok.status, 201, "{}", ok.text);
    }
    let over = post(
        &app,
        &token,
        "/webhook_endpoints",
        json!({"url": "http://localhost:9/x", "events": ["*"]}),
    )
    .await;
    assert_eq!(over.error(), (400, "too_many_endpoints", None));
}

#[tokio::test]
async fn a_user_sees_only_the_events_of_their_customers() {
    let app = App::start().await;
    let alice = app.alice();
    // alice is linked to cus_1; carol of the same merchant to cus_2 only.
    app.link("acme", "carol", &["cus_2"]);
    let carol = app.token("carol", "acme");
    let id = app.create(&alice, &valid_body(), None).await.json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.make_final(&id, Status::Succeeded).await;
    let event = app.get(&alice, "/events").await.json["data"][0].clone();
    assert_eq!(event["data"]["object"]["id"], id.as_str());
    let event_id = event["id"].as_str().unwrap();

    assert_eq!(app.get(&carol, "/events").await.json["data"], json!([]));
    assert_eq!(
        app.get(&carol, &format!("/events/{event_id}"))
            .await
            .error(),
        (404, "not_found", None)
    );
    // An API key sees the whole merchant.
    let (key, _) = app.api_key("acme");
    let all = app.get(&key, "/events").await;
    assert_eq!(all.json["data"][0]["id"], event_id, "{}", all.text);
}

/// A user acts only for their linked customers, and an endpoint receives
/// every event of the merchant: only an API key sees or manages endpoints.
#[tokio::test]
async fn user_tokens_may_not_see_or_manage_webhook_endpoints() {
    let app = App::start().await;
    let alice = app.alice();
    let (key, _) = app.api_key("acme");
    let body = json!({"url": "http://127.0.0.1:9/hooks", "events": ["*"]});
    let refused = post(&app, &alice, "/webhook_endpoints", body.clone()).await;
    assert_eq!(refused.error(), (403, "api_key_required", None));
    let created = post(&app, &key, "/webhook_endpoints", body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json["id"].as_str().unwrap();
    for path in [
        "/webhook_endpoints".to_owned(),
        format!("/webhook_endpoints/{id}"),
        format!("/webhook_endpoints/{id}/attempts"),
    ] {
        assert_eq!(
            app.get(&alice, &path).await.error(),
            (403, "api_key_required", None),
            "{path}"
        );
    }
    let rotate = post(
        &app,
        &alice,
        &format!("/webhook_endpoints/{id}/rotate_secret"),
        json!({}),
    )
    .await;
    assert_eq!(rotate.error(), (403, "api_key_required", None));
    let delete = app
        .client
        .delete(format!("{}/webhook_endpoints/{id}", app.base))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 403);
    assert_eq!(
        app.get(&key, &format!("/webhook_endpoints/{id}"))
            .await
            .status,
        200
    );
}
