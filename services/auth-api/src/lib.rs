//! Auth API: exchanges merchant credentials for short-lived tokens, and
//! manages the merchant's API keys and its users' customers.
//!
//! `POST /token` checks a username and password against the users file
//! ([`users`]), under a per-username brute-force limit kept in Redis
//! ([`limiter`]), and answers with an HS256 token signed by the shared
//! [`platform::auth::TokenIssuer`]. [`api_keys`]: `sk_test_…` keys, created
//! with a user token. [`links`]: which customers a user may act for,
//! changed with an API key.

mod access;
pub mod api_keys;
mod configuration;
pub mod credentials;
pub mod limiter;
pub mod links;
pub mod openapi;
pub mod token;
pub mod users;

pub use configuration::{Config, TokenTtl};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::routing::{delete, get, post};
use platform::Shutdown;
use platform::access::api_key::ApiKeyVerifier;
use platform::auth::{CallerVerifier, TokenIssuer, TokenVerifier};
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
    let authenticator = Authenticator::new(users, config.auth_login_queue);
    let access = access::AccessState {
        redis: redis.clone(),
        users: Arc::clone(authenticator.users()),
        callers: CallerVerifier {
            tokens: TokenVerifier::new(&config.jwt_secret),
            api_keys: Some(ApiKeyVerifier::new(redis.clone())),
        },
    };
    let state = TokenState {
        authenticator,
        limiter: LoginLimiter::new(redis.clone()),
        issuer: TokenIssuer::new(&config.jwt_secret, config.auth_token_ttl_secs.duration()),
    };
    let seeded = Arc::new(AtomicBool::new(false));
    tokio::spawn(links::seed(
        redis.clone(),
        Arc::clone(&access.users),
        Arc::clone(&seeded),
    ));
    let routes = axum::Router::new()
        .route("/token", post(token::issue_token))
        .with_state(state)
        .route(
            "/api_keys",
            get(api_keys::list_api_keys).post(api_keys::create_api_key),
        )
        .route("/api_keys/{id}", delete(api_keys::revoke_api_key))
        .route("/users/{username}/customers", get(links::list_customers))
        .route(
            "/users/{username}/customers/{customer_id}",
            axum::routing::put(links::link_customer).delete(links::unlink_customer),
        )
        .with_state(access)
        .route("/openapi.json", get(openapi::serve));
    // Not ready before the users file's links are written, so no token
    // is used before its user's customers exist.
    let links_seeded = Readiness::new(move || {
        let seeded = seeded.load(Ordering::Acquire);
        Box::pin(async move {
            if seeded {
                Ok(())
            } else {
                Err("user links not seeded yet".to_owned())
            }
        })
    });
    let server = Server::bind(
        "auth-api",
        config.auth_api_addr,
        routes,
        Readiness::redis(redis).and(links_seeded),
        runtime.shutdown_timeout_secs.0,
    )
    .await?
    .with_limits(runtime.http_limits());
    Ok(server.start(shutdown))
}
