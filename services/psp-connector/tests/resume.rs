//! A connector that comes back under the same consumer name — restarted by
//! its supervisor, which gives each replica a fixed name — resumes the
//! messages its predecessor held at once, without waiting for the reclaim
//! idle time, and charges each of them once.

mod common;

use std::time::Duration;

use common::{Connector, Sandbox, pending_for, seed, wait_final, wait_until};
use platform::testing::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_connector_resumes_its_own_pending_messages_at_once() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let sandbox = Sandbox::start(0, 300, 0.0).await;
    // A reclaim would come only after a minute: longer than the test waits.
    let settings = vec![
        ("CONNECTOR_CONSUMER_NAME", "replica-0".to_owned()),
        ("CONNECTOR_CLAIM_IDLE_MS", "60000".to_owned()),
        ("CONNECTOR_CONCURRENCY", "32".to_owned()),
    ];
    let first = Connector::spawn(&redis.url(), &sandbox.url(), &settings);
    first.wait_ready().await;
    let ids = seed(&redis, &[psp_sandbox::cards::APPROVED; 100]).await;
    wait_until("messages in flight", Duration::from_secs(10), || {
        pending_for(&mut conn, "replica-0") > 0
    })
    .await;
    first.child.signal("KILL");
    drop(first);
    assert!(pending_for(&mut conn, "replica-0") > 0);

    let second = Connector::spawn(&redis.url(), &sandbox.url(), &settings);
    second.wait_ready().await;
    let records = wait_final(&mut conn, &ids, Duration::from_secs(15)).await;
    assert!(
        records.values().all(|r| r.status == "succeeded"),
        "{records:?}"
    );
    let stats = sandbox.stats().await;
    assert_eq!(stats["total_charges"], 100, "{stats}");
    assert_eq!(stats["max_charges_per_key"], 1, "{stats}");
    assert!(second.logs().contains("resuming own pending messages"));
}
