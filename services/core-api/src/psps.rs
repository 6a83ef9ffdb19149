//! `GET /psps`: the PSPs payments are routed to, and the state of each
//! one's circuit breaker (docs/architecture.md "Orchestration").
//!
//! The connectors publish the PSPs they were started with (name → URL) and
//! share one breaker per PSP in Redis; this reads both, so a merchant's
//! engineer can see why payments went where they did. Any authenticated
//! caller may look: nothing here is a merchant's.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use platform::ApiError;
use platform::auth::Caller;
use platform::http::{ErrorBody, Json};
use platform::keyspace;
use platform::psp::{Breaker, BreakerState, PspName};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/psps", get(list_psps))
}

/// One PSP as the connectors see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Psp {
    #[schema(example = "psp-a")]
    pub name: String,
    /// The base URL the connectors call.
    pub url: String,
    pub breaker: BreakerView,
}

/// A circuit breaker's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct BreakerView {
    pub state: BreakerState,
    /// Failures (unavailable or unknown outcomes) in the current window.
    pub failures: u64,
    /// Calls in the current window (successes are reported within about a
    /// quarter second).
    pub calls: u64,
    /// When the current window began (Unix ms).
    pub window_started_ms: u64,
    /// When the breaker last opened (Unix ms), if ever.
    pub opened_at_ms: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PspList {
    /// By name.
    pub data: Vec<Psp>,
}

/// Lists the PSPs the connectors route to, by name, with their breakers.
#[utoipa::path(
    get,
    path = "/psps",
    tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The PSPs, by name; empty until a connector has started", body = PspList),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable", body = ErrorBody),
    )
)]
pub async fn list_psps(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<PspList>, ApiError> {
    let mut conn = state.redis.conn();
    let directory: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keyspace::PSP_DIRECTORY)
        .query_async(&mut conn)
        .await?;
    let mut names: Vec<PspName> = directory
        .keys()
        .filter_map(|name| PspName::parse(name).ok())
        .collect();
    names.sort();
    let mut pipe = redis::pipe();
    for name in &names {
        pipe.hgetall(keyspace::breaker(name));
    }
    let breakers: Vec<HashMap<String, String>> = if names.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(&mut conn).await?
    };
    let data = names
        .into_iter()
        .zip(breakers)
        .map(|(name, hash)| {
            let breaker = Breaker::from_hash(&hash);
            Psp {
                url: directory[name.as_str()].clone(),
                name: name.to_string(),
                breaker: BreakerView {
                    state: breaker.state,
                    failures: breaker.failures,
                    calls: breaker.calls,
                    window_started_ms: breaker.window_started_ms,
                    opened_at_ms: breaker.opened_at_ms,
                },
            }
        })
        .collect();
    Ok(Json(PspList { data }))
}
