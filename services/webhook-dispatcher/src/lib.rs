//! webhook-dispatcher: delivers every event to the merchant's subscribed
//! webhook endpoints (docs/architecture.md "Events and webhooks").
//!
//! Two loops share the process:
//! - [`fanout`] reads the events stream (consumer group
//!   `webhook-dispatcher`) and schedules one delivery per subscribed
//!   endpoint, then acknowledges and deletes the entry;
//! - [`delivery`] takes due deliveries endpoint by endpoint, at most
//!   `WEBHOOK_ENDPOINT_CONCURRENCY` in flight per endpoint, POSTs them
//!   signed per Standard Webhooks, and records each attempt; a failure is
//!   retried with exponential backoff and jitter, then dead-lettered.
//!
//! At-least-once: a delivery leaves Redis only after its endpoint answered
//! 2xx (or it was dead-lettered); a claimed delivery is leased, so one a
//! crashed dispatcher held comes due again. Every attempt of an event
//! carries the same `webhook-id` (the event id), for receivers to dedupe.
//! The HTTP listener serves `/healthz` and `/readyz` only.
//!
//! [`sink`] is the development receiver, a binary of its own.

mod configuration;
pub mod delivery;
pub mod fanout;
pub mod sink;

pub use configuration::{Config, RetryPolicy};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;
use platform::Shutdown;
use platform::config::RuntimeConfig;
use platform::health::Readiness;
use platform::redis::Redis;
use platform::server::{Server, Started};

/// The loops' heartbeats, for readiness: a loop silent for longer than
/// this is stuck.
#[derive(Debug)]
pub struct Liveness {
    fanout_ms: AtomicU64,
    delivery_ms: AtomicU64,
}

impl Default for Liveness {
    /// Both loops count as just started.
    fn default() -> Self {
        let now = platform::webhook::now_ms();
        Self {
            fanout_ms: AtomicU64::new(now),
            delivery_ms: AtomicU64::new(now),
        }
    }
}

impl Liveness {
    const STALE_AFTER_MS: u64 = 10_000;

    pub fn fanout_beat(&self) {
        self.fanout_ms
            .store(platform::webhook::now_ms(), Ordering::Relaxed);
    }

    pub fn delivery_beat(&self) {
        self.delivery_ms
            .store(platform::webhook::now_ms(), Ordering::Relaxed);
    }

    fn readiness(self: &Arc<Self>) -> Readiness {
        let liveness = self.clone();
        Readiness::new(move || {
            let liveness = liveness.clone();
            Box::pin(async move {
                let now = platform::webhook::now_ms();
                for (name, beat) in [
                    ("fan-out", &liveness.fanout_ms),
                    ("delivery", &liveness.delivery_ms),
                ] {
                    let age = now.saturating_sub(beat.load(Ordering::Relaxed));
                    if age > Self::STALE_AFTER_MS {
                        return Err(format!("{name} loop silent for {age} ms"));
                    }
                }
                Ok(())
            })
        })
    }
}

/// Binds the health listener, creates the development sink's endpoints if
/// configured, and returns the future that runs both loops until
/// `shutdown`.
pub async fn build(
    config: Config,
    runtime: RuntimeConfig,
    shutdown: Shutdown,
) -> anyhow::Result<Started> {
    let redis = Redis::connect(&config.redis_url)?;
    let reader = Redis::connect(&config.redis_url)?;
    let liveness = Arc::new(Liveness::default());
    let drain_timeout = runtime.shutdown_timeout_secs.0;
    let server = Server::bind(
        "webhook-dispatcher",
        config.webhook_dispatcher_addr,
        axum::Router::new(),
        Readiness::redis(redis.clone()).and(liveness.readiness()),
        drain_timeout,
    )
    .await?
    .with_limits(runtime.http_limits());
    let addr = server.local_addr();

    let wake = Arc::new(tokio::sync::Notify::new());
    let fanout = fanout::Fanout {
        name: config.consumer_name(),
        reader,
        redis: redis.clone(),
        claim_idle: config.webhook_claim_idle_ms.0,
        wake: wake.clone(),
        liveness: liveness.clone(),
        dev_sink: dev_sink(&config),
    };
    let delivery = delivery::Delivery::new(delivery::Settings {
        redis,
        timeout: config.webhook_timeout_ms.0,
        retry: config.retry_policy(),
        endpoint_concurrency: config.webhook_endpoint_concurrency as usize,
        concurrency: config.webhook_concurrency as usize,
        drain_timeout,
        wake,
        liveness,
    })?;

    let run = async move {
        // If the health server dies the loops stop too, so a supervisor
        // sees the process exit rather than a half-alive one.
        let stop = shutdown.clone();
        let serve = server.run(shutdown.clone()).map(move |result| {
            stop.trigger();
            result
        });
        let (served, (), ()) =
            tokio::join!(serve, fanout.run(shutdown.clone()), delivery.run(shutdown));
        served.map_err(Into::into)
    };
    Ok(Started {
        addr,
        serve: run.boxed(),
    })
}

fn dev_sink(config: &Config) -> Option<fanout::DevSink> {
    Some(fanout::DevSink {
        url: config.webhook_dev_sink_url.clone()?,
        secret: config.webhook_dev_sink_secret.clone()?,
        merchants: config
            .webhook_dev_sink_merchants
            .as_deref()?
            .split(',')
            .map(str::trim)
            .filter(|m| platform::auth::is_identifier(m))
            .map(str::to_owned)
            .collect(),
    })
}
