//! The real `auth-api` binary under bursts of logins: memory returns after
//! the burst, and password hashing has a global bound (issue 21, point 6).

use std::time::{Duration, Instant};

use futures::StreamExt;

mod support;

use support::{login, start};

fn resident_kib(pid: u32) -> u64 {
    platform::testing::resident_kib(pid).expect("VmRSS of a running process")
}

/// 1,000 logins, 60 at a time (each for another username, as a
/// credential-stuffing run would, so the per-username limit stays out of
/// the way; an unknown name costs the same hash as a known one):
/// afterwards the process is back near its idle size instead of keeping one 19 MiB argon2 buffer per thread it
/// ever hashed on (9 MB → 450 MB before). Prints the figures
/// (`cargo test -p auth-api --test load -- --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_returns_after_a_thousand_logins() {
    let service = start(&[]);
    let client = reqwest::Client::new();
    let idle = resident_kib(service.child.pid());
    let started = Instant::now();
    let statuses: Vec<u16> = futures::stream::iter(0..1000)
        .map(|i| {
            let (client, url) = (client.clone(), service.url.clone());
            async move { login(&client, &url, &format!("stuffing-{i}"), "password").await }
        })
        .buffer_unordered(60)
        .collect()
        .await;
    let took = started.elapsed();
    assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    let busy = resident_kib(service.child.pid());
    // Idle as under process-compose and Caddy: a health probe a second.
    let health = service.url.replace("/token", "/healthz");
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        client.get(&health).send().await.expect("healthz");
    }
    let after = resident_kib(service.child.pid());
    eprintln!(
        "auth-api VmRSS: {idle} KiB idle, {busy} KiB right after 1,000 logins \
         ({took:.1?}), {after} KiB 2 s later"
    );
    assert!(
        after < 48 * 1024,
        "{after} KiB resident after the logins ({idle} KiB before)"
    );
}
