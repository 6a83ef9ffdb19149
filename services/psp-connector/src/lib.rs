//! PSP Connector: charges queued transactions at the PSPs their route
//! names, and makes queued refunds at the PSP that charged ([`refunds`])
//! (docs/architecture.md "Queue semantics", "Orchestration", "Refunds").
//!
//! Delivery from the stream is at-least-once; the effect is exactly-once
//! because every charge carries an idempotency key per transaction and PSP,
//! a payment leaves a PSP only on proof that it charged nothing
//! ([`worker`]), and statuses only move by compare-and-set
//! ([`platform::transaction`]). The HTTP listener serves `/healthz` and
//! `/readyz` only; ready means Redis answers and the consumer loop is
//! turning.

pub mod breaker;
mod configuration;
mod consumer;
pub mod psp;
pub mod refunds;
pub mod routing;
pub mod stream;
pub mod worker;

pub use configuration::{Config, PspUrl, PspUrls};

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

    let urls = config.psps()?;
    let routing = config.routing()?;
    let psps = Arc::new(routing::Psps::new(
        urls.0
            .iter()
            .map(|(name, url)| {
                Ok((
                    name.clone(),
                    psp::PspClient::new(url, config.psp_timeout_ms.0)?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
    ));
    let breakers = Arc::new(breaker::Breakers::new(
        redis.clone(),
        breaker::BreakerPolicy {
            threshold: config.breaker_failure_threshold,
            window: config.breaker_window_ms.0,
            cooldown: config.breaker_cooldown_ms.0,
            // A charge and its lookup, each within the timeout.
            probe_timeout: config.psp_timeout_ms.0 * 2,
        },
        psps.names(),
    ));
    let directory = urls
        .0
        .iter()
        .map(|(name, url)| (name.clone(), url.as_str().to_owned()))
        .collect();
    let consumer_name = config.consumer_name();
    // Refunds go to the PSP that charged, by the name on the record.
    let refund_consumer = refunds::RefundConsumer {
        worker: Arc::new(refunds::RefundWorker {
            redis: redis.clone(),
            psps: psps.clone(),
            budget: config.psp_retry_budget_secs.0,
            base: config.connector_retry_base_ms.0,
            max: config.connector_retry_max_ms.0,
            name: consumer_name.clone(),
            refresh: (config.connector_claim_idle_ms.0 / 2)
                .max(std::time::Duration::from_millis(10)),
        }),
        reader: Redis::connect(&config.redis_url)?,
        concurrency: config.connector_concurrency,
        claim_idle: config.connector_claim_idle_ms.0,
        drain_timeout,
    };
    let worker = Arc::new(worker::Worker {
        redis: redis.clone(),
        psps,
        routing,
        breakers: breakers.clone(),
        card_key: config.card_encryption_key.clone(),
        retry: worker::RetryPolicy {
            budget: config.psp_retry_budget_secs.0,
            max_attempts: config.psp_max_attempts,
            base: config.connector_retry_base_ms.0,
            max: config.connector_retry_max_ms.0,
        },
    });
    let consumer = Consumer {
        name: consumer_name,
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
        let refresher = breakers.run_refresher(directory, shutdown.clone());
        let (served, (), (), ()) = tokio::join!(
            serve,
            consumer.run(shutdown.clone()),
            refund_consumer.run(shutdown),
            refresher
        );
        served.map_err(Into::into)
    };
    Ok(Started {
        addr,
        serve: run.boxed(),
    })
}
