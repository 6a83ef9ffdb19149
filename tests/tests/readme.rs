//! The README's HTTPie walkthrough, executed verbatim against a booted
//! stack: if the README drifts from the product, this fails.

use std::process::Command;

use e2e::stack::Stack;
use serde_json::Value;

fn walkthrough() -> String {
    let readme = std::fs::read_to_string(e2e::repo_root().join("README.md")).unwrap();
    let section = readme
        .split("<!-- walkthrough:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- walkthrough:end -->").next())
        .expect("README has a walkthrough:begin/end section");
    let code = section
        .split("```sh")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the walkthrough section holds a ```sh block");
    code.to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_walkthrough_works_verbatim() {
    let http = platform::testing::require_program("http", "`apt-get install httpie`, or `nix develop`");
    platform::testing::require_program("jq", "`apt-get install jq`, or `nix develop`");
    let stack = Stack::boot().await;
    let script = walkthrough().replace(":8000", &format!(":{}", stack.port(8000)));

    // HTTPie reads a request body from stdin when stdin is not a terminal,
    // as in CI; the user's terminal has none, so ignore it here. Fail on any
    // 4xx/5xx, which the README never expects.
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.json"),
        r#"{"default_options": ["--ignore-stdin", "--check-status", "--timeout=10"]}"#,
    )
    .unwrap();
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .env("HTTPIE_CONFIG_DIR", config.path())
        .env("HOME", config.path())
        .env("PATH", format!("{}:{}", http.parent().unwrap().display(), std::env::var("PATH").unwrap()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "walkthrough failed ({}):\n{stdout}\n{stderr}", output.status);

    // Each HTTPie call printed one JSON body per line.
    let bodies: Vec<Value> = stdout.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    let token = &bodies[0];
    assert_eq!(token["token_type"], "Bearer");
    let paid = &bodies[1];
    assert_eq!(paid["status"], "pending");
    let polled = &bodies[2];
    assert_eq!(polled["id"], paid["id"], "the idempotent retry returned the first transaction");
    assert_eq!(polled["status"], "succeeded", "{polled}");
    let declined = &bodies[3];
    let all = &bodies[4];
    assert_eq!(all["data"].as_array().unwrap().len(), 2, "the retry created nothing: {all}");
    let only_declined = &bodies[5];
    assert_eq!(only_declined["data"].as_array().unwrap().len(), 1);
    assert_eq!(only_declined["data"][0]["id"], declined["id"]);
    assert_eq!(only_declined["data"][0]["status"], "declined");
}
