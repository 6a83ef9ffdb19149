//! Payment orchestration end to end, through the gateway under the real
//! process-compose with both sandboxes: psp-a started failing every charge
//! (`PSP_FAILURE_RATE=1`), every payment succeeds at psp-b and nothing is
//! charged twice; `GET /psps` shows psp-a's breaker open; once psp-a is
//! healthy again (`PUT /faults`) and the cool-down is over, payments go to
//! psp-a again and its breaker shows closed.

use std::time::{Duration, Instant};

use e2e::client::{self, http_client, login, payment};
use e2e::stack::{Stack, StackOptions};
use serde_json::{Value, json};

const PAYMENTS: usize = 30;

async fn psps(http: &reqwest::Client, gateway: &str, token: &str) -> Value {
    client::get_json(http, &format!("{gateway}/psps"), token).await
}

fn breaker_of<'a>(listed: &'a Value, psp: &str) -> &'a Value {
    listed["data"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|p| p["name"] == psp)
        .map(|p| &p["breaker"])
        .unwrap_or_else(|| panic!("{psp} not in {listed}"))
}

async fn pay(http: &reqwest::Client, gateway: &str, token: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let body = payment(psp_sandbox::cards::APPROVED, "cus_1", &format!("order-{i}"));
        ids.push(client::create_accepted(http, gateway, token, &body).await);
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_psp_is_routed_around_and_comes_back() {
    let stack = Stack::boot_with(
        StackOptions::default()
            .env("psp-a", "PSP_FAILURE_RATE", "1")
            .env("psp-connector", "BREAKER_FAILURE_THRESHOLD", "3")
            .env("psp-connector", "BREAKER_COOLDOWN_MS", "1000"),
    )
    .await;
    let gateway = stack.gateway();
    let http = http_client();
    let token = login(&http, &gateway, "alice").await;

    let listed = psps(&http, &gateway, &token).await;
    let names: Vec<&str> = listed["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["psp-a", "psp-b"], "{listed}");

    let ids = pay(&http, &gateway, &token, PAYMENTS).await;
    let settled =
        client::wait_all_final(&http, &gateway, "alice", &ids, Duration::from_secs(60)).await;
    let mut failed_over = 0;
    for transaction in &settled {
        assert_eq!(transaction["status"], "succeeded", "{transaction}");
        assert_eq!(transaction["psp"], "psp-b", "{transaction}");
        assert!(
            transaction["psp_reference"]
                .as_str()
                .unwrap()
                .starts_with("ch_")
        );
        let log = transaction["attempt_log"].as_array().unwrap();
        assert_eq!(log.last().unwrap()["outcome"], "approved");
        assert_eq!(transaction["attempts"], log.len(), "{transaction}");
        if log.len() == 2 {
            assert_eq!(log[0]["psp"], "psp-a");
            assert_eq!(log[0]["outcome"], "unavailable");
            failed_over += 1;
        }
    }
    assert!(failed_over > 0, "some payments met psp-a's 503s first");
    let stats = client::sandbox_stats(&http, &stack).await;
    assert_eq!(stats["psps"]["psp-a"]["total_charges"], 0, "{stats}");
    assert_eq!(
        stats["total_charges"], PAYMENTS,
        "one charge per payment: {stats}"
    );
    assert_eq!(stats["max_charges_per_key"], 1, "{stats}");
    assert_eq!(
        breaker_of(&psps(&http, &gateway, &token).await, "psp-a")["state"],
        "open"
    );

    // psp-a recovers; after the cool-down the next payment probes it.
    let faults = http
        .put(format!("{}/faults", client::sandbox_url(&stack, "psp-a")))
        .json(&json!({"failure_rate": 0}))
        .send()
        .await
        .expect("PUT /faults");
    assert_eq!(faults.status(), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let id = pay(&http, &gateway, &token, 1).await.remove(0);
        let transaction = client::wait_final(&http, &gateway, &token, &id).await;
        assert_eq!(transaction["status"], "succeeded", "{transaction}");
        if transaction["psp"] == "psp-a" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "psp-a never taken back: {transaction}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        breaker_of(&psps(&http, &gateway, &token).await, "psp-a")["state"],
        "closed"
    );
    let stats = client::sandbox_stats(&http, &stack).await;
    assert_eq!(stats["max_charges_per_key"], 1, "{stats}");
    client::assert_no_secrets_in_logs(&stack, &[&token]);
}
