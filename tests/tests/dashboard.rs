//! Developer experience (README "Dashboard" and "Live reload"):
//!
//! - the dashboard at `/_dashboard/`, driven in headless Chromium by
//!   Playwright (`dashboard/tests/dashboard.mjs`) against the booted stack:
//!   Get token, Create payment, the transaction reaching `succeeded` in the
//!   table, 4xx errors shown plainly, the process and log panels saying
//!   plainly when process-compose is not reachable; against the real
//!   process-compose, the processes grouped by namespace, restarted,
//!   stopped and started through the gateway's proxy, a process' live log
//!   and a request traced across services;
//! - `scripts/dev-reload`'s change detection, with real cargo builds of a
//!   scratch workspace: it reports exactly the binaries that changed; and
//!   its rolling restart under a real process-compose supervising the
//!   scratch workspace's binaries, measured from the edit to the new
//!   binary answering.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e::client;
use e2e::client::{APPROVED, PROCESSING_ERROR};
use e2e::stack::{Stack, StackOptions};

const CHROMIUM: &str = "/usr/bin/chromium";

/// node, the script, and the browser, or a panic saying how to get them.
fn browser_test_prerequisites() -> (PathBuf, PathBuf) {
    let node = platform::testing::require_program(
        "node",
        "`apt-get install nodejs npm` (Node 20 or newer), or `nix develop`",
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
    assert!(
        Path::new(&chromium).is_file(),
        "{chromium} not found: the dashboard is tested in Debian's headless Chromium; \
         install it with `apt-get install chromium` (or set CHROMIUM to a Chromium binary)"
    );
    let tests = e2e::repo_root().join("dashboard/tests");
    assert!(
        tests.join("node_modules/playwright-core").is_dir(),
        "Playwright is not installed: run `npm ci --prefix dashboard/tests`"
    );
    (node, tests.join("dashboard.mjs"))
}

async fn run_browser(node: &Path, script: &Path, gateway: &str, scenario: &str) -> Output {
    run_browser_with(node, script, gateway, scenario, &[]).await
}

async fn run_browser_with(
    node: &Path,
    script: &Path,
    gateway: &str,
    scenario: &str,
    env: &[(&str, &str)],
) -> Output {
    let mut command = tokio::process::Command::new(node);
    command
        .arg(script)
        .arg(gateway)
        .arg(scenario)
        .envs(env.iter().copied())
        .current_dir(script.parent().unwrap())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("browser test did not finish within 120 s")
        .expect("run node");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// Points the gateway's process-compose proxy at a port nobody listens
/// on, so the panel's "not reachable" state is what is tested even on a
/// machine where a real process-compose uses 8080.
fn without_process_compose() -> StackOptions {
    let nobody = platform::testing::free_port();
    StackOptions::default().env("gateway", "PC_API_UPSTREAM", &format!("127.0.0.1:{nobody}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_gets_a_token_and_pays_until_succeeded_in_a_real_browser() {
    let (node, script) = browser_test_prerequisites();
    let stack = Stack::boot_with(without_process_compose()).await;

    // The page itself: served by Caddy, the bare path redirected.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let bare = client
        .get(format!("{}/_dashboard", stack.gateway()))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "/_dashboard/");
    // The proxy refuses what the panel does not need.
    let stop = client
        .post(format!("{}/_pc/project/stop", stack.gateway()))
        .header("x-dashboard", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(stop.status(), 403);

    let (api_key, _) =
        e2e::client::create_api_key(&e2e::client::http_client(), &stack.gateway(), "alice").await;
    let output = run_browser_with(
        &node,
        &script,
        &stack.gateway(),
        "payment",
        &[("DASHBOARD_API_KEY", &api_key)],
    )
    .await;
    assert!(output.status.success(), "browser scenario failed");
    e2e::client::assert_no_secrets_in_logs(&stack, &[&api_key]);
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_prompts_for_a_new_token_when_it_expired() {
    let (node, script) = browser_test_prerequisites();
    let stack =
        Stack::boot_with(without_process_compose().env("auth-api", "AUTH_TOKEN_TTL_SECS", "1"))
            .await;
    let output = run_browser(&node, &script, &stack.gateway(), "expiry").await;
    assert!(output.status.success(), "browser scenario failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_groups_processes_and_restarts_stops_and_starts_them() {
    let (node, script) = browser_test_prerequisites();
    let stack = Stack::boot().await;
    let before = ["core-api-1", "psp-connector-1"].map(|name| stack.state(name));
    let output = run_browser(&node, &script, &stack.gateway(), "processes").await;
    assert!(output.status.success(), "browser scenario failed");
    // process-compose itself restarted core-api-1, and stopped and started
    // psp-connector-1: new pids, up again.
    for before in before {
        let after = stack.state(&before.name);
        assert_ne!(after.pid, before.pid, "{} was not restarted", before.name);
        assert!(after.is_up(), "{after:?}");
    }
    assert!(
        stack
            .supervisor_log()
            .lines()
            .any(|l| l.contains("psp-connector-1") && l.to_lowercase().contains("stop")),
        "process-compose logged no stop of psp-connector-1:\n{}",
        stack.supervisor_log()
    );
    for other in stack
        .process_names()
        .iter()
        .filter(|n| !["core-api-1", "psp-connector-1"].contains(&n.as_str()))
    {
        let state = stack.state(other);
        assert_eq!(state.restarts, 0, "{other} restarted too");
        assert!(state.is_up(), "{state:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_follows_a_process_log_and_traces_a_request_across_services() {
    let (node, script) = browser_test_prerequisites();
    let stack = Stack::boot().await;
    let output = run_browser(&node, &script, &stack.gateway(), "logs").await;
    assert!(output.status.success(), "browser scenario failed");
    // What the page showed came from the processes' own output.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let traced = stdout
        .lines()
        .find_map(|l| l.strip_prefix("[dashboard] trace of "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the scenario names the request it traced");
    // Both PSPs are healthy: the default route charges at psp-a.
    for process in ["gateway", "psp-a"] {
        assert!(
            stack.log(process).contains(traced),
            "{traced} not in {process}'s log:\n{}",
            stack.log(process)
        );
    }
}

/// Waits until `f` holds, up to `timeout`.
async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn xlen(redis: &mut redis::Connection, stream: &str) -> u64 {
    redis::cmd("XLEN").arg(stream).query(redis).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_shows_the_queue_and_requeues_only_what_is_safe() {
    use platform::keyspace::{DEAD_LETTER_STREAM, PAYLOAD_FIELD, RETRY_SET, STREAM};
    let (node, script) = browser_test_prerequisites();
    // Two quick attempts, so a payment the PSP keeps failing is failed and
    // dead-lettered within a second.
    let stack = Stack::boot_with(
        StackOptions::default()
            .env("psp-connector", "PSP_MAX_ATTEMPTS", "2")
            .env("psp-connector", "CONNECTOR_RETRY_BASE_MS", "20"),
    )
    .await;
    let gateway = stack.gateway();
    let http = client::http_client();
    let token = client::login(&http, &gateway, "alice").await;
    let mut redis = client::redis(&stack);

    // A poison message: the connector dead-letters it (undecodable).
    let _: String = redis::cmd("XADD")
        .arg(STREAM)
        .arg("*")
        .arg(PAYLOAD_FIELD)
        .arg("{this is not a charge message")
        .query(&mut redis)
        .unwrap();
    // A payment the PSP answers 503 every time: failed, dead-lettered.
    let failed = client::create_accepted(
        &http,
        &gateway,
        &token,
        &client::payment(PROCESSING_ERROR, "cus_1", "queue-failed"),
    )
    .await;
    let outcome = client::wait_all_final(
        &http,
        &gateway,
        "alice",
        std::slice::from_ref(&failed),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(outcome[0]["status"], "failed", "{}", outcome[0]);
    eventually("two dead letters", Duration::from_secs(10), || {
        xlen(&mut redis, DEAD_LETTER_STREAM) == 2
    })
    .await;

    // A dead letter that kept its message, for a payment still pending: what
    // a connector that keeps (sealed) messages would write; ours never does.
    // With the connectors stopped, the payment's message is taken off the
    // queue by hand and written to the dead-letter stream with its payload.
    for name in ["psp-connector-0", "psp-connector-1"] {
        stack.api().stop(name);
    }
    eventually("connectors stopped", Duration::from_secs(30), || {
        ["psp-connector-0", "psp-connector-1"]
            .iter()
            .all(|n| stack.state(n).status != "Running")
    })
    .await;
    let kept = client::create_accepted(
        &http,
        &gateway,
        &token,
        &client::payment(APPROVED, "cus_1", "queue-kept"),
    )
    .await;
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(STREAM)
        .arg("-")
        .arg("+")
        .query(&mut redis)
        .unwrap();
    let (entry_id, fields) = entries
        .into_iter()
        .find(|(_, fields)| fields.iter().any(|(_, v)| v.contains(&kept)))
        .expect("the pending payment's message on the queue");
    let payload = &fields.iter().find(|(k, _)| k == PAYLOAD_FIELD).unwrap().1;
    let _: String = redis::cmd("XADD")
        .arg(DEAD_LETTER_STREAM)
        .arg("*")
        .arg(&[
            ("reason", "set_aside"),
            ("error", "set aside by the test, message kept"),
            ("entry_id", entry_id.as_str()),
            ("dead_at", "2026-01-01T00:00:00.000Z"),
            ("transaction_id", kept.as_str()),
            (PAYLOAD_FIELD, payload.as_str()),
        ])
        .query(&mut redis)
        .unwrap();
    let _: u64 = redis::cmd("XDEL")
        .arg(STREAM)
        .arg(&entry_id)
        .query(&mut redis)
        .unwrap();
    for name in ["psp-connector-0", "psp-connector-1"] {
        stack.api().start(name);
    }
    eventually("connectors up again", Duration::from_secs(30), || {
        ["psp-connector-0", "psp-connector-1"]
            .iter()
            .all(|n| stack.state(n).is_up())
    })
    .await;
    // A retry waiting for its time (an hour from now; nothing to send).
    let retry = "tx_01a2000000007000800000000000000f";
    let due = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 3_600_000;
    let _: () = redis::cmd("ZADD")
        .arg(RETRY_SET)
        .arg(due)
        .arg(retry)
        .query(&mut redis)
        .unwrap();

    let screenshot = std::env::var("DASHBOARD_SCREENSHOT").ok();
    let mut env = vec![
        ("DASHBOARD_FAILED_TX", failed.as_str()),
        ("DASHBOARD_KEPT_TX", kept.as_str()),
        ("DASHBOARD_RETRY_TX", retry),
    ];
    if let Some(path) = &screenshot {
        env.push(("DASHBOARD_SCREENSHOT", path));
    }
    let output = run_browser_with(&node, &script, &gateway, "queue", &env).await;
    let _: () = redis::cmd("ZREM")
        .arg(RETRY_SET)
        .arg(retry)
        .query(&mut redis)
        .unwrap();
    assert!(output.status.success(), "browser scenario failed");

    // The requeued payment was charged, once; the failed one stays failed,
    // and the two letters that could not be requeued are still there.
    let outcome = client::wait_all_final(
        &http,
        &gateway,
        "alice",
        &[kept.clone(), failed.clone()],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(outcome[0]["status"], "succeeded", "{}", outcome[0]);
    assert_eq!(outcome[1]["status"], "failed", "{}", outcome[1]);
    assert_eq!(xlen(&mut redis, DEAD_LETTER_STREAM), 2);
    let stats = client::sandbox_stats(&http, &stack).await;
    assert_eq!(stats["max_charges_per_key"], 1, "{stats}");
    client::assert_no_secrets_in_logs(&stack, &[&token]);
}

// ---------------------------------------------------------------- reload

/// A scratch cargo workspace with two binaries, built into its own target
/// directory, so the real script runs real builds without touching ours.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[workspace]\nmembers = [\"alpha\", \"beta\"]\nresolver = \"2\"\n",
        )
        .unwrap();
        let scratch = Scratch { dir };
        for name in ["alpha", "beta"] {
            std::fs::create_dir_all(scratch.dir.path().join(name).join("src")).unwrap();
            std::fs::write(
                scratch.dir.path().join(name).join("Cargo.toml"),
                format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
            )
            .unwrap();
            scratch.write(name, "first");
        }
        scratch
    }

    /// The binary's source: a tiny HTTP server on `$PORT` that answers
    /// every request with `greeting` (and so its readiness probe too).
    fn write(&self, binary: &str, greeting: &str) {
        std::fs::write(
            self.dir.path().join(binary).join("src/main.rs"),
            format!(
                r#"use std::io::{{Read, Write}};
fn main() {{
    let port: u16 = std::env::var("PORT").map(|p| p.parse().unwrap()).unwrap_or(0);
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    for stream in listener.incoming() {{
        let Ok(mut stream) = stream else {{ continue }};
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {{
            match stream.read(&mut buf) {{
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }}
        }}
        let body = "{greeting}";
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {{}}\r\nConnection: close\r\n\r\n{{body}}", body.len());
    }}
}}
"#
            ),
        )
        .unwrap();
    }

    fn supervisor_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pc.log")).unwrap_or_default()
    }

    /// `scripts/dev-reload [args]` in the scratch workspace.
    fn reload(&self, args: &[&str], pc_port: u16) -> (bool, String) {
        self.reload_with(args, pc_port, &[])
    }

    fn reload_with(&self, args: &[&str], pc_port: u16, env: &[(&str, &str)]) -> (bool, String) {
        let output = Command::new("bash")
            .arg(e2e::repo_root().join("scripts/dev-reload"))
            .args(args)
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .env("DEV_RELOAD_BINARIES", "alpha beta")
            .env("PC_PORT_NUM", pc_port.to_string())
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET_DIR")
            .output()
            .expect("run scripts/dev-reload");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        (output.status.success(), format!("{stdout}\n{stderr}"))
    }
}

fn changed_line(output: &str) -> &str {
    output
        .lines()
        .find_map(|l| l.strip_prefix("dev-reload: changed: "))
        .unwrap_or_else(|| panic!("no `changed:` line in:\n{output}"))
}

#[test]
fn dev_reload_reports_exactly_the_binaries_that_changed() {
    let scratch = Scratch::new();
    let nobody = platform::testing::free_port();

    let (ok, output) = scratch.reload(&["--no-restart"], nobody);
    assert!(ok, "{output}");
    assert_eq!(
        changed_line(&output),
        "alpha beta",
        "first build:\n{output}"
    );

    let (ok, output) = scratch.reload(&["--no-restart"], nobody);
    assert!(ok, "{output}");
    assert_eq!(changed_line(&output), "none", "no edit:\n{output}");

    scratch.write("beta", "second");
    let (ok, output) = scratch.reload(&["--no-restart"], nobody);
    assert!(ok, "{output}");
    assert_eq!(changed_line(&output), "beta", "beta edited:\n{output}");

    // A compile error restarts nothing and says so.
    std::fs::write(scratch.dir.path().join("alpha/src/main.rs"), "fn main() {").unwrap();
    let (ok, output) = scratch.reload(&[], nobody);
    assert!(!ok);
    assert!(
        output.contains("build failed; nothing restarted"),
        "{output}"
    );

    // Without a reachable process-compose the script rebuilds, then says
    // plainly that it restarted nothing.
    scratch.write("alpha", "third");
    let (ok, output) = scratch.reload(&[], nobody);
    assert!(!ok, "{output}");
    assert_eq!(changed_line(&output), "alpha", "{output}");
    assert!(
        output.contains(&format!(
            "process-compose is not reachable at http://127.0.0.1:{nobody}"
        )) && output.contains("restarted nothing"),
        "{output}"
    );
}

#[test]
fn override_file_adds_only_the_watcher_and_runs_the_script() {
    let root = e2e::repo_root();
    let base = e2e::compose::ComposeFile::load(&root.join("process-compose.yaml"), &|_| None);
    let dev =
        e2e::compose::ComposeFile::load(&root.join("process-compose.override.yaml"), &|_| None);
    assert_eq!(
        dev.processes.keys().collect::<Vec<_>>(),
        ["dev-reload"],
        "the override holds the dev-loop watcher only"
    );
    assert!(!base.processes.contains_key("dev-reload"));
    let watcher = &dev.processes["dev-reload"];
    assert!(
        watcher.command.contains("watchexec") && watcher.command.contains("-- scripts/dev-reload"),
        "{}",
        watcher.command
    );
    let script = root.join("scripts/dev-reload");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&script).unwrap().permissions());
    assert!(mode & 0o111 != 0, "scripts/dev-reload is not executable");
}

// ------------------------------------------------------ real supervisor

/// process-compose supervising the scratch workspace's binaries: `alpha`
/// with two replicas, `beta` alone, each with a readiness probe.
struct ScratchSupervisor {
    api: e2e::supervisor::Api,
    ports: (u16, u16),
    child: platform::testing::ChildGuard,
}

impl ScratchSupervisor {
    fn start(scratch: &Scratch) -> ScratchSupervisor {
        let process_compose = e2e::supervisor::process_compose();
        let alpha_prefix = e2e::stack::free_prefix();
        let beta = platform::testing::free_port();
        let yaml = r#"version: "0.5"
is_strict: true
processes:
  alpha:
    replicas: 2
    command: "PORT=${ALPHA_PORT_PREFIX}{{.PC_REPLICA_NUM}} exec target/debug/alpha"
    readiness_probe:
      http_get: {host: 127.0.0.1, port: "${ALPHA_PORT_PREFIX}{{.PC_REPLICA_NUM}}", path: /readyz}
      period_seconds: 1
  beta:
    command: "PORT=${BETA_PORT} exec target/debug/beta"
    readiness_probe:
      http_get: {host: 127.0.0.1, port: "${BETA_PORT}", path: /readyz}
      period_seconds: 1
"#;
        std::fs::write(scratch.dir.path().join("process-compose.yaml"), yaml).unwrap();
        let pc_port = platform::testing::free_port();
        let child = Command::new(process_compose)
            .args(["up", "--tui=false", "-f", "process-compose.yaml"])
            .current_dir(scratch.dir.path())
            .env("PC_PORT_NUM", pc_port.to_string())
            .env("PC_LOG_FILE", scratch.dir.path().join("pc.log"))
            .env("ALPHA_PORT_PREFIX", alpha_prefix.to_string())
            .env("BETA_PORT", beta.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("process-compose up");
        let supervisor = ScratchSupervisor {
            api: e2e::supervisor::Api { port: pc_port },
            ports: (alpha_prefix, beta),
            child: platform::testing::ChildGuard(child),
        };
        supervisor.wait_up(&["alpha-0", "alpha-1", "beta"]);
        supervisor
    }

    fn wait_up(&self, names: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(states) = self.api.processes()
                && names
                    .iter()
                    .all(|n| states.iter().any(|s| s.name == *n && s.is_up()))
            {
                return;
            }
            assert!(Instant::now() < deadline, "scratch processes not up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self, name: &str) -> u32 {
        self.api.process(name).pid
    }

    /// What replica `n` of alpha answers.
    fn alpha_says(&self, n: u16) -> String {
        e2e::supervisor::Api {
            port: self.ports.0 * 10 + n,
        }
        .call("GET", "/")
        .map(|reply| reply.body)
        .unwrap_or_default()
    }
}

impl Drop for ScratchSupervisor {
    fn drop(&mut self) {
        let _ = self.api.call("POST", "/project/stop");
        let _ = self.child.wait_timeout(Duration::from_secs(20));
    }
}

#[test]
fn dev_reload_restarts_only_the_changed_binary_one_replica_at_a_time() {
    platform::testing::require_program("jq", "`apt-get install jq`, or `nix develop`");
    platform::testing::require_program("curl", "`apt-get install curl`");
    let scratch = Scratch::new();
    let (ok, output) = scratch.reload(&["--no-restart"], 9);
    assert!(ok, "{output}");
    let supervisor = ScratchSupervisor::start(&scratch);
    assert_eq!(
        supervisor.alpha_says(0),
        "first",
        "{}",
        scratch.supervisor_log()
    );
    let beta_pid = supervisor.pid("beta");
    let alpha_pids = (supervisor.pid("alpha-0"), supervisor.pid("alpha-1"));

    // The edit, then what the watcher runs on a save; the clock runs until
    // both replicas answer with the new build.
    let edited = Instant::now();
    scratch.write("alpha", "second");
    let (ok, output) = scratch.reload_with(
        &[],
        supervisor.api.port,
        &[("DEV_RELOAD_SETTLE_SECS", "0.5")],
    );
    println!("{output}");
    assert!(ok, "{output}");
    while supervisor.alpha_says(0) != "second" || supervisor.alpha_says(1) != "second" {
        assert!(
            edited.elapsed() < Duration::from_secs(60),
            "new build not serving"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let serving = edited.elapsed();
    eprintln!(
        "dev-reload: edit → new binary serving on both replicas in {:.1} s",
        serving.as_secs_f64()
    );

    assert_eq!(changed_line(&output), "alpha", "{output}");
    assert!(
        output.contains("dev-reload: done: alpha reloaded"),
        "{output}"
    );
    assert_eq!(supervisor.pid("beta"), beta_pid, "beta was restarted");
    assert_ne!(supervisor.pid("alpha-0"), alpha_pids.0);
    assert_ne!(supervisor.pid("alpha-1"), alpha_pids.1);
    // One replica at a time: alpha-1 only once alpha-0 was Ready again.
    let order: Vec<&str> = output
        .lines()
        .filter_map(|l| l.strip_prefix("dev-reload: "))
        .filter(|l| l.starts_with("restarting ") || l.contains(" ready (pid "))
        .collect();
    assert_eq!(order.len(), 4, "{output}");
    assert!(
        order[0] == "restarting alpha-0" && order[1].starts_with("alpha-0 ready"),
        "{order:?}"
    );
    assert!(
        order[2] == "restarting alpha-1" && order[3].starts_with("alpha-1 ready"),
        "{order:?}"
    );
}

/// The dashboard's card picker offers exactly the sandbox's test cards, in
/// its order.
#[test]
fn the_dashboard_offers_the_sandboxs_test_cards() {
    let html =
        std::fs::read_to_string(e2e::repo_root().join("dashboard/public/index.html")).unwrap();
    let start = html.find("<select id=\"card\"").expect("the card picker");
    let picker = &html[start..start + html[start..].find("</select>").unwrap()];
    let offered: Vec<&str> = picker
        .split("<option value=\"")
        .skip(1)
        .map(|option| &option[..option.find('"').unwrap()])
        .collect();
    assert_eq!(offered, client::test_cards());
}
