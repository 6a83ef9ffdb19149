//! The real `auth-api` binary under a flood of logins: password hashing
//! has a global bound (issue 21, point 6). A file of its own, so that no
//! other test competes for the cores while it measures.

use std::time::{Duration, Instant};

mod support;

use support::{login, start};

/// 100 junk logins at once (unknown names, as a flood would send): beyond
/// one hash per core and a short queue they are refused at once with 503
/// `server_busy` and `Retry-After`, and a real login in the middle of the
/// flood gets its token within a fraction of a second (it waited 1.8 s
/// behind the flood before). Prints the figures (`--nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_refused_beyond_the_queue_and_real_logins_get_through() {
    let service = start(&[]);
    let client = reqwest::Client::new();
    // Connections made before the flood, so it measures hashing only.
    assert_eq!(login(&client, &service.url, "bob", "password").await, 200);
    let flood: Vec<_> = (0..100)
        .map(|i| {
            let (client, url) = (client.clone(), service.url.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let response = client
                    .post(url)
                    .json(&serde_json::json!({"username": format!("flood-{i}"), "password": "x"}))
                    .send()
                    .await
                    .expect("login request");
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                let body: serde_json::Value = response.json().await.expect("JSON error");
                (status, retry_after, body, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // One attempt: answered at once either way, a token or a 503.
    let started = Instant::now();
    let first = client
        .post(&service.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=alice&password=password")
        .send()
        .await
        .expect("login request")
        .status()
        .as_u16();
    let real = started.elapsed();
    assert!(matches!(first, 200 | 503), "{first}");

    let mut refused = 0;
    let mut slowest_refusal = Duration::ZERO;
    let mut slowest = Duration::ZERO;
    for answer in flood {
        let (status, retry_after, body, took) = answer.await.unwrap();
        slowest = slowest.max(took);
        match status {
            401 => assert_eq!(body["error"]["code"], "invalid_credentials"),
            503 => {
                refused += 1;
                slowest_refusal = slowest_refusal.max(took);
                assert_eq!(body["error"]["code"], "server_busy", "{body}");
                assert_eq!(body["error"]["type"], "api_error", "{body}");
                assert_eq!(retry_after.as_deref(), Some("1"));
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    // Retried after Retry-After if it was refused, it gets its token.
    assert_eq!(login(&client, &service.url, "alice", "password").await, 200);
    eprintln!(
        "{refused} of 100 flood logins refused (slowest refusal {slowest_refusal:?}, \
         slowest answer {slowest:?}); a real login was answered {first} in {real:?} \
         during the flood"
    );
    assert!(refused > 50, "only {refused} refused");
    assert!(
        slowest_refusal < Duration::from_millis(500),
        "refusals must be immediate: {slowest_refusal:?}"
    );
    assert!(
        real < Duration::from_secs(1) && slowest < Duration::from_secs(1),
        "no login waits behind the whole flood: {real:?}, {slowest:?}"
    );
}
