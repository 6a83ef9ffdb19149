//! Core API: accepts, records and queues transactions; lists and filters
//! them (docs/architecture.md "Request path", producer side of "Queue semantics").
//!
//! - [`domain`]: the types requests are parsed into at the edge.
//! - [`transactions`]: the `/transactions` routes and their Redis access.
//! - [`idempotency`]: `Idempotency-Key` claims, replays and conflicts.
//! - [`openapi`]: `GET /openapi.json`.
//! - [`refunds`]: the `/transactions/{id}/refunds` routes.
//! - [`events`]: `/events`, the transaction status changes.
//! - [`webhooks`]: `/webhook_endpoints`, where events are delivered.
//! - [`admin`]: the queue and dead-letter views of the dev dashboard.
//! - [`psps`]: `/psps`, the PSPs payments are routed to and their breakers.

pub mod admin;
mod configuration;
pub mod domain;
pub mod events;
pub mod idempotency;
pub mod openapi;
pub mod psps;
pub mod refunds;
pub mod transactions;
pub mod webhooks;

pub use configuration::Config;

use axum::extract::FromRef;
use axum::routing::get;
use platform::Shutdown;
use platform::access::api_key::ApiKeyVerifier;
use platform::auth::{CallerVerifier, TokenVerifier};
use platform::config::RuntimeConfig;
use platform::health::Readiness;
use platform::redis::Redis;
use platform::server::{Server, Started};

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub redis: Redis,
    /// User tokens and API keys.
    pub callers: CallerVerifier,
    pub fingerprinter: idempotency::Fingerprinter,
    /// Seals the card in each queue message.
    pub card_key: platform::crypto::CardKey,
    /// Whether webhook endpoints may be outside loopback.
    pub webhook_public_urls: bool,
}

impl FromRef<AppState> for CallerVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.callers.clone()
    }
}

/// The service's routes (without the shared health/404 layers).
pub fn routes(state: AppState) -> axum::Router {
    transactions::routes()
        .merge(refunds::routes())
        .merge(events::routes())
        .merge(webhooks::routes())
        .merge(admin::routes())
        .merge(psps::routes())
        .route("/openapi.json", get(openapi::openapi_json))
        .with_state(state)
}

/// Binds the listener, connects Redis lazily, and returns the bound address
/// and the future that serves until `shutdown`.
pub async fn build(
    config: Config,
    runtime: RuntimeConfig,
    shutdown: Shutdown,
) -> anyhow::Result<Started> {
    let redis = Redis::connect(&config.redis_url)?;
    let state = AppState {
        redis: redis.clone(),
        callers: CallerVerifier {
            tokens: TokenVerifier::new(&config.jwt_secret),
            api_keys: Some(ApiKeyVerifier::new(redis.clone())),
        },
        fingerprinter: idempotency::Fingerprinter::new(config.jwt_secret.as_bytes()),
        card_key: config.card_encryption_key.clone(),
        webhook_public_urls: config.webhook_public_urls,
    };
    let server = Server::bind(
        "core-api",
        config.core_api_addr,
        routes(state),
        Readiness::redis(redis),
        runtime.shutdown_timeout_secs.0,
    )
    .await?
    .with_limits(runtime.http_limits());
    Ok(server.start(shutdown))
}
