//! The README's HTTPie walkthrough, executed verbatim (by
//! `scripts/walkthrough`) against a booted stack: if the README drifts from
//! the product, this fails.

use e2e::stack::Stack;

#[tokio::test(flavor = "multi_thread")]
async fn readme_walkthrough_works_verbatim() {
    let stack = Stack::boot().await;
    let bodies = e2e::client::run_walkthrough(&stack, None);
    assert_eq!(bodies.len(), 14, "fourteen calls print a body: {bodies:#?}");
    let token = &bodies[0];
    assert_eq!(token["token_type"], "Bearer");
    let paid = &bodies[1];
    assert_eq!(paid["status"], "pending");
    let polled = &bodies[2];
    assert_eq!(
        polled["id"], paid["id"],
        "the idempotent retry returned the first transaction"
    );
    assert_eq!(polled["status"], "succeeded", "{polled}");
    assert!(polled["psp"].is_string(), "{polled}");
    assert_eq!(
        polled["attempt_log"].as_array().map(Vec::len),
        Some(1),
        "{polled}"
    );
    let psps = &bodies[3];
    let names: Vec<&str> = psps["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["psp-a", "psp-b"], "{psps}");
    let declined = &bodies[4];
    let all = &bodies[5];
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        2,
        "the retry created nothing: {all}"
    );
    let only_declined = &bodies[6];
    assert_eq!(only_declined["data"].as_array().unwrap().len(), 1);
    assert_eq!(only_declined["data"][0]["id"], declined["id"]);
    assert_eq!(only_declined["data"][0]["status"], "declined");
    let paid_with_key = &bodies[7];
    assert!(
        paid_with_key["created_by"]
            .as_str()
            .is_some_and(|by| by.starts_with("key_")),
        "{paid_with_key}"
    );
    let linked = &bodies[8];
    assert_eq!(linked["customers"], serde_json::json!(["cus_2", "cus_7"]));
    let carols = &bodies[9];
    assert_eq!(carols["data"].as_array().unwrap().len(), 1, "{carols}");
    assert_eq!(carols["data"][0]["id"], paid_with_key["id"]);
    let revoked = &bodies[12];
    assert_eq!(revoked["deleted"], true);
    let events = &bodies[10];
    let events = events["data"].as_array().unwrap();
    assert!(
        events.iter().all(|e| e["type"] == "transaction.succeeded"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["data"]["object"]["id"] == paid["id"]),
        "{events:?}"
    );
    let endpoint = &bodies[11];
    assert!(endpoint["secret"].as_str().unwrap().starts_with("whsec_"));
    let received = bodies[13]["data"].as_array().unwrap();
    assert!(!received.is_empty(), "the sink got nothing");
    assert!(
        received.iter().all(|d| d["verified"] == true),
        "{received:?}"
    );
    e2e::client::assert_no_secrets_in_logs(
        &stack,
        &[
            token["access_token"].as_str().unwrap(),
            endpoint["secret"].as_str().unwrap(),
        ],
    );
}

/// The README's test-card paragraph names every card the sandbox has, with
/// its outcome, and no other.
#[test]
fn the_readme_lists_the_sandboxs_test_cards() {
    use psp_sandbox::cards::{Decision, TEST_CARDS};
    let readme = std::fs::read_to_string(e2e::repo_root().join("README.md")).unwrap();
    let start = readme
        .find("Test cards (PSP Sandbox):")
        .expect("the test-card paragraph");
    let paragraph = &readme[start..start + readme[start..].find("\n\n").unwrap()];
    let flat = paragraph.replace('\n', " ");
    for (number, decision) in TEST_CARDS {
        let after = flat
            .split(&format!("`{number}`"))
            .nth(1)
            .unwrap_or_else(|| panic!("{number} is not in the README: {paragraph}"));
        let outcome = after.split(';').next().unwrap();
        let expected = match decision {
            Decision::Approved => "approved".to_owned(),
            Decision::Declined(code) => format!("`{code}`"),
            Decision::ProcessingError => "503".to_owned(),
        };
        assert!(
            outcome.contains(&expected),
            "{number}: README says {outcome:?}, the sandbox {expected}"
        );
    }
    let listed = flat.matches("`4").count();
    assert_eq!(
        listed,
        TEST_CARDS.len(),
        "README lists other cards: {paragraph}"
    );
}
