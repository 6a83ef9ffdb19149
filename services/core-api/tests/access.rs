//! API keys and user–customer links at core-api (the real binary against a
//! real Redis; keys and links written as auth-api writes them).

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{App, valid_body};

fn body_for(customer: Option<&str>) -> Value {
    let mut body = valid_body();
    match customer {
        Some(customer) => body["customer_id"] = json!(customer),
        None => {
            body.as_object_mut().unwrap().remove("customer_id");
        }
    }
    body
}

fn ids(reply: &support::Reply) -> Vec<String> {
    reply.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every page of `query`, following the cursors.
async fn all(app: &App, credential: &str, query: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut path = format!("/transactions?{query}");
    loop {
        let reply = app.get(credential, &path).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        found.extend(ids(&reply));
        match reply.json["next_cursor"].as_str() {
            Some(cursor) => path = format!("/transactions?{query}&starting_after={cursor}"),
            None => return found,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_key_acts_for_every_customer_until_its_record_is_deleted() {
    let app = App::start().await;
    let (key, key_id) = app.api_key("acme");
    let reply = app.create(&key, &body_for(Some("cus_anyone")), None).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(reply.json["created_by"], key_id.as_str());
    let id = reply.json["id"].as_str().unwrap().to_owned();
    let reply = app
        .get(&key, &format!("/transactions?created_by={key_id}"))
        .await;
    assert_eq!(ids(&reply), std::slice::from_ref(&id));
    // Another merchant's key sees none of it.
    let (globex, _) = app.api_key("globex");
    assert_eq!(
        app.get(&globex, &format!("/transactions/{id}"))
            .await
            .status,
        404
    );

    // Revoked (auth-api deletes the hash record): refused within 1 s, with
    // the same answer as a key that never existed.
    let mut redis = app.redis.connection();
    let hash = platform::access::api_key::KeyHash::of(&key);
    let _: i64 = redis::cmd("DEL")
        .arg(platform::keyspace::api_key_by_hash(&hash))
        .query(&mut redis)
        .unwrap();
    let revoked_at = Instant::now();
    let refused = loop {
        let reply = app.get(&key, "/transactions").await;
        if reply.status == 401 {
            break reply;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "still accepted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let unknown = platform::access::api_key::generate().secret;
    let never = app.get(&unknown, "/transactions").await;
    assert_eq!((refused.status, &refused.json), (never.status, &never.json));
    assert_eq!(refused.error().1, "api_key_invalid");
    assert!(!app.logs().contains(&key[8..]), "the key reached the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_creates_reads_and_lists_only_for_linked_customers() {
    let app = App::start().await;
    let (key, _) = app.api_key("acme");
    let alice = app.alice(); // linked to cus_1 and cus_2
    let mut created: Vec<(String, &str)> = Vec::new();
    for i in 0..12 {
        let customer = ["cus_1", "cus_2", "cus_3"][i % 3];
        let reply = app.create(&key, &body_for(Some(customer)), None).await;
        assert_eq!(reply.status, 202, "{}", reply.text);
        created.push((reply.json["id"].as_str().unwrap().to_owned(), customer));
    }
    let of = |customers: &[&str]| -> Vec<String> {
        created
            .iter()
            .rev()
            .filter(|(_, c)| customers.contains(c))
            .map(|(id, _)| id.clone())
            .collect()
    };
    // Lists: merged from cus_1 and cus_2, newest first, across pages.
    assert_eq!(all(&app, &alice, "limit=3").await, of(&["cus_1", "cus_2"]));
    assert_eq!(
        all(&app, &alice, "limit=100").await,
        of(&["cus_1", "cus_2"])
    );
    assert_eq!(
        all(&app, &alice, "customer_id=cus_2&limit=2").await,
        of(&["cus_2"])
    );
    assert_eq!(
        all(&app, &alice, "status=pending&limit=5").await,
        of(&["cus_1", "cus_2"])
    );
    assert_eq!(
        all(&app, &key, "limit=5").await,
        of(&["cus_1", "cus_2", "cus_3"])
    );
    let empty = json!({"data": [], "has_more": false, "next_cursor": null});
    for query in [
        "customer_id=cus_3",
        "customer_id=cus_3&status=pending",
        "customer_id=nobody",
    ] {
        let reply = app.get(&alice, &format!("/transactions?{query}")).await;
        assert_eq!(reply.json, empty, "{query}");
    }
    // A cursor of another customer's transaction reveals nothing of it.
    let cus_3 = of(&["cus_3"]);
    let reply = app
        .get(
            &alice,
            &format!("/transactions?starting_after={}", cus_3[0]),
        )
        .await;
    assert!(
        ids(&reply)
            .iter()
            .all(|id| of(&["cus_1", "cus_2"]).contains(id))
    );

    // Reads: another customer's transaction is like an unknown one.
    let unknown = app
        .get(&alice, &format!("/transactions/tx_{}", "0".repeat(32)))
        .await;
    let other = app
        .get(&alice, &format!("/transactions/{}", cus_3[0]))
        .await;
    assert_eq!((other.status, &other.json), (404, &unknown.json));
    let reply = app.create(&key, &body_for(None), None).await;
    let no_customer = reply.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get(&alice, &format!("/transactions/{no_customer}"))
            .await
            .status,
        404
    );

    // Creates: only for a linked customer, nothing written otherwise.
    let before = app.record_ids().len();
    for body in [body_for(Some("cus_3")), body_for(None)] {
        let reply = app.create(&alice, &body, Some(&uuid_like())).await;
        assert_eq!(
            reply.error(),
            (403, "customer_not_permitted", Some("customer_id"))
        );
    }
    assert_eq!(app.record_ids().len(), before, "nothing written");
    // The idempotency claim of a refused create is released: once linked,
    // the same key and body are accepted.
    let key_header = uuid_like();
    let reply = app
        .create(&alice, &body_for(Some("cus_3")), Some(&key_header))
        .await;
    assert_eq!(reply.status, 403);
    app.link("acme", "alice", &["cus_3"]);
    let reply = app
        .create(&alice, &body_for(Some("cus_3")), Some(&key_header))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(
        app.get(&alice, &format!("/transactions/{}", cus_3[0]))
            .await
            .status,
        200
    );

    // Unlinked: effective with the next request.
    let mut redis = app.redis.connection();
    let _: i64 = redis::cmd("SREM")
        .arg(platform::keyspace::user_customers("acme", "alice"))
        .arg("cus_3")
        .query(&mut redis)
        .unwrap();
    assert_eq!(
        app.get(&alice, &format!("/transactions/{}", cus_3[0]))
            .await
            .status,
        404
    );
    assert_eq!(
        app.create(&alice, &body_for(Some("cus_3")), None)
            .await
            .status,
        403
    );
    // A replay of the earlier request is refused too: it would show the
    // transaction.
    let reply = app
        .create(&alice, &body_for(Some("cus_3")), Some(&key_header))
        .await;
    assert_eq!(reply.status, 403);
}

fn uuid_like() -> String {
    format!(
        "key-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
