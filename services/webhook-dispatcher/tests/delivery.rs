//! The dispatcher against real Redis, its real binary and receivers on
//! loopback: signed deliveries with the event id as `webhook-id`, the
//! attempt log, retries through an outage with nothing lost, dead letters
//! after the schedule, a kill -9 mid-delivery, and a hanging endpoint that
//! does not delay a healthy one.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use platform::event::EventId;
use platform::keyspace;
use platform::testing::RedisServer;
use platform::webhook::Schedule;
use support::{Behaviour, Receiver, dispatcher, endpoint, event_ids, stream, succeeded};

#[tokio::test]
async fn deliveries_are_signed_carry_the_event_id_and_are_logged() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(Behaviour::Answer(204)).await;
    let endpoint = endpoint(&redis, &receiver.url()).await;
    let dispatcher = dispatcher(&redis, &[]);
    succeeded(&redis, 3).await;
    let seen = receiver
        .wait_for(Duration::from_secs(10), |s| s.len() >= 3)
        .await;
    let events: HashSet<String> = event_ids(&redis).into_iter().collect();
    for delivery in &seen {
        assert!(events.contains(&delivery.id), "webhook-id is the event id");
        assert!(
            endpoint.secret.verify(
                &delivery.signature,
                &delivery.id,
                delivery.timestamp,
                &delivery.body
            ),
            "signature"
        );
        let body: serde_json::Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!(body["id"], delivery.id.as_str());
        assert_eq!(body["type"], "transaction.succeeded");
        assert_eq!(body["data"]["object"]["status"], "succeeded");
    }
    // Each attempt is in the endpoint's log; nothing is left waiting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = stream(&redis, &keyspace::endpoint_attempts(&endpoint.id));
    assert_eq!(log.len(), 3);
    assert!(
        log.iter().all(|a| a["outcome"] == "delivered"
            && a["status_code"] == "204"
            && a["attempt"] == "1")
    );
    let mut conn = redis.connection();
    let waiting: u64 = redis::cmd("ZCARD")
        .arg(keyspace::endpoint_due(&endpoint.id))
        .query(&mut conn)
        .unwrap();
    assert_eq!(waiting, 0);

    // A redelivery sends the same event again under the same id.
    let again = EventId::parse(&seen[0].id).unwrap();
    platform::webhook::schedule(
        &mut support::conn(&redis).await,
        &again,
        std::slice::from_ref(&endpoint.id),
        platform::webhook::now_ms(),
        Schedule::Again,
    )
    .await
    .unwrap();
    let seen = receiver
        .wait_for(Duration::from_secs(10), |s| s.len() >= 4)
        .await;
    assert_eq!(seen[3].id, seen[0].id);
    assert_eq!(seen[3].body, seen[0].body);

    assert!(
        !dispatcher.logs().contains(endpoint.secret.expose()),
        "secret logged"
    );
}

#[tokio::test]
async fn a_receiver_down_for_ten_seconds_then_up_gets_every_event() {
    let redis = RedisServer::start();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], platform::testing::free_port()).into();
    let endpoint = endpoint(&redis, &format!("http://{addr}/hooks")).await;
    let _dispatcher = dispatcher(&redis, &[("WEBHOOK_RETRY_MAX_MS", "2000")]);
    succeeded(&redis, 20).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let receiver = Receiver::start_at(addr, Behaviour::Answer(200)).await;
    let up = Instant::now();
    let seen = receiver
        .wait_for(Duration::from_secs(15), |s| {
            s.iter().map(|d| &d.id).collect::<HashSet<_>>().len() >= 20
        })
        .await;
    let ids: HashSet<_> = seen.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids, event_ids(&redis).into_iter().collect::<HashSet<_>>());
    println!(
        "all 20 delivered {:?} after the receiver came up",
        up.elapsed()
    );
    let log = stream(&redis, &keyspace::endpoint_attempts(&endpoint.id));
    assert!(
        log.iter()
            .any(|a| a["error"] == "connect" && a["outcome"] == "retrying")
    );
}

