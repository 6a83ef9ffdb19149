//! Merchant API keys and user ↔ customer links, through the gateway of a
//! booted stack: a key's life (created, used on both core-api replicas,
//! revoked, refused everywhere within a second), what Redis holds of it
//! (a hash, never the secret), forged and other merchants' keys, and users
//! who act only for the customers linked to them.

use std::time::{Duration, Instant};

use e2e::client::{self, http_client, login, payment};
use e2e::stack::Stack;
use serde_json::{Value, json};

async fn get(http: &reqwest::Client, url: &str, credential: &str) -> (u16, Value) {
    let response = http
        .get(url)
        .bearer_auth(credential)
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every value Redis holds, as text: to look for a secret in it.
fn redis_dump(redis: &mut redis::Connection) -> String {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(redis).expect("KEYS");
    let mut dump = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query(redis).expect("TYPE");
        let value: redis::Value = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).query(redis),
            "hash" => redis::cmd("HGETALL").arg(&key).query(redis),
            "set" => redis::cmd("SMEMBERS").arg(&key).query(redis),
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query(redis),
            "stream" => redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .query(redis),
            _ => Ok(redis::Value::Nil),
        }
        .expect("read a key");
        dump.push_str(&format!("{key} {value:?}\n"));
    }
    dump
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_key_is_created_used_on_both_replicas_and_revoked_everywhere_within_a_second() {
    let stack = Stack::boot().await;
    let gateway = stack.gateway();
    let http = http_client();
    let alice = login(&http, &gateway, "alice").await;

    // Created: the secret once, Stripe-shaped, not cacheable.
    let response = http
        .post(format!("{gateway}/auth/api_keys"))
        .bearer_auth(&alice)
        .json(&json!({"name": "checkout server"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let created: Value = response.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk_test_") && key.len() == 51, "{key}");
    assert!(id.starts_with("key_"), "{id}");
    assert_eq!(created["name"], "checkout server");
    assert_eq!(created["last4"], &key[key.len() - 4..]);
    assert!(created["created_at"].is_string());

    // Listed without the secret.
    let (status, listed) = get(&http, &format!("{gateway}/auth/api_keys"), &alice).await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"][0]["id"], id.as_str());
    assert_eq!(listed["data"][0]["last4"], created["last4"]);
    assert!(listed["data"][0].get("key").is_none());
    assert!(
        !listed.to_string().contains(&key[8..]),
        "no secret in the list"
    );

    // Used: for any customer of the merchant, recorded as created by the key.
    let body = payment("4242424242424242", "cus_any", "order-key");
    let response = client::create(&http, &gateway, &key, &body).await.unwrap();
    assert_eq!(response.status(), 202);
    let transaction: Value = response.json().await.unwrap();
    assert_eq!(transaction["created_by"], id.as_str());
    let tx_id = transaction["id"].as_str().unwrap().to_owned();
    let (status, _) = get(&http, &format!("{gateway}/transactions/{tx_id}"), &key).await;
    assert_eq!(status, 200);
    let (status, page) = get(
        &http,
        &format!("{gateway}/transactions?created_by={id}"),
        &key,
    )
    .await;
    assert_eq!(
        (status, page["data"][0]["id"].as_str()),
        (200, Some(tx_id.as_str()))
    );

    // On both replicas, directly (so both have the key cached).
    let replicas = [
        format!("http://127.0.0.1:{}", stack.port(7200)),
        format!("http://127.0.0.1:{}", stack.port(7201)),
    ];
    for replica in &replicas {
        let (status, _) = get(&http, &format!("{replica}/transactions?limit=1"), &key).await;
        assert_eq!(status, 200, "{replica}");
    }

    // Hashed at rest: Redis holds the key's SHA-256, never the secret.
    let mut redis = client::redis(&stack);
    let dump = redis_dump(&mut redis);
    assert!(!dump.contains(&key[8..]), "the secret is in Redis");
    let hash = platform::access::api_key::KeyHash::of(&key).to_hex();
    assert!(
        dump.contains(&format!("api_key:{hash}")),
        "stored by its hash"
    );

    // Forged, truncated and other merchants' keys.
    let unknown = platform::access::api_key::generate().secret;
    let mut flipped = key.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == 'A' { 'B' } else { 'A' });
    for forged in [
        &key[..key.len() - 1],
        &format!("{key}A"),
        &flipped,
        &unknown,
        &key.replace("sk_test_", "sk_live_"),
        &key.to_uppercase(),
    ] {
        let (status, body) = get(&http, &format!("{gateway}/transactions"), forged).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("api_key_invalid")),
            "{forged}"
        );
    }
    let (bob_key, bob_key_id) = client::create_api_key(&http, &gateway, "bob").await;
    let (status, _) = get(&http, &format!("{gateway}/transactions/{tx_id}"), &bob_key).await;
    assert_eq!(status, 404, "another merchant's key sees nothing");
    let bob = login(&http, &gateway, "bob").await;
    let response = http
        .delete(format!("{gateway}/auth/api_keys/{id}"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "nor revokes acme's key");
    let response = http
        .delete(format!("{gateway}/auth/api_keys/{bob_key_id}"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "nor does acme revoke globex's");
    // A key cannot make keys; a user who does not manage keys cannot either.
    let response = http
        .post(format!("{gateway}/auth/api_keys"))
        .bearer_auth(&key)
        .json(&json!({"name": "child"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let carol = login(&http, &gateway, "carol").await;
    let response = http
        .post(format!("{gateway}/auth/api_keys"))
        .bearer_auth(&carol)
        .json(&json!({"name": "mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // Revoked: refused by both replicas within a second.
    let response = http
        .delete(format!("{gateway}/auth/api_keys/{id}"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let revoked_at = Instant::now();
    let mut refused = [None, None];
    while refused.iter().any(Option::is_none) && revoked_at.elapsed() < Duration::from_secs(3) {
        for (i, replica) in replicas.iter().enumerate() {
            if refused[i].is_none() {
                let (status, _) =
                    get(&http, &format!("{replica}/transactions?limit=1"), &key).await;
                if status == 401 {
                    refused[i] = Some(revoked_at.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("revocation reached the replicas after {refused:?}");
    for (replica, after) in replicas.iter().zip(refused) {
        let after = after.unwrap_or_else(|| panic!("{replica} still accepts the revoked key"));
        assert!(after < Duration::from_secs(1), "{replica}: {after:?}");
    }
    let response = http
        .delete(format!("{gateway}/auth/api_keys/{id}"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "revoked once");
    let (_, listed) = get(&http, &format!("{gateway}/auth/api_keys"), &alice).await;
    assert_eq!(listed["data"], json!([]));

    // Revoked and unknown: the same answer, in about the same time.
    let (revoked_status, revoked_body) = get(&http, &format!("{gateway}/transactions"), &key).await;
    let (unknown_status, unknown_body) =
        get(&http, &format!("{gateway}/transactions"), &unknown).await;
    assert_eq!(
        (revoked_status, &revoked_body),
        (unknown_status, &unknown_body)
    );
    let mut timings = [Vec::new(), Vec::new()];
    for _ in 0..30 {
        for (i, candidate) in [&key, &unknown].into_iter().enumerate() {
            let started = Instant::now();
            let (status, _) = get(&http, &format!("{}/transactions", replicas[0]), candidate).await;
            timings[i].push(started.elapsed());
            assert_eq!(status, 401);
        }
    }
    let [revoked_took, unknown_took] = timings.map(median);
    eprintln!("median 401: revoked {revoked_took:?}, unknown {unknown_took:?}");
    assert!(
        revoked_took.abs_diff(unknown_took) < Duration::from_millis(5),
        "revoked {revoked_took:?} vs unknown {unknown_took:?}"
    );

    client::assert_no_secrets_in_logs(&stack, &[&key, &key[8..], &bob_key, &unknown, &alice]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_acts_only_for_linked_customers_and_links_change_at_once() {
    let stack = Stack::boot().await;
    let gateway = stack.gateway();
    let http = http_client();
    let (key, _) = client::create_api_key(&http, &gateway, "alice").await;

    // Written with the merchant's key: customers 1, 2 and 3, interleaved.
    let mut ids: Vec<(String, &str)> = Vec::new();
    for i in 0..9 {
        let customer = ["cus_1", "cus_2", "cus_3"][i % 3];
        let body = payment("4242424242424242", customer, &format!("order-{i}"));
        ids.push((
            client::create_accepted(&http, &gateway, &key, &body).await,
            customer,
        ));
    }
    let of = |customers: &[&str]| -> Vec<String> {
        ids.iter()
            .rev()
            .filter(|(_, c)| customers.contains(c))
            .map(|(id, _)| id.clone())
            .collect()
    };
    let list = |credential: String, query: String| {
        let (http, gateway) = (http.clone(), gateway.clone());
        async move {
            let (status, page) = get(
                &http,
                &format!("{gateway}/transactions?{query}"),
                &credential,
            )
            .await;
            assert_eq!(status, 200, "{query}: {page}");
            page
        }
    };
    let page_ids = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // Every page of a list, followed through its cursors.
    let all = |credential: String, query: String| {
        let list = &list;
        async move {
            let mut found = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let query = match &cursor {
                    Some(c) => format!("{query}&starting_after={c}"),
                    None => query.clone(),
                };
                let page = list(credential.clone(), query).await;
                found.extend(page_ids(&page));
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => return found,
                }
            }
        }
    };

    // Links as the users file seeds them.
    let (status, links) = get(
        &http,
        &format!("{gateway}/auth/users/carol/customers"),
        &key,
    )
    .await;
    assert_eq!((status, &links["customers"]), (200, &json!(["cus_2"])));
    let carol = login(&http, &gateway, "carol").await;
    let alice = login(&http, &gateway, "alice").await;

    // carol (cus_2): her customer's transactions only, however she asks.
    assert_eq!(all(carol.clone(), "limit=2".into()).await, of(&["cus_2"]));
    assert_eq!(
        all(alice.clone(), "limit=2".into()).await,
        of(&["cus_1", "cus_2"])
    );
    assert_eq!(
        all(key.clone(), "limit=2".into()).await,
        of(&["cus_1", "cus_2", "cus_3"])
    );
    for query in [
        "customer_id=cus_1".to_owned(),
        "customer_id=cus_3&status=pending".to_owned(),
        "customer_id=cus_1&limit=1".to_owned(),
        format!("starting_after={}", of(&["cus_3"])[0]),
        "created_by=alice&customer_id=cus_3".to_owned(),
        "reference=order-0".to_owned(),
    ] {
        let page = list(carol.clone(), query.clone()).await;
        let seen = page_ids(&page);
        assert!(
            seen.iter().all(|id| of(&["cus_2"]).contains(id)),
            "{query}: {page}"
        );
        if query.contains("customer_id=cus_1") || query.contains("customer_id=cus_3") {
            assert_eq!(
                page,
                json!({"data": [], "has_more": false, "next_cursor": null}),
                "{query}"
            );
        }
    }
    let not_found = get(
        &http,
        &format!("{gateway}/transactions/tx_{}", "0".repeat(32)),
        &carol,
    )
    .await;
    for (id, customer) in &ids {
        let (status, body) = get(&http, &format!("{gateway}/transactions/{id}"), &carol).await;
        if *customer == "cus_2" {
            assert_eq!(status, 200);
        } else {
            assert_eq!(
                (status, &body["error"]),
                (404, &not_found.1["error"]),
                "{id}"
            );
        }
    }
    // … and pays only for it.
    let response = client::create(
        &http,
        &gateway,
        &carol,
        &payment("4242424242424242", "cus_1", "c-1"),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 403);
    let refused: Value = response.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "customer_not_permitted");
    let mut no_customer = payment("4242424242424242", "cus_1", "c-2");
    no_customer.as_object_mut().unwrap().remove("customer_id");
    let response = client::create(&http, &gateway, &carol, &no_customer)
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let mine = client::create_accepted(
        &http,
        &gateway,
        &carol,
        &payment("4242424242424242", "cus_2", "c-3"),
    )
    .await;
    // An Idempotency-Key alice used for cus_1 replays nothing to carol.
    let shared = payment("4242424242424242", "cus_1", "shared");
    let response = client::create_with_key(&http, &gateway, &alice, &shared, "shared-key")
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let response = client::create_with_key(&http, &gateway, &carol, &shared, "shared-key")
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // No user can link itself, or read links.
    for credential in [&carol, &alice] {
        let (status, body) =
            client::set_link(&http, &gateway, credential, "carol", "cus_1", true).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("api_key_required"))
        );
    }

    // Linked: carol sees cus_3 with her next request; unlinked: no more.
    let (status, body) = client::set_link(&http, &gateway, &key, "carol", "cus_3", true).await;
    assert_eq!(
        (status, &body["customers"]),
        (200, &json!(["cus_2", "cus_3"]))
    );
    let cus_3 = &of(&["cus_3"])[0];
    let (status, _) = get(&http, &format!("{gateway}/transactions/{cus_3}"), &carol).await;
    assert_eq!(status, 200);
    let mut expected = of(&["cus_2", "cus_3"]);
    expected.insert(0, mine.clone());
    assert_eq!(all(carol.clone(), "limit=3".into()).await, expected);
    client::create_accepted(
        &http,
        &gateway,
        &carol,
        &payment("4242424242424242", "cus_3", "c-4"),
    )
    .await;
    let (status, body) = client::set_link(&http, &gateway, &key, "carol", "cus_3", false).await;
    assert_eq!((status, &body["customers"]), (200, &json!(["cus_2"])));
    let (status, _) = get(&http, &format!("{gateway}/transactions/{cus_3}"), &carol).await;
    assert_eq!(status, 404);
    let page = list(carol.clone(), "customer_id=cus_3".into()).await;
    assert_eq!(page["data"], json!([]));
    let response = client::create(
        &http,
        &gateway,
        &carol,
        &payment("4242424242424242", "cus_3", "c-5"),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 403);

    // Another merchant's key cannot touch acme's users.
    let (bob_key, _) = client::create_api_key(&http, &gateway, "bob").await;
    let (status, _) = get(
        &http,
        &format!("{gateway}/auth/users/carol/customers"),
        &bob_key,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = client::set_link(&http, &gateway, &bob_key, "carol", "cus_1", true).await;
    assert_eq!(status, 404);
    let (_, links) = get(
        &http,
        &format!("{gateway}/auth/users/carol/customers"),
        &key,
    )
    .await;
    assert_eq!(links["customers"], json!(["cus_2"]));
}
