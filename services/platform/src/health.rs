//! Readiness: "can this service do its job right now?"
//!
//! One check backs `/readyz`, gates `READY=1` and decides whether the
//! watchdog is petted, so the three can never disagree.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

/// How long a single dependency check may take before it counts as down.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(500);

type Check = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// A readiness check, cheap to clone.
#[derive(Clone)]
pub struct Readiness(Arc<Check>);

impl Readiness {
    pub fn new<F>(check: F) -> Self
    where
        F: Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
    {
        Self(Arc::new(check))
    }

    /// For a service without dependencies (the PSP sandbox).
    pub fn always() -> Self {
        Self::new(|| Box::pin(async { Ok(()) }))
    }

    /// Ready while Redis answers PING within [`CHECK_TIMEOUT`].
    pub fn redis(redis: crate::redis::Redis) -> Self {
        Self::new(move || {
            let redis = redis.clone();
            Box::pin(async move { redis.ping().await.map_err(|e| format!("redis: {e}")) })
        })
    }

    /// Ready when both are.
    pub fn and(self, other: Readiness) -> Self {
        Self::new(move || {
            let (a, b) = (self.clone(), other.clone());
            Box::pin(async move {
                a.check().await?;
                b.check().await
            })
        })
    }

    pub async fn check(&self) -> Result<(), String> {
        match tokio::time::timeout(CHECK_TIMEOUT, (self.0)()).await {
            Ok(result) => result,
            Err(_) => Err("readiness check timed out".to_owned()),
        }
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Readiness")
    }
}
