//! Issue 21, point 2: after payments settle, no card number and no CVC is
//! anywhere in Redis' data directory — not in the append-only file, which
//! keeps every stream entry ever written until a rewrite. core-api seals
//! the card with CARD_ENCRYPTION_KEY and only the connector opens it.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use platform::testing::Spawned;
use psp_sandbox::cards::{APPROVED, DECLINED};
use serde_json::json;
use support::{App, valid_body};

/// A key of the test's own (not the development one), on both sides.
const KEY: &str = "8f3a1c5e7b9d0f2a4c6e8a0b2d4f6a8c0e2a4c6e8b0d2f4a6c8e0a2c4e6a8b0d";

/// Two test cards and one other valid card.
const CARDS: &[&str] = &[APPROVED, DECLINED, "5555555555554444"];
const CVC: &str = "7319";

fn files_under(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read data dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files_under(&path, found);
        } else {
            found.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_card_number_or_cvc_reaches_redis_or_its_files() {
    let app = App::start_with(&[("CARD_ENCRYPTION_KEY", KEY)]).await;
    let sandbox = Spawned::start(
        psp_sandbox::Config::on(SocketAddr::from(([127, 0, 0, 1], 0))),
        psp_sandbox::build,
    )
    .await;
    let connector: psp_connector::Config = serde_json::from_value(json!({
        "psp_connector_addr": "127.0.0.1:0",
        "redis_url": app.redis.url(),
        "psp_url": sandbox.url(),
        "connector_consumer_name": "card-at-rest",
        "card_encryption_key": KEY,
    }))
    .unwrap();
    let connector = Spawned::start(connector, psp_connector::build).await;

    let alice = app.alice();
    let mut ids = Vec::new();
    for i in 0..30 {
        let mut body = valid_body();
        body["payment_method"]["number"] = json!(CARDS[i % CARDS.len()]);
        body["payment_method"]["cvc"] = json!(CVC);
        let reply = app
            .create(&alice, &body, Some(&format!("at-rest-{i}")))
            .await;
        assert_eq!(reply.status, 202, "{}", reply.text);
        ids.push(reply.json["id"].as_str().unwrap().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conn = app.redis.connection();
    loop {
        let statuses: Vec<Option<String>> = ids
            .iter()
            .map(|id| {
                redis::cmd("HGET")
                    .arg(format!("tx:{id}"))
                    .arg("status")
                    .query(&mut conn)
                    .unwrap()
            })
            .collect();
        if statuses
            .iter()
            .all(|s| matches!(s.as_deref(), Some("succeeded" | "declined")))
        {
            break;
        }
        assert!(Instant::now() < deadline, "not settled: {statuses:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    connector.stop().await.unwrap();
    sandbox.stop().await.unwrap();
    // The AOF is written at once and fsynced every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut files = Vec::new();
    files_under(app.redis.data_dir(), &mut files);
    let mut everything = Vec::new();
    for file in &files {
        everything.extend(std::fs::read(file).expect("read data file"));
    }
    let text = String::from_utf8_lossy(&everything);
    assert!(
        text.contains("XADD") && text.contains(&ids[0]),
        "the append-only file holds the queue traffic: {files:?}"
    );
    for card in CARDS {
        assert!(!text.contains(card), "{card} in {files:?}");
    }
    // (The CVC's digits themselves could occur by chance in ids.)
    for leak in ["\"cvc\"", "\"number\"", "expiry"] {
        assert!(!text.contains(leak), "{leak} in {files:?}");
    }
}

/// The development key is published in the repository: outside
/// development, core-api refuses to start with it, set or defaulted.
#[test]
fn the_development_card_key_is_refused_outside_development() {
    let dev_hex: String = b"dev-only card key: never deploy!"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for key in [None, Some(dev_hex.as_str())] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_core-api"));
        command
            .env_clear()
            .env("PLATFORM_ENV", "production")
            .env("JWT_SECRET", "a-production-secret-of-our-own-0123456789")
            .env("REDIS_URL", "redis://127.0.0.1:1");
        if let Some(key) = key {
            command.env("CARD_ENCRYPTION_KEY", key);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{key:?}: {stderr}");
        assert!(
            stderr.starts_with("config error: CARD_ENCRYPTION_KEY: is the development key"),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1);
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_core-api"))
        .env_clear()
        .env("CARD_ENCRYPTION_KEY", "too-short")
        .env("JWT_SECRET", "a-production-secret-of-our-own-0123456789")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("config error: CARD_ENCRYPTION_KEY: must be 32 bytes"),
        "{stderr}"
    );
}
