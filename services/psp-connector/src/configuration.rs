//! psp-connector's settings (docs/architecture.md "Lifecycle", "Queue semantics").
//!
//! Beyond the DESIGN table: `CONNECTOR_CLAIM_IDLE_MS` (reclaim messages a
//! dead consumer left pending after this long), `CONNECTOR_CONSUMER_NAME`
//! (default `<hostname>-<pid>`), the retry budget `PSP_RETRY_BUDGET_SECS`,
//! and the retry backoff `CONNECTOR_RETRY_BASE_MS` /
//! `CONNECTOR_RETRY_MAX_MS` / `CONNECTOR_RETRY_POLL_MS`; for orchestration,
//! the PSPs by name (`PSP_URLS`), the routing rules (`ROUTING_FILE`) and the
//! circuit breaker (`BREAKER_*`).
//!
//! Retries are bounded by time, not by a count: a PSP outage lasts seconds
//! or minutes, whatever the attempt number. `PSP_MAX_ATTEMPTS` is now an
//! optional extra cap (unset by default), for tests and for PSPs that
//! charge per request.

use std::str::FromStr;
use std::time::Duration;

use platform::ConfigError;
use platform::config::{FromEnv, ListenAddr, Millis, Secs};
use platform::psp::PspName;
use platform::redis::RedisUrl;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Health and readiness endpoints only.
    #[serde(default = "default_addr")]
    pub psp_connector_addr: ListenAddr,
    #[serde(default)]
    pub redis_url: RedisUrl,
    /// One PSP, named `psp-a`: the shorthand for `PSP_URLS=psp-a@<url>`.
    #[serde(default)]
    pub psp_url: Option<PspUrl>,
    /// The PSPs by name; routes and the breaker speak of these names.
    #[serde(default)]
    pub psp_urls: Option<PspUrls>,
    /// A TOML file of routing rules ([`crate::routing`]); without one every
    /// payment tries the PSPs in `PSP_URLS` order.
    #[serde(default)]
    pub routing_file: Option<std::path::PathBuf>,
    /// Failures (unavailable or unknown outcomes) within
    /// `BREAKER_WINDOW_MS` that open a PSP's circuit breaker.
    #[serde(
        default = "default_breaker_threshold",
        deserialize_with = "at_least_one"
    )]
    pub breaker_failure_threshold: u32,
    #[serde(
        default = "default_breaker_window",
        deserialize_with = "positive_millis"
    )]
    pub breaker_window_ms: Millis,
    /// How long an open breaker skips its PSP before one probe is let through.
    #[serde(
        default = "default_breaker_cooldown",
        deserialize_with = "positive_millis"
    )]
    pub breaker_cooldown_ms: Millis,
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
fn default_breaker_threshold() -> u32 {
    5
}
fn default_breaker_window() -> Millis {
    Millis(Duration::from_millis(10_000))
}
fn default_breaker_cooldown() -> Millis {
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
        "PSP_URLS",
        "ROUTING_FILE",
        "BREAKER_FAILURE_THRESHOLD",
        "BREAKER_WINDOW_MS",
        "BREAKER_COOLDOWN_MS",
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

    /// The development card key only in development; one way of naming
    /// the PSPs; a routing file that reads and names only known PSPs.
    fn check(
        &self,
        runtime: &platform::config::RuntimeConfig,
    ) -> Result<(), platform::ConfigError> {
        platform::crypto::refuse_development_key(&runtime.platform_env, &self.card_encryption_key)?;
        self.psps()?;
        self.routing()?;
        Ok(())
    }
}

fn config_error(variable: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: variable.to_owned(),
        problem: problem.into(),
    }
}

impl Config {
    /// The PSPs: `PSP_URLS`, or `PSP_URL` as `psp-a`, or the default
    /// sandbox as `psp-a`.
    pub fn psps(&self) -> Result<PspUrls, ConfigError> {
        match (&self.psp_urls, &self.psp_url) {
            (Some(_), Some(_)) => Err(config_error(
                "PSP_URLS",
                "set PSP_URLS or PSP_URL (one PSP named psp-a), not both",
            )),
            (Some(urls), None) => Ok(urls.clone()),
            (None, url) => Ok(PspUrls(vec![(
                PspName::parse(crate::routing::SINGLE_PSP).expect("a valid name"),
                url.clone().unwrap_or_default(),
            )])),
        }
    }

    /// The routing rules from `ROUTING_FILE`, checked against the PSPs.
    pub fn routing(&self) -> Result<crate::routing::Routing, ConfigError> {
        let psps = self.psps()?;
        let names: Vec<PspName> = psps.0.iter().map(|(name, _)| name.clone()).collect();
        match &self.routing_file {
            None => Ok(crate::routing::Routing::in_order(names)),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    config_error(
                        "ROUTING_FILE",
                        format!("cannot read {}: {error}", path.display()),
                    )
                })?;
                crate::routing::Routing::parse(&text, &names)
                    .map_err(|problem| config_error("ROUTING_FILE", problem))
            }
        }
    }

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

    /// The lookup of a charge by idempotency key.
    pub fn resolve(&self) -> String {
        format!("{}/charges/resolve", self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `PSP_URLS`: the PSPs by name, `psp-a@http://…,psp-b@http://…`, in the
/// order a route without rules tries them. Not `name=url`: process-compose
/// drops an `environment` entry holding a second `=` when another file
/// overrides the process (as the dev loop's and the tests' files do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspUrls(pub Vec<(PspName, PspUrl)>);

impl PspUrls {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut psps: Vec<(PspName, PspUrl)> = Vec::new();
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let (name, url) = item
                .split_once('@')
                .ok_or_else(|| format!("{item:?} is not name@url"))?;
            let name = PspName::parse(name.trim())?;
            let url = PspUrl::parse(url.trim()).map_err(|e| format!("{name}: {e}"))?;
            if psps.iter().any(|(known, _)| *known == name) {
                return Err(format!("{name} is named twice"));
            }
            psps.push((name, url));
        }
        if psps.is_empty() {
            return Err("names no PSP".to_owned());
        }
        Ok(Self(psps))
    }
}

impl<'de> Deserialize<'de> for PspUrls {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PspUrls::parse(&text).map_err(serde::de::Error::custom)
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

    #[test]
    fn psp_urls_are_checked() {
        let urls =
            PspUrls::parse("psp-a@http://127.0.0.1:7401, psp-b@http://127.0.0.1:7402").unwrap();
        assert_eq!(urls.0.len(), 2);
        assert_eq!(urls.0[1].0.as_str(), "psp-b");
        for bad in [
            "",
            "psp-a",
            "psp-a=http://x",
            "psp-a@ftp://x",
            "PSP@http://x",
            "a@http://x,a@http://y",
        ] {
            assert!(PspUrls::parse(bad).is_err(), "{bad:?}");
        }
    }
}
