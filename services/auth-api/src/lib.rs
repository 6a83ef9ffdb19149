//! Auth API: exchanges merchant credentials for short-lived tokens.
//!
//! `POST /token` checks a username and password against the users file
//! ([`users`]), under a per-username brute-force limit kept in Redis
//! ([`limiter`]), and answers with an HS256 token signed by the shared
//! [`platform::auth::TokenIssuer`].

mod configuration;
pub mod credentials;
pub mod limiter;
pub mod openapi;
pub mod token;
pub mod users;

pub use configuration::{Config, TokenTtl};

use axum::routing::{get, post};
use platform::Shutdown;
use platform::auth::TokenIssuer;
use platform::config::RuntimeConfig;
use platform::health::Readiness;
use platform::redis::Redis;
use platform::server::{Server, Started};

use crate::limiter::LoginLimiter;
use crate::token::TokenState;
use crate::users::{Authenticator, Users};

/// Reads the users file, binds the listener, connects Redis lazily, and
/// returns the bound address and the future that serves until `shutdown`.
///
/// A users-file problem is returned as a [`platform::ConfigError`] (inside
/// the `anyhow::Error`), so `main` can report it like any config error.
pub async fn build(
    config: Config,
    runtime: RuntimeConfig,
    shutdown: Shutdown,
) -> anyhow::Result<Started> {
    let users = Users::load(&config.auth_users_file)?;
    if users.is_empty() {
        tracing::warn!(file = %config.auth_users_file.display(), "the users file has no users");
    }
    let redis = Redis::connect(&config.redis_url)?;
    let state = TokenState {
        authenticator: Authenticator::new(users, config.auth_login_queue),
        limiter: LoginLimiter::new(redis.clone()),
        issuer: TokenIssuer::new(&config.jwt_secret, config.auth_token_ttl_secs.duration()),
    };
    let routes = axum::Router::new()
        .route("/token", post(token::issue_token))
        .with_state(state)
        .route("/openapi.json", get(openapi::serve));
    let server = Server::bind(
        "auth-api",
        config.auth_api_addr,
        routes,
        Readiness::redis(redis),
        runtime.shutdown_timeout_secs.0,
    )
    .await?
    .with_limits(runtime.http_limits());
    Ok(server.start(shutdown))
}
