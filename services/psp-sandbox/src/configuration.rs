//! psp-sandbox's settings (docs/architecture.md "Lifecycle"; test cards listed in the README).

use platform::config::{ConfigError, FromEnv, ListenAddr, RuntimeConfig, Secs};
use platform::psp::PspName;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "default_addr")]
    pub psp_sandbox_addr: ListenAddr,
    /// Which PSP this sandbox plays (`psp-a`, `psp-b`): in its stats and
    /// logs, so two sandboxes side by side can be told apart.
    #[serde(default = "default_name")]
    pub psp_sandbox_name: PspName,
    /// Added to every charge request, with ±10 % jitter (start value;
    /// `PUT /faults` changes it).
    #[serde(default, deserialize_with = "platform::config::parsed")]
    pub psp_latency_ms: u64,
    /// Fraction of charge requests answered 503 without charging (start
    /// value; `PUT /faults` changes it).
    #[serde(default)]
    pub psp_failure_rate: FailureRate,
    /// How long an answer is replayed for its `Idempotency-Key` (24 h).
    #[serde(default = "default_ttl")]
    pub psp_idempotency_ttl_secs: Secs,
    /// The most answers kept for replay; the oldest leave first.
    #[serde(
        default = "default_max_keys",
        deserialize_with = "platform::config::parsed"
    )]
    pub psp_ledger_max_keys: usize,
}

fn default_ttl() -> Secs {
    Secs(crate::ledger::DEFAULT_TTL)
}

fn default_max_keys() -> usize {
    crate::ledger::DEFAULT_MAX_ANSWERS
}

fn default_name() -> PspName {
    PspName::parse("psp-a").expect("a valid name")
}

fn default_addr() -> ListenAddr {
    ([127, 0, 0, 1], 7401).into()
}

impl FromEnv for Config {
    const VARS: &'static [&'static str] = &[
        "PSP_SANDBOX_ADDR",
        "PSP_SANDBOX_NAME",
        "PSP_LATENCY_MS",
        "PSP_FAILURE_RATE",
        "PSP_IDEMPOTENCY_TTL_SECS",
        "PSP_LEDGER_MAX_KEYS",
    ];

    fn check(&self, _runtime: &RuntimeConfig) -> Result<(), ConfigError> {
        if self.psp_latency_ms > crate::faults::MAX_LATENCY_MS {
            return Err(ConfigError {
                variable: "PSP_LATENCY_MS".into(),
                problem: format!(
                    "must be at most {}, got {}",
                    crate::faults::MAX_LATENCY_MS,
                    self.psp_latency_ms
                ),
            });
        }
        Ok(())
    }
}

impl Config {
    /// Defaults with the given address (tests bind port 0).
    pub fn on(addr: ListenAddr) -> Self {
        Self {
            psp_sandbox_addr: addr,
            psp_sandbox_name: default_name(),
            psp_latency_ms: 0,
            psp_failure_rate: FailureRate::default(),
            psp_idempotency_ttl_secs: default_ttl(),
            psp_ledger_max_keys: default_max_keys(),
        }
    }
}

/// A probability in `0.0..=1.0` (`PSP_FAILURE_RATE=0.3`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FailureRate(f64);

impl FailureRate {
    pub fn new(rate: f64) -> Result<Self, String> {
        if (0.0..=1.0).contains(&rate) {
            Ok(Self(rate))
        } else {
            Err(format!("must be between 0 and 1, got {rate}"))
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for FailureRate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let rate: f64 = platform::config::parsed(deserializer)?;
        FailureRate::new(rate).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_rate_is_a_probability() {
        assert!(FailureRate::new(0.3).is_ok());
        assert!(FailureRate::new(1.0).is_ok());
        assert!(FailureRate::new(-0.1).is_err());
        assert!(FailureRate::new(1.5).is_err());
        assert!(FailureRate::new(f64::NAN).is_err());
    }
}
