//! Refunds through the gateway, with the stack under process-compose: the
//! README's refund block verbatim, and a payment refunded in parts (also
//! concurrently) until nothing is left, checked at the sandbox.

use std::time::{Duration, Instant};

use e2e::client::{self, APPROVED, http_client, payment};
use e2e::stack::Stack;
use serde_json::{Value, json};

/// `GET /refunds/stats` of sandbox `name`.
async fn refund_stats(http: &reqwest::Client, stack: &Stack, name: &str) -> Value {
    http.get(format!(
        "{}/refunds/stats",
        client::sandbox_url(stack, name)
    ))
    .send()
    .await
    .expect("sandbox refund stats")
    .json()
    .await
    .expect("stats JSON")
}

/// The refunds made at every sandbox, and the most under one key.
async fn refunds_everywhere(http: &reqwest::Client, stack: &Stack) -> (u64, u64, u64) {
    let (mut total, mut amount, mut max) = (0, 0, 0);
    for (name, _) in client::SANDBOXES {
        let stats = refund_stats(http, stack, name).await;
        total += stats["total_refunds"].as_u64().unwrap();
        amount += stats["refunded_amount"].as_u64().unwrap();
        max = max.max(stats["max_refunds_per_key"].as_u64().unwrap());
        assert_eq!(stats["over_refunded_charges"], 0, "{name}: {stats}");
    }
    (total, amount, max)
}

/// Polls the transaction's refunds until none is pending.
async fn wait_refunds_final(http: &reqwest::Client, gateway: &str, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list =
            client::get_json(http, &format!("{gateway}/transactions/{id}/refunds"), token).await;
        let data = list["data"].as_array().expect("a refund list");
        if data.iter().all(|refund| refund["status"] != "pending") {
            return list;
        }
        assert!(Instant::now() < deadline, "refunds still pending: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_refund_block_works_verbatim() {
    let stack = Stack::boot().await;
    let bodies = client::run_walkthrough(&stack, Some("refunds"));
    assert_eq!(bodies.len(), 5, "five calls print a body: {bodies:#?}");
    let (part, replayed, rest, transaction, list) =
        (&bodies[0], &bodies[1], &bodies[2], &bodies[3], &bodies[4]);
    assert_eq!(part["status"], "pending");
    assert_eq!(part["amount"], 500);
    assert_eq!(replayed, part, "the same key replays the same refund");
    assert_eq!(rest["amount"], 1500);
    assert_eq!(transaction["refunded_amount"], 2000, "{transaction}");
    let refunds = transaction["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 2, "{transaction}");
    assert!(
        refunds.iter().all(|r| r["status"] == "succeeded"),
        "{transaction}"
    );
    assert_eq!(list["data"], transaction["refunds"]);
    assert_eq!(
        refunds_everywhere(&http_client(), &stack).await,
        (2, 2000, 1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_is_refunded_in_parts_through_the_gateway_and_never_beyond() {
    let stack = Stack::boot().await;
    let gateway = stack.gateway();
    let http = http_client();
    let token = client::login(&http, &gateway, "alice").await;
    let id =
        client::create_accepted(&http, &gateway, &token, &payment(APPROVED, "cus_1", "rf-1")).await;
    let paid = client::wait_final(&http, &gateway, &token, &id).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    assert_eq!(paid["refunds"], json!([]));

    let refund = |body: Value, key: String| {
        let (http, gateway, token, id) = (http.clone(), gateway.clone(), token.clone(), id.clone());
        async move {
            let response = http
                .post(format!("{gateway}/transactions/{id}/refunds"))
                .bearer_auth(&token)
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .expect("POST refunds");
            let status = response.status().as_u16();
            let replayed = response.headers().contains_key("idempotent-replayed");
            (status, replayed, response.json::<Value>().await.unwrap())
        }
    };
    let (status, _, first) = refund(json!({"amount": 299}), "rf-1-a".into()).await;
    assert_eq!(status, 202, "{first}");
    let (status, replayed, again) = refund(json!({"amount": 299}), "rf-1-a".into()).await;
    assert_eq!((status, replayed), (202, true));
    assert_eq!(again, first);

    // 1000 left; twenty concurrent refunds of 100 with their own keys:
    // exactly ten fit.
    let tasks: Vec<_> = (0..20)
        .map(|i| tokio::spawn(refund(json!({"amount": 100}), format!("rf-1-c{i}"))))
        .collect();
    let mut accepted = 0;
    for task in tasks {
        let (status, _, body) = task.await.unwrap();
        match status {
            202 => accepted += 1,
            422 => assert_eq!(body["error"]["code"], "refund_exceeds_amount"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(accepted, 10);
    let (status, _, over) = refund(json!({"amount": 1}), "rf-1-over".into()).await;
    assert_eq!(status, 422, "{over}");
    assert_eq!(over["error"]["code"], "refund_exceeds_amount");

    let list = wait_refunds_final(&http, &gateway, &token, &id).await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 11);
    assert!(data.iter().all(|r| r["status"] == "succeeded"), "{list}");
    assert_eq!(list["refunded_amount"], 1299);
    let transaction = client::fetch(&http, &gateway, &token, &id).await.unwrap();
    assert_eq!(transaction["refunded_amount"], 1299);

    // All made at the PSP that charged, none elsewhere.
    let psp = paid["psp"].as_str().expect("the PSP that charged");
    let stats = refund_stats(&http, &stack, psp).await;
    assert_eq!(stats["total_refunds"], 11, "{psp}: {stats}");
    assert_eq!(stats["refunded_amount"], 1299);
    assert_eq!(refunds_everywhere(&http, &stack).await, (11, 1299, 1));

    // One refund.succeeded event per refund, each with its refund.
    let events = client::get_json(
        &http,
        &format!("{gateway}/events?type=refund.succeeded&limit=100"),
        &token,
    )
    .await;
    let events = events["data"].as_array().expect("events");
    assert_eq!(events.len(), 11);
    assert!(
        events
            .iter()
            .all(|e| e["data"]["object"]["id"] == id.as_str())
    );
    let mut refunded: Vec<&str> = events
        .iter()
        .map(|e| e["data"]["refund"]["id"].as_str().unwrap())
        .collect();
    refunded.sort_unstable();
    refunded.dedup();
    assert_eq!(refunded.len(), 11);

    // Another merchant cannot see, so cannot refund, it.
    let bob = client::login(&http, &gateway, "bob").await;
    let response = http
        .post(format!("{gateway}/transactions/{id}/refunds"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}
