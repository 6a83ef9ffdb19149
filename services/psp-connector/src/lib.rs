//! PSP Connector: charges queued transactions at the PSP (docs/architecture.md "Queue semantics").
//!
//! Delivery from the stream is at-least-once; the effect is exactly-once
//! because every charge carries `Idempotency-Key = transaction id` and
//! statuses only move by compare-and-set ([`platform::transaction`]). The
//! HTTP listener serves `/healthz` and `/readyz` only; ready means Redis
//! answers and the consumer loop is turning.

mod configuration;
mod consumer;
pub mod psp;
pub mod stream;
pub mod worker;

pub use configuration::{Config, PspUrl};

use std::sync::Arc;

use futures::FutureExt;
use platform::Shutdown;
use platform::config::RuntimeConfig;
use platform::health::Readiness;
use platform::redis::Redis;
use platform::server::{Server, Started};

use consumer::{Consumer, Liveness};

/// Binds the health listener, connects Redis lazily, and returns the bound
/// address and the future that runs the health server and the consumer
/// until `shutdown` (then drains both).
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
        "psp-connector",
        config.psp_connector_addr,
        axum::Router::new(),
        Readiness::redis(redis.clone()).and(liveness.readiness()),
        drain_timeout,
    )
    .await?
    .with_limits(runtime.http_limits());
    let addr = server.local_addr();

    let worker = Arc::new(worker::Worker {
        redis: redis.clone(),
        psp: psp::PspClient::new(&config.psp_url, config.psp_timeout_ms.0)?,
        card_key: config.card_encryption_key.clone(),
        retry: worker::RetryPolicy {
            budget: config.psp_retry_budget_secs.0,
            max_attempts: config.psp_max_attempts,
            base: config.connector_retry_base_ms.0,
            max: config.connector_retry_max_ms.0,
        },
    });
    let consumer = Consumer {
        name: config.consumer_name(),
        reader,
        redis,
        worker,
        concurrency: config.connector_concurrency,
        claim_idle: config.connector_claim_idle_ms.0,
        retry_poll: config.connector_retry_poll_ms.0,
        drain_timeout,
        liveness,
    };

    let run = async move {
        // If the health server dies, the consumer must stop too, so a
        // supervisor sees the process exit rather than a half-alive one.
        let stop = shutdown.clone();
        let serve = server.run(shutdown.clone()).map(move |result| {
            stop.trigger();
            result
        });
        let (served, ()) = tokio::join!(serve, consumer.run(shutdown));
        served.map_err(Into::into)
    };
    Ok(Started {
        addr,
        serve: run.boxed(),
    })
}
