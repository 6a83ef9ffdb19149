//! Developer experience (README "Dashboard" and "Live reload"):
//!
//! - the dashboard at `/_dashboard/`, driven in headless Chromium by
//!   Playwright (`dashboard/tests/dashboard.mjs`) against the booted stack:
//!   Get token, Create payment, the transaction reaching `succeeded` in the
//!   table, 4xx errors shown plainly, and the process panel saying that
//!   process-compose is not reachable (it cannot run on our CI machines);
//!   then the panel listing processes and restarting one through the
//!   gateway's proxy, against the stand-in below;
//! - `scripts/dev-reload`'s change detection, with real cargo builds of a
//!   scratch workspace: it reports exactly the binaries that changed; and
//!   its rolling restart, against a stand-in for the three REST calls the
//!   script and the panel make to process-compose. process-compose itself
//!   cannot run on our CI machines, so that stand-in (field names from
//!   process-compose's `ProcessState`) is the one thing here that is not
//!   the real program.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    let mut command = tokio::process::Command::new(node);
    command
        .arg(script)
        .arg(gateway)
        .arg(scenario)
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

    let output = run_browser(&node, &script, &stack.gateway(), "payment").await;
    assert!(output.status.success(), "browser scenario failed");
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
async fn dashboard_lists_processes_and_restarts_one_through_the_gateway() {
    let (node, script) = browser_test_prerequisites();
    // The stand-in answers for the stack's own process names.
    let names: Vec<String> =
        e2e::compose::ComposeFile::load(&e2e::repo_root().join("process-compose.yaml"), &|_| None)
            .processes()
            .into_iter()
            .map(|p| p.name)
            .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (pc_port, restarts) = process_compose_stand_in(&names).await;
    let stack = Stack::boot_with(StackOptions::default().env(
        "gateway",
        "PC_API_UPSTREAM",
        &format!("127.0.0.1:{pc_port}"),
    ))
    .await;
    let output = run_browser(&node, &script, &stack.gateway(), "processes").await;
    assert!(output.status.success(), "browser scenario failed");
    let restarted: Vec<String> = restarts
        .lock()
        .unwrap()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    assert_eq!(restarted, ["core-api-1"]);
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

    fn write(&self, binary: &str, greeting: &str) {
        std::fs::write(
            self.dir.path().join(binary).join("src/main.rs"),
            format!("fn main() {{\n    println!(\"{greeting}\");\n}}\n"),
        )
        .unwrap();
    }

    /// `scripts/dev-reload [args]` in the scratch workspace.
    fn reload(&self, args: &[&str], pc_port: u16) -> (bool, String) {
        self.reload_with(args, pc_port, &[])
    }

    fn reload_with(&self, args: &[&str], pc_port: u16, env: &[(&str, &str)]) -> (bool, String) {
        let output = Command::new(e2e::repo_root().join("scripts/dev-reload"))
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

    // Without process-compose the script rebuilds, then says plainly that it
    // restarted nothing (the restart itself needs process-compose, which
    // cannot run on our CI machines).
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

// ------------------------------------------------------------- stand-in

/// One process as process-compose's `GET /processes` reports it.
#[derive(Clone)]
struct StandInProcess {
    name: String,
    pid: u32,
    status: &'static str,
    is_ready: &'static str,
}

impl StandInProcess {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name, "namespace": "services", "status": self.status,
            "system_time": "1s", "age": 1_000_000_000u64, "is_ready": self.is_ready,
            "restarts": 0, "exit_code": 0, "pid": self.pid,
        })
    }
}

type Restarts = Arc<Mutex<Vec<(String, Instant)>>>;

/// Stands in for process-compose's REST API (it cannot run here): `GET
/// /processes`, `GET /process/{name}`, `POST /process/restart/{name}`. A
/// restarted process gets a new pid and reads Ready 300 ms later.
async fn process_compose_stand_in(names: &[&str]) -> (u16, Restarts) {
    let processes: Arc<Mutex<Vec<StandInProcess>>> = Arc::new(Mutex::new(
        names
            .iter()
            .enumerate()
            .map(|(i, name)| StandInProcess {
                name: (*name).into(),
                pid: 1000 + i as u32,
                status: "Running",
                is_ready: "Ready",
            })
            .collect(),
    ));
    let restarts: Restarts = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = restarts.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let processes = processes.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request).into_owned();
                let mut words = head.split_whitespace();
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                let (status, body) = {
                    let mut all = processes.lock().unwrap();
                    if method == "GET" && path == "/processes" {
                        let data: Vec<_> = all.iter().map(StandInProcess::json).collect();
                        (200, serde_json::json!({ "data": data }))
                    } else if let Some(name) = path.strip_prefix("/process/restart/") {
                        match all.iter_mut().find(|p| p.name == name && method == "POST") {
                            Some(process) => {
                                log.lock().unwrap().push((name.to_owned(), Instant::now()));
                                process.pid += 100;
                                process.is_ready = "-";
                                let (processes, restarted) = (processes.clone(), name.to_owned());
                                tokio::spawn(async move {
                                    tokio::time::sleep(Duration::from_millis(300)).await;
                                    let mut all = processes.lock().unwrap();
                                    let process =
                                        all.iter_mut().find(|p| p.name == restarted).unwrap();
                                    process.is_ready = "Ready";
                                });
                                (200, serde_json::json!({ "name": name }))
                            }
                            None => (404, serde_json::json!({ "error": "no such process" })),
                        }
                    } else if let Some(name) = path.strip_prefix("/process/") {
                        match all.iter().find(|p| p.name == name) {
                            Some(process) => (200, process.json()),
                            None => (404, serde_json::json!({ "error": "no such process" })),
                        }
                    } else {
                        (404, serde_json::json!({ "error": "no such route" }))
                    }
                };
                let body = body.to_string();
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, restarts)
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_reload_restarts_only_the_changed_binary_one_replica_at_a_time() {
    platform::testing::require_program("jq", "`apt-get install jq`, or `nix develop`");
    platform::testing::require_program("curl", "`apt-get install curl`");
    let scratch = Scratch::new();
    let (ok, output) = tokio::task::block_in_place(|| scratch.reload(&["--no-restart"], 9));
    assert!(ok, "{output}");

    let (port, restarts) =
        process_compose_stand_in(&["alpha-0", "alpha-1", "beta", "alphabet", "gateway"]).await;
    scratch.write("alpha", "second");
    let (ok, output) = tokio::task::block_in_place(|| {
        scratch.reload_with(&[], port, &[("DEV_RELOAD_SETTLE_SECS", "0.5")])
    });
    println!("{output}");
    assert!(ok, "{output}");
    assert_eq!(changed_line(&output), "alpha", "{output}");
    assert!(
        output.contains("dev-reload: done: alpha reloaded"),
        "{output}"
    );

    let restarts = restarts.lock().unwrap().clone();
    let names: Vec<&str> = restarts.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["alpha-0", "alpha-1"], "{output}");
    // alpha-1 only once alpha-0 was Ready again (300 ms) and had settled.
    let gap = restarts[1].1 - restarts[0].1;
    assert!(
        gap >= Duration::from_millis(800),
        "replicas restarted {gap:?} apart:\n{output}"
    );
}
