//! PSP Sandbox: a local stand-in for the Payment Service Provider (docs/architecture.md "Processes").
//!
//! Idempotent charges and refunds with the documented test cards, a lookup of a charge
//! by its idempotency key that fences an undecided key (so a caller that
//! timed out can prove nothing was charged), injectable latency and faults
//! (`PSP_LATENCY_MS`, `PSP_FAILURE_RATE`, changeable at `PUT /faults`), and
//! stats that let tests prove no idempotency key was ever charged twice.
//! Several run side by side under names of their own (`PSP_SANDBOX_NAME`).
//! State lives in memory and resets on restart.

pub mod cards;
mod charges;
mod configuration;
pub mod faults;
pub mod ledger;
mod refunds;

pub use configuration::{Config, FailureRate};

use std::sync::Arc;

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
    let faults = Arc::new(faults::Faults::new(
        config.psp_latency_ms,
        config.psp_failure_rate,
    ));
    let refunds = Arc::new(refunds::Refunds::new(
        config.psp_ledger_max_keys,
        faults.clone(),
    ));
    let state = Arc::new(charges::Charges {
        name: config.psp_sandbox_name.clone(),
        ledger: ledger::Ledger::new(
            config.psp_idempotency_ttl_secs.0,
            config.psp_ledger_max_keys,
        ),
        faults: faults.clone(),
        refunds: refunds.clone(),
    });
    tracing::info!(
        psp = %config.psp_sandbox_name,
        latency_ms = config.psp_latency_ms,
        failure_rate = config.psp_failure_rate.get(),
        idempotency_ttl_secs = config.psp_idempotency_ttl_secs.0.as_secs(),
        max_keys = config.psp_ledger_max_keys,
        "psp sandbox settings (state is in memory and resets on restart)"
    );
    let server = Server::bind(
        "psp-sandbox",
        config.psp_sandbox_addr,
        charges::routes(state)
            .merge(faults::routes(faults))
            .merge(refunds::routes(refunds)),
        Readiness::always(),
        runtime.shutdown_timeout_secs.0,
    )
    .await?
    .with_limits(runtime.http_limits());
    Ok(server.start(shutdown))
}
