//! The status script acknowledging a queue entry in the same step as the
//! change (what a connector does when it settles a payment), on a real
//! Redis: the entry goes whatever the outcome, and only when asked.

use platform::keyspace::{self, field};
use platform::testing::RedisServer;
use platform::transaction::{
    QueueEntry, Status, TransactionId, Transition, TransitionOutcome, transition,
    transition_and_acknowledge,
};

const STREAM: &str = "test-queue";
const GROUP: &str = "test-workers";

/// A pending record of acme, and a delivered (pending in the group) entry.
async fn pending_payment(conn: &mut redis::aio::MultiplexedConnection) -> (TransactionId, String) {
    let id = TransactionId::generate();
    let _: () = redis::cmd("HSET")
        .arg(keyspace::record(&id))
        .arg(field::STATUS)
        .arg(Status::Pending.as_str())
        .arg(field::MERCHANT_ID)
        .arg("acme")
        .query_async(conn)
        .await
        .unwrap();
    let entry: String = redis::cmd("XADD")
        .arg(STREAM)
        .arg("*")
        .arg("payload")
        .arg(id.as_str())
        .query_async(conn)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg("worker")
        .arg("STREAMS")
        .arg(STREAM)
        .arg(">")
        .query_async(conn)
        .await
        .unwrap();
    (id, entry)
}

/// (entries in the stream, entries delivered and not acknowledged).
async fn queue(conn: &mut redis::aio::MultiplexedConnection) -> (u64, u64) {
    let length: u64 = redis::cmd("XLEN")
        .arg(STREAM)
        .query_async(conn)
        .await
        .unwrap();
    let pending: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(STREAM)
        .arg(GROUP)
        .query_async(conn)
        .await
        .unwrap();
    (length, pending.0)
}

/// Starts the queue afresh: an empty stream with the consumer group on it.
async fn fresh_group(conn: &mut redis::aio::MultiplexedConnection) {
    let _: () = redis::cmd("DEL")
        .arg(STREAM)
        .query_async(conn)
        .await
        .unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(STREAM)
        .arg(GROUP)
        .arg("$")
        .arg("MKSTREAM")
        .query_async(conn)
        .await
        .unwrap();
}

/// The queue entry `entry_id` of the test's stream and group.
fn queued(entry_id: &str) -> QueueEntry<'_> {
    QueueEntry {
        stream: STREAM,
        group: GROUP,
        entry_id,
    }
}

fn settle() -> Transition {
    Transition {
        from: vec![Status::Pending, Status::Processing],
        to: Status::Succeeded,
        add_attempts: 1,
        log: None,
        fields: vec![(field::PSP, "psp-a".to_owned())],
    }
}

#[tokio::test]
async fn the_entry_is_acknowledged_with_the_change_whatever_the_outcome() {
    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    fresh_group(&mut conn).await;

    // Without an entry, the change leaves the queue alone.
    let (id, _) = pending_payment(&mut conn).await;
    let outcome = transition(&mut conn, &id, "acme", &settle()).await.unwrap();
    assert_eq!(outcome, TransitionOutcome::Applied);
    assert_eq!(queue(&mut conn).await, (1, 1));
    fresh_group(&mut conn).await;

    // Applied: the record is final and its entry gone, in one step.
    let (id, entry_id) = pending_payment(&mut conn).await;
    let entry = queued(&entry_id);
    let outcome = transition_and_acknowledge(&mut conn, &id, "acme", &settle(), entry)
        .await
        .unwrap();
    assert_eq!(outcome, TransitionOutcome::Applied);
    let (status, psp): (String, String) = redis::cmd("HMGET")
        .arg(keyspace::record(&id))
        .arg(field::STATUS)
        .arg(field::PSP)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((status.as_str(), psp.as_str()), ("succeeded", "psp-a"));
    assert_eq!(queue(&mut conn).await, (0, 0));

    // Refused (a duplicate delivery of a final payment): still acknowledged,
    // and the record untouched.
    let (_, duplicate) = pending_payment(&mut conn).await;
    let entry = queued(&duplicate);
    let fail = Transition {
        to: Status::Failed,
        ..settle()
    };
    let outcome = transition_and_acknowledge(&mut conn, &id, "acme", &fail, entry)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        TransitionOutcome::Refused {
            current: Status::Succeeded
        }
    );
    assert_eq!(queue(&mut conn).await, (0, 0));

    // Not found (another merchant's record): acknowledged too.
    let (other, entry_id) = pending_payment(&mut conn).await;
    let entry = queued(&entry_id);
    let outcome = transition_and_acknowledge(&mut conn, &other, "globex", &settle(), entry)
        .await
        .unwrap();
    assert_eq!(outcome, TransitionOutcome::NotFound);
    assert_eq!(queue(&mut conn).await, (0, 0));
    let status: String = redis::cmd("HGET")
        .arg(keyspace::record(&other))
        .arg(field::STATUS)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(status, "pending", "a refused change writes nothing");
}
