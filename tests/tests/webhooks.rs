//! Webhooks end to end, through the gateway under the real process-compose:
//! a payment's events reach the development sink out of the box, every
//! signature checks out with an independent Standard Webhooks
//! implementation (the `standardwebhooks` package from PyPI), an endpoint
//! registered through the API receives them, a redelivery carries the same
//! `webhook-id`, the attempt log shows them, merchants see only their own,
//! and no secret reaches a log.
//!
//! The Python package lives in a venv that `.ci/run` creates; missing, the
//! test fails with that hint: it is never skipped.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::client::{self, http_client, login, payment};
use e2e::stack::Stack;
use serde_json::{Value, json};

/// The version `.ci/run` installs.
const STANDARDWEBHOOKS_VERSION: &str = "1.1.0";

/// The venv's Python with `standardwebhooks` importable, or a panic saying
/// how to get it.
fn standardwebhooks_python() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME");
    let venv = cache
        .join("payment-platform")
        .join(format!("standardwebhooks-{STANDARDWEBHOOKS_VERSION}"));
    let python = venv.join("bin/python");
    let importable = Command::new(&python)
        .args(["-c", "import standardwebhooks"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        importable,
        "standardwebhooks is not installed in {}: `python3 -m venv {0} && {0}/bin/pip install \
         standardwebhooks=={STANDARDWEBHOOKS_VERSION}` (.ci/run does this)",
        venv.display()
    );
    python
}

/// Verifies every delivery (headers and body as received) with the Python
/// package; returns how many it verified.
fn verify_independently(secret: &str, deliveries: &[Value]) -> usize {
    let program = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
secret, deliveries = sys.argv[1], json.load(sys.stdin)
hook = Webhook(secret)
for d in deliveries:
    hook.verify(d["body"], d["headers"])
try:
    hook.verify(deliveries[0]["body"] + " ", deliveries[0]["headers"])
except Exception:
    print(len(deliveries))
    sys.exit(0)
sys.exit("a tampered body verified")
"#;
    let mut child = Command::new(standardwebhooks_python())
        .args(["-c", program, secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(deliveries).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "standardwebhooks refused a delivery: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap()
}

/// The dev sink's secret, from process-compose.yaml.
fn dev_sink_secret() -> String {
    let text = std::fs::read_to_string(e2e::repo_root().join("process-compose.yaml")).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("- \"WEBHOOK_SINK_SECRET="))
        .map(|s| s.trim_end_matches('"').to_owned())
        .expect("process-compose.yaml sets WEBHOOK_SINK_SECRET")
}

/// What the sink received, through the gateway's dashboard route.
async fn sink_list(client: &reqwest::Client, stack: &Stack) -> Vec<Value> {
    let response = client
        .get(format!("{}/_sink/webhooks", stack.gateway()))
        .header("X-Dashboard", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let list: Value = response.json().await.unwrap();
    list["data"].as_array().unwrap().clone()
}

async fn wait_until<T>(timeout: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A receiver in this test process: records what it gets, answers 200.
async fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::http::HeaderMap;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                state.lock().unwrap().push(json!({
                    "headers": {
                        "webhook-id": header("webhook-id"),
                        "webhook-timestamp": header("webhook-timestamp"),
                        "webhook-signature": header("webhook-signature"),
                    },
                    "body": body,
                }));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_s_events_are_delivered_signed_to_the_sink_and_to_a_registered_endpoint() {
    let python = standardwebhooks_python();
    assert!(python.exists());
    let stack = Stack::boot().await;
    let gateway = stack.gateway();
    let http = http_client();
    let token = login(&http, &gateway, "alice").await;
    // Endpoints are the merchant's: only an API key manages them.
    let (key, _) = client::create_api_key(&http, &gateway, "alice").await;

    // A merchant's own endpoint, registered through the API.
    let (url, seen) = receiver().await;
    let created: Value = http
        .post(format!("{gateway}/webhook_endpoints"))
        .bearer_auth(&key)
        .json(&json!({"url": url, "events": ["transaction.succeeded"], "description": "e2e"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let endpoint_id = created["id"].as_str().expect("created").to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();

    let tx = client::create_accepted(
        &http,
        &gateway,
        &token,
        &payment("4242424242424242", "cus_1", "order-hooks"),
    )
    .await;
    client::wait_final(&http, &gateway, &token, &tx).await;

    // The events: processing, then succeeded, newest first.
    let events: Value = client::get_json(&http, &format!("{gateway}/events"), &token).await;
    let types: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["object"]["id"] == tx.as_str())
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["transaction.succeeded", "transaction.processing"]);

    // The dev sink got both, verified by the sink and by standardwebhooks.
    let at_sink = wait_until(Duration::from_secs(15), async || {
        let list: Vec<Value> = sink_list(&http, &stack)
            .await
            .into_iter()
            .filter(|d| d["transaction_id"] == tx.as_str())
            .collect();
        (list.len() >= 2).then_some(list)
    })
    .await;
    assert!(at_sink.iter().all(|d| d["verified"] == true), "{at_sink:?}");
    assert_eq!(
        verify_independently(&dev_sink_secret(), &at_sink),
        at_sink.len()
    );

    // The registered endpoint got only the succeeded event.
    let mine = wait_until(Duration::from_secs(15), async || {
        let seen = seen.lock().unwrap().clone();
        (!seen.is_empty()).then_some(seen)
    })
    .await;
    assert_eq!(mine.len(), 1);
    let body: Value = serde_json::from_str(mine[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "transaction.succeeded");
    assert_eq!(body["data"]["object"]["id"], tx.as_str());
    assert_eq!(verify_independently(&secret, &mine), 1);

    // Redelivery: the same event, the same webhook-id.
    let event_id = body["id"].as_str().unwrap();
    let redelivered = http
        .post(format!("{gateway}/events/{event_id}/redeliver"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(redelivered.status(), 202);
    let again = wait_until(Duration::from_secs(15), async || {
        let seen = seen.lock().unwrap().clone();
        (seen.len() >= 2).then_some(seen)
    })
    .await;
    assert_eq!(again[1]["headers"]["webhook-id"], event_id);
    assert_eq!(again[1]["body"], again[0]["body"]);

    // The attempt log.
    let attempts: Value = client::get_json(
        &http,
        &format!("{gateway}/webhook_endpoints/{endpoint_id}/attempts"),
        &key,
    )
    .await;
    let attempts = attempts["data"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts
            .iter()
            .all(|a| a["outcome"] == "delivered" && a["status_code"] == 200)
    );

    // Bob sees none of it.
    let bob = login(&http, &gateway, "bob").await;
    let his: Value = client::get_json(&http, &format!("{gateway}/events"), &bob).await;
    let his_ids: HashSet<&str> = his["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["object"]["id"].as_str().unwrap())
        .collect();
    assert!(!his_ids.contains(tx.as_str()));
    let (bob_key, _) = client::create_api_key(&http, &gateway, "bob").await;
    for (path, credential) in [
        (format!("/events/{event_id}"), &bob),
        (format!("/webhook_endpoints/{endpoint_id}"), &bob_key),
    ] {
        let status = http
            .get(format!("{gateway}{path}"))
            .bearer_auth(credential)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "{path}");
    }

    client::assert_no_secrets_in_logs(
        &stack,
        &[&secret, &dev_sink_secret(), &token, &key, &bob_key],
    );
}