#[tokio::test]
async fn a_receiver_answering_500_forever_is_dead_lettered_after_the_schedule() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(Behaviour::Answer(500)).await;
    let endpoint = endpoint(&redis, &receiver.url()).await;
    let _dispatcher = dispatcher(
        &redis,
        &[
            ("WEBHOOK_MAX_ATTEMPTS", "4"),
            ("WEBHOOK_RETRY_BASE_MS", "100"),
        ],
    );
    succeeded(&redis, 1).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let dead = loop {
        let dead = stream(&redis, keyspace::WEBHOOK_DEAD);
        if !dead.is_empty() {
            break dead;
        }
        assert!(Instant::now() < deadline, "not dead-lettered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["endpoint_id"], endpoint.id.as_str());
    assert_eq!(dead[0]["attempts"], "4");
    assert_eq!(dead[0]["reason"], "attempts_exhausted: last answer 500");
    let seen = receiver.seen();
    assert_eq!(seen.len(), 4, "exactly the scheduled attempts");
    assert!(
        seen.iter().all(|d| d.id == seen[0].id),
        "one webhook-id on every retry"
    );
    // Backoff: each gap at least half its ceiling (100, 200, 400 ms).
    for (pair, ceiling) in seen.windows(2).zip([100u64, 200, 400]) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(ceiling / 2), "{gap:?}");
    }
    let log = stream(&redis, &keyspace::endpoint_attempts(&endpoint.id));
    let outcomes: Vec<_> = log.iter().map(|a| a["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["retrying", "retrying", "retrying", "dead"]);
}

#[tokio::test]
async fn kill_9_mid_delivery_loses_nothing() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(Behaviour::Slow(Duration::from_millis(500))).await;
    let _endpoint = endpoint(&redis, &receiver.url()).await;
    let mut first = dispatcher(&redis, &[("WEBHOOK_ENDPOINT_CONCURRENCY", "2")]);
    succeeded(&redis, 10).await;
    // Deliveries are in flight: the receiver holds them for 500 ms each.
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.child.signal("KILL");
    first.child.wait_timeout(Duration::from_secs(5));
    let delivered_before = receiver.seen().len();
    assert!(
        delivered_before < 10,
        "the kill came too late to test anything"
    );
    let _second = dispatcher(&redis, &[("WEBHOOK_ENDPOINT_CONCURRENCY", "2")]);
    let seen = receiver
        .wait_for(Duration::from_secs(30), |s| {
            s.iter().map(|d| &d.id).collect::<HashSet<_>>().len() >= 10
        })
        .await;
    let ids: HashSet<_> = seen.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids, event_ids(&redis).into_iter().collect::<HashSet<_>>());
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_delay_a_healthy_one() {
    let redis = RedisServer::start();
    let hanging = Receiver::start(Behaviour::Hang).await;
    let healthy = Receiver::start(Behaviour::Answer(200)).await;
    endpoint(&redis, &hanging.url()).await;
    endpoint(&redis, &healthy.url()).await;
    let _dispatcher = dispatcher(
        &redis,
        &[
            ("WEBHOOK_TIMEOUT_MS", "5000"),
            ("WEBHOOK_ENDPOINT_CONCURRENCY", "4"),
        ],
    );
    // 40 events: the hanging endpoint has 36 more due than it has slots.
    let started = Instant::now();
    succeeded(&redis, 40).await;
    let seen = healthy
        .wait_for(Duration::from_secs(10), |s| s.len() >= 40)
        .await;
    let all_in = seen.last().unwrap().at - started;
    println!(
        "healthy endpoint: 40 deliveries within {all_in:?} of the first event while the hanging one holds {} requests",
        hanging.seen().len()
    );
    assert!(all_in < Duration::from_secs(2), "{all_in:?}");
    assert_eq!(
        hanging.seen().len(),
        4,
        "at most the per-endpoint concurrency in flight"
    );
}

#[tokio::test]
async fn the_sink_verifies_what_it_receives() {
    let redis = RedisServer::start();
    let secret = platform::webhook::Secret::generate();
    let sink = support::Process::start(
        env!("CARGO_BIN_EXE_webhook-sink"),
        "WEBHOOK_SINK_ADDR",
        &[("WEBHOOK_SINK_SECRET", secret.expose().to_owned())],
    );
    let url = format!("http://{}/webhooks", sink.addr);
    let _dispatcher = dispatcher(
        &redis,
        &[
            ("WEBHOOK_DEV_SINK_URL", url.as_str()),
            ("WEBHOOK_DEV_SINK_SECRET", secret.expose()),
            ("WEBHOOK_DEV_SINK_MERCHANTS", "acme,globex"),
        ],
    );
    succeeded(&redis, 2).await;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let received = loop {
        let list: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        if list["data"].as_array().unwrap().len() >= 2 {
            break list;
        }
        assert!(Instant::now() < deadline, "sink got {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for delivery in received["data"].as_array().unwrap() {
        assert_eq!(delivery["verified"], true, "{delivery}");
        assert_eq!(delivery["event_type"], "transaction.succeeded");
    }
    // A forged delivery is refused and shown unverified.
    let forged = client
        .post(&url)
        .header("webhook-id", "evt_forged")
        .header(
            "webhook-timestamp",
            (platform::webhook::now_ms() / 1000).to_string(),
        )
        .header("webhook-signature", "v1,AAAA")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    let list: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["data"][0]["verified"], false);
    // Each dev merchant got one endpoint, once.
    let mut conn = redis.connection();
    let marked: u64 = redis::cmd("HLEN")
        .arg(keyspace::WEBHOOK_DEV_SINK)
        .query(&mut conn)
        .unwrap();
    assert_eq!(marked, 2);
    assert!(!sink.logs().contains(secret.expose()));
}
