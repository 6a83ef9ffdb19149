//! webhook-dispatcher's settings (README "Configuration").

use std::time::Duration;

use platform::config::{FromEnv, ListenAddr, Millis};
use platform::redis::RedisUrl;
use platform::webhook::Secret;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Health and readiness endpoints only.
    #[serde(default = "default_addr")]
    pub webhook_dispatcher_addr: ListenAddr,
    #[serde(default)]
    pub redis_url: RedisUrl,
    /// Whole-request timeout of one delivery attempt.
    #[serde(default = "default_timeout", deserialize_with = "positive_millis")]
    pub webhook_timeout_ms: Millis,
    /// Delay before the second attempt; doubled per attempt up to
    /// `WEBHOOK_RETRY_MAX_MS`, each drawn from its upper half (jitter).
    #[serde(default = "default_retry_base", deserialize_with = "positive_millis")]
    pub webhook_retry_base_ms: Millis,
    #[serde(default = "default_retry_max", deserialize_with = "positive_millis")]
    pub webhook_retry_max_ms: Millis,
    /// Attempts per delivery before it is dead-lettered.
    #[serde(default = "default_max_attempts", deserialize_with = "at_least_one")]
    pub webhook_max_attempts: u32,
    /// Deliveries in flight at once to one endpoint (per dispatcher
    /// process): a slow endpoint holds at most this many, never the others'.
    #[serde(
        default = "default_endpoint_concurrency",
        deserialize_with = "at_least_one"
    )]
    pub webhook_endpoint_concurrency: u32,
    /// Deliveries in flight at once in this process.
    #[serde(default = "default_concurrency", deserialize_with = "at_least_one")]
    pub webhook_concurrency: u32,
    /// An events-stream entry pending this long with another consumer is
    /// taken over (that dispatcher died before fanning it out).
    #[serde(default = "default_claim_idle", deserialize_with = "positive_millis")]
    pub webhook_claim_idle_ms: Millis,
    /// This process's consumer name; unique per process.
    #[serde(default)]
    pub webhook_consumer_name: Option<String>,
    /// The development receiver (webhook-sink): when set, each merchant of
    /// `WEBHOOK_DEV_SINK_MERCHANTS` gets an endpoint for every event at this
    /// URL with `WEBHOOK_DEV_SINK_SECRET`, once.
    #[serde(default)]
    pub webhook_dev_sink_url: Option<String>,
    #[serde(default, deserialize_with = "optional_secret")]
    pub webhook_dev_sink_secret: Option<Secret>,
    /// Comma-separated merchant ids.
    #[serde(default)]
    pub webhook_dev_sink_merchants: Option<String>,
}

fn default_addr() -> ListenAddr {
    ([127, 0, 0, 1], 7601).into()
}
fn default_timeout() -> Millis {
    Millis(Duration::from_secs(10))
}
fn default_retry_base() -> Millis {
    Millis(Duration::from_secs(10))
}
fn default_retry_max() -> Millis {
    Millis(Duration::from_secs(6 * 3600))
}
fn default_max_attempts() -> u32 {
    15
}
fn default_endpoint_concurrency() -> u32 {
    8
}
fn default_concurrency() -> u32 {
    256
}
fn default_claim_idle() -> Millis {
    Millis(Duration::from_secs(15))
}

fn at_least_one<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let value: u32 = platform::config::parsed(deserializer)?;
    if value == 0 {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(value)
}

fn positive_millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Millis, D::Error> {
    let millis = Millis::deserialize(deserializer)?;
    if millis.0.is_zero() {
        return Err(serde::de::Error::custom("must be at least 1 ms"));
    }
    Ok(millis)
}

fn optional_secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Secret>, D::Error> {
    let text = String::deserialize(deserializer)?;
    Secret::parse(text.trim())
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom("must be whsec_ and the base64 of 16-64 bytes"))
}

impl FromEnv for Config {
    const VARS: &'static [&'static str] = &[
        "WEBHOOK_DISPATCHER_ADDR",
        "REDIS_URL",
        "WEBHOOK_TIMEOUT_MS",
        "WEBHOOK_RETRY_BASE_MS",
        "WEBHOOK_RETRY_MAX_MS",
        "WEBHOOK_MAX_ATTEMPTS",
        "WEBHOOK_ENDPOINT_CONCURRENCY",
        "WEBHOOK_CONCURRENCY",
        "WEBHOOK_CLAIM_IDLE_MS",
        "WEBHOOK_CONSUMER_NAME",
        "WEBHOOK_DEV_SINK_URL",
        "WEBHOOK_DEV_SINK_SECRET",
        "WEBHOOK_DEV_SINK_MERCHANTS",
    ];

    /// The development sink needs its URL, its secret and its merchants.
    fn check(&self, _: &platform::config::RuntimeConfig) -> Result<(), platform::ConfigError> {
        let set = [
            self.webhook_dev_sink_url.is_some(),
            self.webhook_dev_sink_secret.is_some(),
            self.webhook_dev_sink_merchants.is_some(),
        ];
        if set.iter().any(|s| *s) && !set.iter().all(|s| *s) {
            return Err(platform::ConfigError {
                variable: "WEBHOOK_DEV_SINK_URL".to_owned(),
                problem: "set WEBHOOK_DEV_SINK_URL, WEBHOOK_DEV_SINK_SECRET and \
                          WEBHOOK_DEV_SINK_MERCHANTS together"
                    .to_owned(),
            });
        }
        Ok(())
    }
}

impl Config {
    /// Configured, or `webhook-dispatcher-<pid>`.
    pub fn consumer_name(&self) -> String {
        match &self.webhook_consumer_name {
            Some(name) if !name.trim().is_empty() => name.trim().to_owned(),
            _ => format!("webhook-dispatcher-{}", std::process::id()),
        }
    }

    /// The retry schedule as configured.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            base: self.webhook_retry_base_ms.0,
            max: self.webhook_retry_max_ms.0,
            max_attempts: self.webhook_max_attempts,
        }
    }
}

/// When a failed delivery is tried again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// The delay after failed attempt `attempt` (1-based): `base · 2^(n-1)`
    /// capped at `max`, drawn uniformly from its upper half, so retries of
    /// many deliveries that failed together spread out but none comes
    /// much earlier than the schedule says. `None` when `attempt` was the
    /// last.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let doubling = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        let ceiling = self.base.saturating_mul(doubling).min(self.max);
        let half = ceiling / 2;
        let jitter = Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64));
        Some(half + jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_in_the_upper_half() {
        let policy = RetryPolicy {
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
            max_attempts: 5,
        };
        for _ in 0..100 {
            let delays: Vec<_> = (1..5).map(|n| policy.delay_after(n).unwrap()).collect();
            for (delay, ceiling) in delays.iter().zip([10, 20, 40, 60]) {
                let ceiling = Duration::from_secs(ceiling);
                assert!(*delay >= ceiling / 2 && *delay <= ceiling, "{delay:?}");
            }
        }
        assert_eq!(policy.delay_after(5), None);
    }
}
