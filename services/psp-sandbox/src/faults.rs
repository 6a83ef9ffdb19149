//! `GET /faults` and `PUT /faults`: the sandbox's injected latency and
//! failure rate, changeable while it runs, so a test or an engineer can make
//! one PSP slow or failing and watch the connectors route around it without
//! restarting anything. Start values come from `PSP_LATENCY_MS` and
//! `PSP_FAILURE_RATE`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use platform::http::{ApiError, ErrorCode, Json};
use serde::{Deserialize, Serialize};

use crate::configuration::FailureRate;

/// The most latency that can be injected (10 minutes).
pub const MAX_LATENCY_MS: u64 = 600_000;

/// The current settings; read on every charge, so lock-free.
#[derive(Debug)]
pub struct Faults {
    latency_ms: AtomicU64,
    /// The failure rate's `f64` bits.
    failure_rate: AtomicU64,
}

/// The wire form of [`Faults`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FaultSettings {
    pub latency_ms: u64,
    pub failure_rate: f64,
}

/// `PUT /faults`: either field may be left out to keep it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultChange {
    latency_ms: Option<u64>,
    failure_rate: Option<f64>,
}

impl Faults {
    pub fn new(latency_ms: u64, failure_rate: FailureRate) -> Self {
        Self {
            latency_ms: AtomicU64::new(latency_ms),
            failure_rate: AtomicU64::new(failure_rate.get().to_bits()),
        }
    }

    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms.load(Ordering::Relaxed))
    }

    /// The latency ± 10 % (so concurrent requests do not finish in
    /// lockstep), split into the halves before and after the decision.
    pub fn latency_halves(&self) -> (Duration, Duration) {
        let latency = self.latency();
        if latency.is_zero() {
            return (Duration::ZERO, Duration::ZERO);
        }
        let total = latency.mul_f64(0.9 + fastrand::f64() * 0.2);
        (total / 2, total - total / 2)
    }

    pub fn failure_rate(&self) -> f64 {
        f64::from_bits(self.failure_rate.load(Ordering::Relaxed))
    }

    pub fn settings(&self) -> FaultSettings {
        FaultSettings {
            latency_ms: self.latency_ms.load(Ordering::Relaxed),
            failure_rate: self.failure_rate(),
        }
    }
}

/// Waits `duration`, and not at all for zero: a zero `tokio::time::sleep`
/// still waits for the timer's next tick (up to a millisecond, and a
/// wake-up), which at latency 0 cost each charge two of them.
pub async fn pause(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

pub fn routes(faults: Arc<Faults>) -> Router {
    Router::new()
        .route("/faults", get(show).put(change))
        .with_state(faults)
}

async fn show(State(faults): State<Arc<Faults>>) -> axum::Json<FaultSettings> {
    axum::Json(faults.settings())
}

/// Validates the whole change before applying any of it.
async fn change(
    State(faults): State<Arc<Faults>>,
    body: Result<Json<FaultChange>, ApiError>,
) -> Result<axum::Json<FaultSettings>, ApiError> {
    let Json(change) = body?;
    let rate = change
        .failure_rate
        .map(|rate| {
            FailureRate::new(rate).map_err(|error| {
                ApiError::invalid_field(
                    ErrorCode::InvalidFaults,
                    format!("failure_rate {error}"),
                    "failure_rate",
                )
            })
        })
        .transpose()?;
    if let Some(latency) = change.latency_ms.filter(|ms| *ms > MAX_LATENCY_MS) {
        return Err(ApiError::invalid_field(
            ErrorCode::InvalidFaults,
            format!("latency_ms must be at most {MAX_LATENCY_MS}, got {latency}"),
            "latency_ms",
        ));
    }
    if let Some(latency) = change.latency_ms {
        faults.latency_ms.store(latency, Ordering::Relaxed);
    }
    if let Some(rate) = rate {
        faults
            .failure_rate
            .store(rate.get().to_bits(), Ordering::Relaxed);
    }
    let settings = faults.settings();
    tracing::info!(
        latency_ms = settings.latency_ms,
        failure_rate = settings.failure_rate,
        "faults changed"
    );
    Ok(axum::Json(settings))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::FutureExt;

    #[tokio::test]
    async fn no_latency_is_no_wait_at_all() {
        // A zero `tokio::time::sleep` is (almost always) not ready when
        // first polled: it waits for the timer's next tick.
        assert!(super::pause(Duration::ZERO).now_or_never().is_some());
    }
}
