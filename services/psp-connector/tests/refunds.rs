//! Refunds made by a real connector process at the real sandbox, from
//! refunds written by core-api's own create path.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Connector, MERCHANT, Sandbox, seed, wait_final};
use platform::auth::Caller;
use platform::keyspace::{self, REFUND_GROUP, REFUND_STREAM, field, refund_field};
use platform::refund::RefundId;
use platform::testing::RedisServer;
use platform::transaction::TransactionId;
use redis::Commands;
use serde_json::Value;

fn caller() -> Caller {
    Caller {
        merchant: MERCHANT.into(),
        principal: platform::auth::Principal::User("alice".into()),
    }
}

async fn refund_stats(sandbox: &Sandbox) -> Value {
    reqwest::get(format!("{}/refunds/stats", sandbox.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `count` transactions charged by the connector, each with the sandbox's
/// charge id on its record.
async fn charged(
    redis: &RedisServer,
    conn: &mut redis::Connection,
    count: usize,
) -> Vec<TransactionId> {
    let ids = seed(redis, &vec![psp_sandbox::cards::APPROVED; count]).await;
    let records = wait_final(conn, &ids, Duration::from_secs(30)).await;
    assert!(
        records.values().all(|r| r.status == "succeeded"),
        "{records:?}"
    );
    for id in &ids {
        let reference: Option<String> = conn
            .hget(keyspace::record(id), field::PSP_REFERENCE)
            .unwrap();
        assert!(reference.is_some_and(|r| r.starts_with("ch_")), "{id}");
    }
    ids
}

fn refund_record(conn: &mut redis::Connection, id: &RefundId) -> HashMap<String, String> {
    conn.hgetall(keyspace::refund(id)).unwrap()
}

async fn wait_settled(
    conn: &mut redis::Connection,
    ids: &[RefundId],
    timeout: Duration,
) -> Vec<HashMap<String, String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let records: Vec<_> = ids.iter().map(|id| refund_record(conn, id)).collect();
        if records.iter().all(|r| r[refund_field::STATUS] != "pending") {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "refunds still pending: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stream_len(conn: &mut redis::Connection) -> u64 {
    redis::cmd("XLEN").arg(REFUND_STREAM).query(conn).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_are_made_once_at_the_psp_through_failures() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let sandbox = Sandbox::start(0, 0, 0.0).await;
    let connector = Connector::spawn(&redis.url(), &sandbox.url(), &[]);
    connector.wait_ready().await;
    let txs = charged(&redis, &mut conn, 5).await;
    // Then a third of all refund calls fail with a 503: retried under the
    // same key (refunds have no attempt cap, only the budget).
    let faults = reqwest::Client::new()
        .put(format!("{}/faults", sandbox.url()))
        .json(&serde_json::json!({"failure_rate": 0.3}))
        .send()
        .await
        .unwrap();
    assert_eq!(faults.status(), 200);

    let client = redis::Client::open(redis.url()).unwrap();
    let mut aconn = client.get_multiplexed_async_connection().await.unwrap();
    let mut refunds = Vec::new();
    for tx in &txs {
        for amount in [Some(500), None] {
            let refund = core_api::refunds::accept(&mut aconn, &caller(), "req-r", tx, amount)
                .await
                .unwrap();
            refunds.push(RefundId::parse(&refund.id).unwrap());
        }
    }
    let settled = wait_settled(&mut conn, &refunds, Duration::from_secs(30)).await;
    for record in &settled {
        assert_eq!(record[refund_field::STATUS], "succeeded", "{record:?}");
        assert!(record[refund_field::PSP_REFUND_ID].starts_with("re_"));
    }
    for tx in &txs {
        let (refunded, reserved): (u64, u64) = redis::cmd("HMGET")
            .arg(keyspace::record(tx))
            .arg(field::REFUNDED_AMOUNT)
            .arg(field::REFUND_RESERVED)
            .query(&mut conn)
            .unwrap();
        assert_eq!((refunded, reserved), (1299, 1299));
    }
    let stats = refund_stats(&sandbox).await;
    assert_eq!(stats["total_refunds"], 10, "{stats}");
    assert_eq!(stats["refunded_amount"], 5 * 1299);
    assert_eq!(stats["max_refunds_per_key"], 1);
    assert_eq!(stats["over_refunded_charges"], 0);
    // Every entry acknowledged and deleted.
    common::wait_until("the refund stream emptied", Duration::from_secs(5), || {
        stream_len(&mut conn) == 0
    })
    .await;
    drop(connector);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_refund_is_not_made_twice_and_a_refused_one_gives_its_amount_back() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let sandbox = Sandbox::start(0, 0, 0.0).await;
    let connector = Connector::spawn(&redis.url(), &sandbox.url(), &[]);
    connector.wait_ready().await;
    let txs = charged(&redis, &mut conn, 2).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut aconn = client.get_multiplexed_async_connection().await.unwrap();

    // The same message twice on the stream (a producer retry, a replay
    // from a backup): one refund at the PSP.
    let refund = core_api::refunds::accept(&mut aconn, &caller(), "req-1", &txs[0], Some(100))
        .await
        .unwrap();
    let refund = RefundId::parse(&refund.id).unwrap();
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(REFUND_STREAM)
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    if let Some((_, fields)) = entries.first() {
        let payload = &fields[keyspace::PAYLOAD_FIELD];
        let _: String = conn
            .xadd(REFUND_STREAM, "*", &[(keyspace::PAYLOAD_FIELD, payload)])
            .unwrap();
    } else {
        // Already consumed: send it again all the same.
        let message = platform::refund::RefundMessage {
            refund_id: refund.clone(),
            transaction_id: txs[0].clone(),
            merchant_id: MERCHANT.into(),
            request_id: "req-1".into(),
            created_ms: 0,
        };
        let _: String = conn
            .xadd(
                REFUND_STREAM,
                "*",
                &[(keyspace::PAYLOAD_FIELD, message.to_payload())],
            )
            .unwrap();
    }
    wait_settled(
        &mut conn,
        std::slice::from_ref(&refund),
        Duration::from_secs(10),
    )
    .await;
    common::wait_until("both deliveries handled", Duration::from_secs(10), || {
        stream_len(&mut conn) == 0
    })
    .await;
    let stats = refund_stats(&sandbox).await;
    assert_eq!(stats["total_refunds"], 1, "{stats}");
    assert_eq!(stats["max_refunds_per_key"], 1);

    // A charge the PSP does not know: failed, and the amount free again.
    let _: () = conn
        .hset(
            keyspace::record(&txs[1]),
            field::PSP_REFERENCE,
            "ch_unknown",
        )
        .unwrap();
    let lost = core_api::refunds::accept(&mut aconn, &caller(), "req-2", &txs[1], None)
        .await
        .unwrap();
    let lost = RefundId::parse(&lost.id).unwrap();
    let record = &wait_settled(&mut conn, &[lost], Duration::from_secs(10)).await[0];
    assert_eq!(record[refund_field::STATUS], "failed");
    assert_eq!(record[refund_field::FAILURE_REASON], "charge_not_found");
    let reserved: u64 = conn
        .hget(keyspace::record(&txs[1]), field::REFUND_RESERVED)
        .unwrap();
    assert_eq!(reserved, 0);
    // The group exists under its own name.
    let groups: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(REFUND_STREAM)
        .query(&mut conn)
        .unwrap();
    assert_eq!(groups.len(), 1);
    let info = format!("{groups:?}");
    assert!(info.contains(REFUND_GROUP), "{info}");
    drop(connector);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_left_by_a_killed_connector_is_made_by_the_next() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let sandbox = Sandbox::start(0, 0, 0.0).await;
    let first = Connector::spawn(&redis.url(), &sandbox.url(), &[]);
    first.wait_ready().await;
    let txs = charged(&redis, &mut conn, 1).await;
    drop(first);
    // Delivered to a consumer that dies before settling: pending on it.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut aconn = client.get_multiplexed_async_connection().await.unwrap();
    let refund = core_api::refunds::accept(&mut aconn, &caller(), "req-1", &txs[0], None)
        .await
        .unwrap();
    let refund = RefundId::parse(&refund.id).unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(REFUND_GROUP)
        .arg("dead-consumer")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(REFUND_STREAM)
        .arg(">")
        .query(&mut conn)
        .unwrap();
    let second = Connector::spawn(
        &redis.url(),
        &sandbox.url(),
        &[("CONNECTOR_CLAIM_IDLE_MS", "300".to_owned())],
    );
    second.wait_ready().await;
    let record = &wait_settled(&mut conn, &[refund], Duration::from_secs(15)).await[0];
    assert_eq!(record[refund_field::STATUS], "succeeded", "{record:?}");
    assert_eq!(refund_stats(&sandbox).await["total_refunds"], 1);
}
