//! Schema fuzzing: schemathesis generates requests from each service's own
//! `/openapi.json`, fetched through the gateway, and checks every answer
//! against the same document — no 5xx, documented status codes, content
//! types, headers and bodies. The run is bounded (fixed examples per
//! operation, fixed seed) so it takes well under
//! a minute per service.
//!
//! schemathesis is a Python tool from PyPI; `.ci/run` installs the pinned
//! version. Missing, the test fails with that hint: it is never skipped.

use std::process::Command;
use std::time::Duration;

use e2e::client;
use e2e::stack::Stack;
use platform::auth::{JwtSecret, TokenIssuer};

/// The version `.ci/run` installs; other versions may check differently.
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Examples per operation and phase; the seed makes failures reproducible.
const MAX_EXAMPLES: &str = "100";
const SEED: &str = "20261122";

fn schemathesis() -> &'static str {
    let version = Command::new("schemathesis").arg("--version").output();
    match version {
        Ok(output) if output.status.success() => {
            let text = String::from_utf8_lossy(&output.stdout);
            if !text.contains(SCHEMATHESIS_VERSION) {
                eprintln!(
                    "warning: schemathesis {SCHEMATHESIS_VERSION} expected, found {}",
                    text.trim()
                );
            }
            "schemathesis"
        }
        _ => panic!(
            "schemathesis is not installed: `pip install schemathesis=={SCHEMATHESIS_VERSION}` \
             (.ci/run does this)"
        ),
    }
}

/// Runs schemathesis on `schema_url` with requests sent to `base_url`.
fn fuzz(schema_url: &str, base_url: &str, token: &str, report_dir: &std::path::Path) {
    let program = schemathesis();
    let output = Command::new(program)
        .arg("run")
        .arg(schema_url)
        .args(["--url", base_url])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance,negative_data_rejection",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", SEED])
        .args(["--generation-database", "none"])
        // One worker: with two, its threads sometimes parse Python source at
        // once (traceback and inspect calls) and CPython 3.11's AST builder,
        // whose recursion counter is not per thread, fails with "AST
        // constructor recursion depth mismatch" (seen on every run once the
        // webhook routes were added).
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .arg("--no-color")
        .args(["--report", "junit"])
        .args(["--report-dir", &report_dir.display().to_string()])
        // Its own home: no stored examples or config from the user's.
        .env("HOME", report_dir)
        .current_dir(report_dir)
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "schemathesis found problems in {schema_url} (exit {:?}); see the output above",
        output.status.code()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn core_api_and_auth_api_conform_to_their_schemas_under_fuzzing() {
    let stack = Stack::boot().await;
    let gateway = stack.gateway();
    // A dev token signed with the dev secret, valid for the whole run (a
    // login token lives 30 s, less than the run).
    let secret = JwtSecret::new(client::dev_jwt_secret(&stack)).unwrap();
    let (token, _) = TokenIssuer::new(&secret, Duration::from_secs(600)).issue("alice", "acme");
    // And an API key: core-api is fuzzed with it (a user token would get
    // 403 for every customer not linked to alice, so valid bodies would
    // never be accepted), auth-api with both (the key routes need a user
    // token, the link routes a key).
    let (api_key, _) = client::create_api_key(&client::http_client(), &gateway, "alice").await;
    let reports = tempfile::tempdir().unwrap();

    let core = reports.path().join("core-api");
    let auth = reports.path().join("auth-api");
    let auth_with_key = reports.path().join("auth-api-key");
    std::fs::create_dir_all(&core).unwrap();
    std::fs::create_dir_all(&auth).unwrap();
    std::fs::create_dir_all(&auth_with_key).unwrap();
    let (gateway_core, gateway_auth) = (gateway.clone(), gateway.clone());
    let key_auth = api_key.clone();
    // auth-api's paths are relative to /auth, where the gateway mounts it.
    let core_run = tokio::task::spawn_blocking(move || {
        fuzz(
            &format!("{gateway_core}/openapi.json"),
            &gateway_core,
            &api_key,
            &core,
        )
    });
    let auth_run = tokio::task::spawn_blocking(move || {
        fuzz(
            &format!("{gateway_auth}/auth/openapi.json"),
            &format!("{gateway_auth}/auth"),
            &token,
            &auth,
        );
        fuzz(
            &format!("{gateway_auth}/auth/openapi.json"),
            &format!("{gateway_auth}/auth"),
            &key_auth,
            &auth_with_key,
        );
    });
    core_run.await.unwrap();
    auth_run.await.unwrap();

    for name in stack.process_names() {
        let log = stack.log(name);
        assert!(
            !log.contains("panicked"),
            "{} panicked under fuzzing:\n{log}",
            name
        );
    }
    client::assert_no_secrets_in_logs(&stack, &[]);
}
