//! The sandbox's memory of charges, per idempotency key.
//!
//! Held in process memory only: it resets when the sandbox restarts (a real
//! PSP keeps it for days; for a local stand-in a restart is a clean slate).
//! Each key has its own async lock, so concurrent requests with one key are
//! decided once and the others replay that decision, while requests with
//! different keys never wait for each other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::StatusCode;
use serde::Serialize;

/// The answer given for a key, replayed verbatim for later requests.
#[derive(Debug, Clone)]
pub struct StoredAnswer {
    /// Identifies the request body, to refuse a key reused for another one.
    pub fingerprint: u64,
    pub status: StatusCode,
    pub body: serde_json::Value,
}

/// Everything known about one idempotency key.
#[derive(Debug, Default)]
pub struct KeyState {
    pub answer: Option<StoredAnswer>,
    /// Charge decisions made under this key. The sandbox's whole point is
    /// that this never exceeds one; it is counted, not assumed, so the
    /// stats can prove it.
    pub charges: u64,
}

/// `GET /charges/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Charge decisions made (approved + declined), over all keys.
    pub total_charges: u64,
    /// The most charge decisions made under any one key.
    pub max_charges_per_key: u64,
    /// Keys with at least one charge.
    pub keys: u64,
    /// Charge requests that passed validation (decided, replayed or 503).
    pub requests: u64,
    /// Requests answered from a stored answer.
    pub replays: u64,
    /// Requests answered 503 (injected failures and the 503 test card).
    pub unavailable: u64,
}

#[derive(Debug, Default)]
pub struct Ledger {
    keys: Mutex<HashMap<String, Arc<tokio::sync::Mutex<KeyState>>>>,
    total_charges: AtomicU64,
    max_charges_per_key: AtomicU64,
    charged_keys: AtomicU64,
    requests: AtomicU64,
    replays: AtomicU64,
    unavailable: AtomicU64,
}

impl Ledger {
    /// The state of `key`, created empty on first use. Lock it for the
    /// whole decision.
    pub fn entry(&self, key: &str) -> Arc<tokio::sync::Mutex<KeyState>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut keys = self.keys.lock().expect("ledger lock poisoned");
        keys.entry(key.to_owned()).or_default().clone()
    }

    /// Records a decision made under a key (whose lock the caller holds).
    pub fn record_charge(&self, state: &mut KeyState, answer: StoredAnswer) {
        state.charges += 1;
        state.answer = Some(answer);
        if state.charges == 1 {
            self.charged_keys.fetch_add(1, Ordering::Relaxed);
        }
        self.total_charges.fetch_add(1, Ordering::Relaxed);
        self.max_charges_per_key
            .fetch_max(state.charges, Ordering::Relaxed);
    }

    pub fn record_replay(&self) {
        self.replays.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_unavailable(&self) {
        self.unavailable.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> Stats {
        Stats {
            total_charges: self.total_charges.load(Ordering::Relaxed),
            max_charges_per_key: self.max_charges_per_key.load(Ordering::Relaxed),
            keys: self.charged_keys.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            replays: self.replays.load(Ordering::Relaxed),
            unavailable: self.unavailable.load(Ordering::Relaxed),
        }
    }
}
