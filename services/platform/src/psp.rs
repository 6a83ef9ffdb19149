//! What the connector, the sandbox and core-api share about PSPs: their
//! names, the idempotency key a payment uses at each one, and the circuit
//! breaker's state as Redis keeps it (docs/architecture.md "Orchestration").

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::keyspace::breaker_field;
use crate::transaction::TransactionId;

/// A PSP's name: 1–32 of `[a-z0-9-]`, starting with a letter (`psp-a`).
/// It appears in Redis keys, idempotency keys and the API.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PspName(String);

impl PspName {
    pub fn parse(text: &str) -> Result<Self, String> {
        let valid = (1..=32).contains(&text.len())
            && text.starts_with(|c: char| c.is_ascii_lowercase())
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!(
                "{text:?} is not a PSP name (1-32 of a-z, 0-9 and -, starting with a letter)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PspName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PspName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PspName::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The `Idempotency-Key` a payment's charge carries at `psp`: one key per
/// transaction and PSP, so a retry at the same PSP replays its answer while
/// the next PSP of the route sees a key of its own.
pub fn idempotency_key(id: &TransactionId, psp: &PspName) -> String {
    format!("{id}:{psp}")
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// Too many failures: the PSP is skipped until the cool-down is over.
    Open,
    /// The cool-down is over and one probe call is under way.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Closed, Self::Open, Self::HalfOpen]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// A breaker hash as read from Redis (no hash: closed, no failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Breaker {
    pub state: BreakerState,
    /// Failures counted in the current window.
    pub failures: u64,
    /// Calls counted in the current window (successes are reported with a
    /// delay of a quarter second or so).
    pub calls: u64,
    /// When the current window began (Unix ms).
    pub window_started_ms: u64,
    /// When the breaker last opened (Unix ms), if ever.
    pub opened_at_ms: Option<u64>,
    /// When the probe under way began (Unix ms), if one ever was.
    pub probe_started_ms: Option<u64>,
}

impl Breaker {
    pub fn from_hash(hash: &HashMap<String, String>) -> Self {
        let number = |field: &str| hash.get(field).and_then(|v| v.parse::<u64>().ok());
        Self {
            state: hash
                .get(breaker_field::STATE)
                .and_then(|state| BreakerState::parse(state))
                .unwrap_or(BreakerState::Closed),
            failures: number(breaker_field::FAILURES).unwrap_or(0),
            calls: number(breaker_field::CALLS).unwrap_or(0),
            window_started_ms: number(breaker_field::WINDOW_STARTED_MS).unwrap_or(0),
            opened_at_ms: number(breaker_field::OPENED_AT_MS),
            probe_started_ms: number(breaker_field::PROBE_STARTED_MS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(PspName::parse("psp-a").is_ok());
        assert!(PspName::parse("adyen2").is_ok());
        for bad in ["", "A", "-a", "psp a", "psp:a", &"a".repeat(33)] {
            assert!(PspName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
