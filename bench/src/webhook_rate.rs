//! Webhook delivery rate: deliveries per second from the real
//! webhook-dispatcher binary to a receiver on loopback, beside the same
//! receiver driven directly by a client with the same concurrency (the
//! reference: what the receiver and loopback HTTP allow).
//!
//! Self-contained: its own Redis, its own dispatcher process and receiver.
//! The events are written first, through the real create path and status
//! script (one `transaction.succeeded` each, fanned out to every endpoint),
//! then the dispatcher is started; the rate is counted from the first
//! delivery to the last, so start-up is not in it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use platform::auth::Caller;
use platform::testing::{ChildGuard, RedisServer, free_port};
use platform::transaction::{Status, TransactionId, Transition};
use platform::webhook::{Endpoint, EndpointId, Secret, Subscription};

use crate::report::{Row, thousands};
use crate::scenarios::ScenarioResult;

/// In flight per endpoint: the dispatcher's default.
const ENDPOINT_CONCURRENCY: usize = 8;

/// Counts deliveries; stamps the first and the last.
#[derive(Default)]
struct Counter {
    count: AtomicUsize,
    first: std::sync::Mutex<Option<Instant>>,
    last: std::sync::Mutex<Option<Instant>>,
}

async fn receiver(counter: Arc<Counter>) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/hooks/{n}",
        axum::routing::post(move |_body: bytes::Bytes| {
            let counter = counter.clone();
            async move {
                let now = Instant::now();
                counter.first.lock().expect("lock").get_or_insert(now);
                *counter.last.lock().expect("lock") = Some(now);
                counter.count.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// `events` payments moved to succeeded: one event each.
async fn seed(redis: &RedisServer, events: usize) -> anyhow::Result<()> {
    let mut conn = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    let caller = Caller {
        merchant: "acme".into(),
        principal: platform::auth::Principal::User("alice".into()),
    };
    let key = platform::crypto::CardKey::development();
    let request: core_api::transactions::request::CreateTransactionRequest =
        serde_json::from_value(serde_json::json!({
            "amount": 1299, "currency": "EUR", "customer_id": "cus_bench",
            "payment_method": {"type": "card", "number": "4242424242424242",
                               "expiry_month": 12, "expiry_year": 2030, "cvc": "123"},
        }))?;
    let new = request.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let succeed = Transition {
        from: vec![Status::Pending],
        to: Status::Succeeded,
        add_attempts: 1,
        log: None,
        fields: Vec::new(),
    };
    for _ in 0..events {
        let tx = core_api::transactions::accept(&mut conn, &key, &caller, "bench", &new)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let id = TransactionId::parse(&tx.id).map_err(|_| anyhow::anyhow!("bad id"))?;
        platform::transaction::transition(&mut conn, &id, "acme", &succeed).await?;
    }
    Ok(())
}

/// The reference: the receiver driven directly, `concurrency` clients,
/// `total` POSTs of `body`.
async fn direct_rate(url: &str, concurrency: usize, total: usize, body: Vec<u8>) -> f64 {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, body, url) =
                (client.clone(), next.clone(), body.clone(), url.to_owned());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let _ = client
                        .post(format!("{url}/0"))
                        .body(body.clone())
                        .send()
                        .await;
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Measures `events × endpoints` deliveries; `bin_dir` holds the
/// webhook-dispatcher binary.
pub async fn measure(
    bin_dir: &Path,
    events: usize,
    endpoints: usize,
) -> anyhow::Result<WebhookRate> {
    let redis = RedisServer::start();
    let counter = Arc::new(Counter::default());
    let url = receiver(counter.clone()).await?;
    let mut conn = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    for n in 0..endpoints {
        let endpoint = Endpoint {
            id: EndpointId::generate(),
            merchant_id: "acme".into(),
            url: format!("{url}/{n}"),
            events: Subscription::All,
            description: String::new(),
            secret: Secret::generate(),
            previous_secret: None,
            created_at: platform::transaction::now_rfc3339(),
        };
        platform::webhook::create(&mut conn, &endpoint).await?;
    }
    seed(&redis, events).await?;

    let binary = bin_dir.join("webhook-dispatcher");
    let child = Command::new(&binary)
        .env_clear()
        .env("REDIS_URL", redis.url())
        .env(
            "WEBHOOK_DISPATCHER_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .env(
            "WEBHOOK_ENDPOINT_CONCURRENCY",
            ENDPOINT_CONCURRENCY.to_string(),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let _dispatcher = ChildGuard(child);
    let expected = events * endpoints;
    let deadline = Instant::now() + Duration::from_secs(300);
    while counter.count.load(Ordering::Relaxed) < expected {
        if Instant::now() > deadline {
            bail!(
                "only {} of {expected} deliveries in 300 s",
                counter.count.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = counter.first.lock().expect("lock").context("no delivery")?;
    let last = counter.last.lock().expect("lock").context("no delivery")?;
    let rate = (expected - 1) as f64 / (last - first).as_secs_f64().max(1e-6);

    // A delivery's body is about this size (one event with its transaction).
    let body = vec![b'x'; 700];
    let reference = direct_rate(
        &url,
        ENDPOINT_CONCURRENCY * endpoints,
        expected.min(20_000),
        body,
    )
    .await;
    Ok(WebhookRate {
        endpoints,
        deliveries: expected,
        rate,
        reference,
    })
}

/// What [`measure`] found.
pub struct WebhookRate {
    pub endpoints: usize,
    pub deliveries: usize,
    /// Deliveries per second, first to last.
    pub rate: f64,
    /// The receiver driven directly, same concurrency, per second.
    pub reference: f64,
}

impl ScenarioResult for WebhookRate {
    fn key(&self) -> &'static str {
        "webhook_deliveries"
    }

    fn row(&self) -> Row {
        Row {
            scenario: format!(
                "webhook deliveries to a loopback receiver, {} endpoint(s), {ENDPOINT_CONCURRENCY} in flight each ({} deliveries)",
                self.endpoints, self.deliveries
            ),
            figure: format!("{}/s", thousands(self.rate)),
            reference: format!(
                "the receiver driven directly, {} connections: {}/s",
                ENDPOINT_CONCURRENCY * self.endpoints,
                thousands(self.reference)
            ),
            ratio: format!("{:.0} %", 100.0 * self.rate / self.reference),
            goal: "a figure (no goal set)".into(),
            met: true,
        }
    }

    fn figures(&self) -> serde_json::Value {
        serde_json::json!({
            "endpoints": self.endpoints,
            "endpoint_concurrency": ENDPOINT_CONCURRENCY,
            "deliveries": self.deliveries,
            "rate_per_s": self.rate,
            "reference_rate_per_s": self.reference,
        })
    }
}
