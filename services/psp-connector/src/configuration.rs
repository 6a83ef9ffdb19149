//! psp-connector's settings (docs/architecture.md "Lifecycle", "Queue semantics").
//!
//! Beyond the DESIGN table: `CONNECTOR_CLAIM_IDLE_MS` (reclaim messages a
//! dead consumer left pending after this long), `CONNECTOR_CONSUMER_NAME`
//! (default `<hostname>-<pid>`), the retry budget `PSP_RETRY_BUDGET_SECS`,
//! and the retry backoff `CONNECTOR_RETRY_BASE_MS` /
//! `CONNECTOR_RETRY_MAX_MS` / `CONNECTOR_RETRY_POLL_MS`.
//!
//! Retries are bounded by time, not by a count: a PSP outage lasts seconds
//! or minutes, whatever the attempt number. `PSP_MAX_ATTEMPTS` is now an
//! optional extra cap (unset by default), for tests and for PSPs that
//! charge per request.

use std::str::FromStr;
use std::time::Duration;

use platform::config::{FromEnv, ListenAddr, Millis, Secs};
use platform::redis::RedisUrl;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Health and readiness endpoints only.
    #[serde(default = "default_addr")]
    pub psp_connector_addr: ListenAddr,
    #[serde(default)]
    pub redis_url: RedisUrl,
    #[serde(default)]
    pub psp_url: PspUrl,
    /// Whole-request timeout of one charge call.
    #[serde(default = "default_timeout")]
    pub psp_timeout_ms: Millis,
    /// How long a transaction keeps being retried after its first attempt
    /// met a retryable outcome (timeout, refused connection, 429, 5xx);
    /// then it is `failed` and dead-lettered (`retry_budget_exhausted`).
    #[serde(default = "default_retry_budget", deserialize_with = "positive_secs")]
    pub psp_retry_budget_secs: Secs,
    /// Optional cap on charge attempts (unset: only the budget counts);
    /// reaching it fails the transaction (`max_attempts_exceeded`).
    #[serde(default, deserialize_with = "optional_at_least_one")]
    pub psp_max_attempts: Option<u32>,
    /// Transactions processed at once by this process.
    #[serde(default = "default_concurrency", deserialize_with = "at_least_one")]
    pub connector_concurrency: usize,
    /// A message pending this long with another consumer is taken over.
    #[serde(default = "default_claim_idle", deserialize_with = "positive_millis")]
    pub connector_claim_idle_ms: Millis,
    /// This process's consumer name in the group; must be unique per process.
    #[serde(default)]
    pub connector_consumer_name: Option<String>,
    /// First retry delay cap; doubled per attempt up to the max (full
    /// jitter): at most 5 s by default, so a recovered PSP is used again
    /// within seconds.
    #[serde(default = "default_retry_base", deserialize_with = "positive_millis")]
    pub connector_retry_base_ms: Millis,
    #[serde(default = "default_retry_max", deserialize_with = "positive_millis")]
    pub connector_retry_max_ms: Millis,
    /// Opens the card data core-api sealed on the queue (the same key as
    /// core-api's); the development key when unset, refused outside
    /// development.
    #[serde(default)]
    pub card_encryption_key: platform::crypto::CardKey,
    /// How often due retries are moved back onto the stream.
    #[serde(default = "default_retry_poll", deserialize_with = "positive_millis")]
    pub connector_retry_poll_ms: Millis,
}

fn default_addr() -> ListenAddr {
    ([127, 0, 0, 1], 7301).into()
}
fn default_timeout() -> Millis {
    Millis(Duration::from_millis(2000))
}
fn default_retry_budget() -> Secs {
    Secs(Duration::from_secs(300))
}
fn default_concurrency() -> usize {
    64
}
fn default_claim_idle() -> Millis {
    Millis(Duration::from_millis(15_000))
}
fn default_retry_base() -> Millis {
    Millis(Duration::from_millis(250))
}
fn default_retry_max() -> Millis {
    Millis(Duration::from_millis(5_000))
}
fn default_retry_poll() -> Millis {
    Millis(Duration::from_millis(100))
}

fn at_least_one<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + PartialOrd + From<u8>,
    T::Err: std::fmt::Display,
{
    let value: T = platform::config::parsed(deserializer)?;
    if value < T::from(1) {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(value)
}

fn optional_at_least_one<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u32>, D::Error> {
    at_least_one(deserializer).map(Some)
}

fn positive_secs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Secs, D::Error> {
    let secs = Secs::deserialize(deserializer)?;
    if secs.0.is_zero() {
        return Err(serde::de::Error::custom("must be at least 1 s"));
    }
    Ok(secs)
}

fn positive_millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Millis, D::Error> {
    let millis = Millis::deserialize(deserializer)?;
    if millis.0.is_zero() {
        return Err(serde::de::Error::custom("must be at least 1 ms"));
    }
    Ok(millis)
}

impl FromEnv for Config {
    const VARS: &'static [&'static str] = &[
        "PSP_CONNECTOR_ADDR",
        "REDIS_URL",
        "PSP_URL",
        "PSP_TIMEOUT_MS",
        "PSP_RETRY_BUDGET_SECS",
        "PSP_MAX_ATTEMPTS",
        "CONNECTOR_CONCURRENCY",
        "CONNECTOR_CLAIM_IDLE_MS",
        "CONNECTOR_CONSUMER_NAME",
        "CONNECTOR_RETRY_BASE_MS",
        "CONNECTOR_RETRY_MAX_MS",
        "CONNECTOR_RETRY_POLL_MS",
        "CARD_ENCRYPTION_KEY",
    ];

    /// The development card key only in development.
    fn check(
        &self,
        runtime: &platform::config::RuntimeConfig,
    ) -> Result<(), platform::ConfigError> {
        platform::crypto::refuse_development_key(&runtime.platform_env, &self.card_encryption_key)
    }
}

impl Config {
    /// The consumer name: configured, or `<hostname>-<pid>` so that every
    /// process (and every restart) is a distinct consumer.
    pub fn consumer_name(&self) -> String {
        match &self.connector_consumer_name {
            Some(name) if !name.trim().is_empty() => name.trim().to_owned(),
            _ => {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .or_else(|| std::env::var("HOSTNAME").ok())
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "connector".to_owned());
                format!("{host}-{}", std::process::id())
            }
        }
    }
}

/// `PSP_URL`: the PSP's base URL, `http` or `https`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspUrl(String);

impl PspUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err("must be an http:// or https:// URL with a host".to_owned());
        }
        Ok(Self(text.trim_end_matches('/').to_owned()))
    }

    /// The charge endpoint.
    pub fn charges(&self) -> String {
        format!("{}/charges", self.0)
    }
}

impl Default for PspUrl {
    fn default() -> Self {
        Self("http://127.0.0.1:7401".to_owned())
    }
}

impl<'de> Deserialize<'de> for PspUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PspUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psp_url_is_checked() {
        assert_eq!(
            PspUrl::parse("http://127.0.0.1:7401/").unwrap().charges(),
            "http://127.0.0.1:7401/charges"
        );
        assert!(PspUrl::parse("ftp://x").is_err());
        assert!(PspUrl::parse("not a url").is_err());
    }
}
