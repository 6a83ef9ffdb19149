//! PSP Sandbox: a local stand-in for the Payment Service Provider (docs/architecture.md "Processes").
//!
//! Idempotent charges with the documented test cards, injectable latency
//! (`PSP_LATENCY_MS`) and faults (`PSP_FAILURE_RATE`), and stats that let
//! tests prove no idempotency key was ever charged twice. State lives in
//! memory and resets on restart.

pub mod cards;
mod charges;
mod configuration;
pub mod ledger;

pub use configuration::{Config, FailureRate};

use std::sync::Arc;
use std::time::Duration;

use platform::Shutdown;
use platform::config::RuntimeConfig;
use platform::health::Readiness;
use platform::server::{Server, Started};

/// Binds the listener and returns the bound address and the future that
/// serves until `shutdown`.
pub async fn build(
    config: Config,
    runtime: RuntimeConfig,
    shutdown: Shutdown,
) -> anyhow::Result<Started> {
    let state = Arc::new(charges::Charges {
        ledger: ledger::Ledger::new(
            config.psp_idempotency_ttl_secs.0,
            config.psp_ledger_max_keys,
        ),
        latency: Duration::from_millis(config.psp_latency_ms),
        failure_rate: config.psp_failure_rate,
    });
    tracing::info!(
        latency_ms = config.psp_latency_ms,
        failure_rate = config.psp_failure_rate.get(),
        idempotency_ttl_secs = config.psp_idempotency_ttl_secs.0.as_secs(),
        max_keys = config.psp_ledger_max_keys,
        "psp sandbox settings (state is in memory and resets on restart)"
    );
    let server = Server::bind(
        "psp-sandbox",
        config.psp_sandbox_addr,
        charges::routes(state),
        Readiness::always(),
        runtime.shutdown_timeout_secs.0,
    )
    .await?
    .with_limits(runtime.http_limits());
    Ok(server.start(shutdown))
}
