//! The sandbox's memory of charges, per idempotency key.
//!
//! Held in process memory only: it resets when the sandbox restarts (a real
//! PSP keeps it for days; for a local stand-in a restart is a clean slate).
//! Each key has its own async lock, so concurrent requests with one key are
//! decided once and the others replay that decision, while requests with
//! different keys never wait for each other.
//!
//! Bounded, as a PSP's idempotency store is: an answer is replayed for
//! `PSP_IDEMPOTENCY_TTL_SECS` (default 24 h, what PSPs commonly keep) and at
//! most `PSP_LEDGER_MAX_KEYS` answers are kept, the oldest decision leaving
//! first. A key whose answer is gone is a new key: charging under it again
//! is a second charge, and the stats count it as one.
//!
//! The stats stay exact however much is evicted, because the count of
//! charges per key is kept apart from the answers, compactly: a 64-bit hash
//! of the key and a counter (about 30 bytes per key ever charged, against
//! ~250 for a stored answer). A hash collision could only make two keys
//! look like one key charged twice — a false alarm, never a hidden double
//! charge.
//!
//! A key can also be *abandoned*: a caller that lost a charge's answer
//! (timeout) asks `POST /charges/resolve` under the key, and if nothing was
//! decided the key is fenced — every later charge under it is refused — so
//! "not found" is a proof that the key never charges and the caller may
//! charge elsewhere. Fences are bounded and expire like answers.
//!
//! A stored answer holds only what the decision added (charge id, status,
//! decline code, time); the rest of the replayed body comes from the
//! request, which has the same fingerprint and so the same fields.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use serde::Serialize;

/// The decision made for a key, replayed for later requests with it.
#[derive(Debug, Clone)]
pub struct StoredAnswer {
    /// Identifies the request body, to refuse a key reused for another one.
    pub fingerprint: u64,
    pub status: StatusCode,
    pub decline_code: Option<&'static str>,
    /// The charge id (`ch_` + this UUID, simple form).
    pub charge_id: uuid::Uuid,
    pub created_at: time::OffsetDateTime,
    /// When it was decided, for the TTL.
    pub decided: Instant,
}

/// Everything kept about one idempotency key.
#[derive(Debug, Default)]
pub struct KeyState {
    answer: Option<StoredAnswer>,
}

impl KeyState {
    /// The stored answer, unless it is older than `ttl`.
    pub fn answer(&self, ttl: Duration) -> Option<&StoredAnswer> {
        self.answer
            .as_ref()
            .filter(|answer| answer.decided.elapsed() < ttl)
    }
}

/// `GET /charges/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Charge decisions made (approved + declined), over all keys.
    pub total_charges: u64,
    /// The most charge decisions made under any one key. The sandbox's
    /// whole point is that this never exceeds one; it is counted, not
    /// assumed, so the stats can prove it.
    pub max_charges_per_key: u64,
    /// Keys with at least one charge.
    pub keys: u64,
    /// Charge requests that passed validation (decided, replayed or 503).
    pub requests: u64,
    /// Requests answered from a stored answer.
    pub replays: u64,
    /// Requests answered 503 (injected failures and the 503 test card).
    pub unavailable: u64,
    /// Answers held for replay right now (at most `PSP_LEDGER_MAX_KEYS`).
    pub stored_answers: u64,
    /// Answers dropped for age or to stay within the bound.
    pub evicted_answers: u64,
    /// `POST /charges/resolve` requests.
    pub resolves: u64,
    /// Keys fenced by a resolve that found nothing, held right now.
    pub abandoned_keys: u64,
    /// Charge requests refused because their key was abandoned.
    pub refused_abandoned: u64,
}

type Slot = Arc<tokio::sync::Mutex<KeyState>>;

#[derive(Debug, Default)]
struct Inner {
    keys: HashMap<Arc<str>, Slot>,
    /// Keys whose answer was stored, oldest decision first (a key decided
    /// again after its TTL appears twice; the older entry is skipped).
    decided: VecDeque<(Instant, Arc<str>)>,
    /// Charges per key ever charged, by [`Ledger::key_hash`].
    charges: HashMap<u64, u32>,
    max_charges_per_key: u32,
    stored_answers: u64,
    /// Abandoned keys and when they were fenced, and that order for expiry.
    fences: HashMap<Arc<str>, Instant>,
    fence_order: VecDeque<(Instant, Arc<str>)>,
}

#[derive(Debug)]
pub struct Ledger {
    inner: Mutex<Inner>,
    ttl: Duration,
    max_answers: usize,
    hasher: std::collections::hash_map::RandomState,
    total_charges: AtomicU64,
    requests: AtomicU64,
    replays: AtomicU64,
    unavailable: AtomicU64,
    evicted: AtomicU64,
    resolves: AtomicU64,
    refused_abandoned: AtomicU64,
}

/// Defaults of `PSP_IDEMPOTENCY_TTL_SECS` and `PSP_LEDGER_MAX_KEYS`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_MAX_ANSWERS: usize = 50_000;

impl Default for Ledger {
    fn default() -> Self {
        Self::new(DEFAULT_TTL, DEFAULT_MAX_ANSWERS)
    }
}

impl Ledger {
    pub fn new(ttl: Duration, max_answers: usize) -> Self {
        Self {
            inner: Mutex::default(),
            ttl,
            max_answers: max_answers.max(1),
            hasher: Default::default(),
            total_charges: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            replays: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            resolves: AtomicU64::new(0),
            refused_abandoned: AtomicU64::new(0),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn key_hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("ledger lock poisoned")
    }

    /// The state of `key`, created empty on first use. Lock it for the
    /// whole decision, then drop it and call [`Ledger::release`].
    pub fn entry(&self, key: &str) -> Slot {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.slot(key)
    }

    /// [`Ledger::entry`] without counting a charge request (for lookups).
    pub fn slot(&self, key: &str) -> Slot {
        let mut inner = self.lock();
        if let Some(slot) = inner.keys.get(key) {
            return slot.clone();
        }
        let slot = Slot::default();
        inner.keys.insert(Arc::from(key), slot.clone());
        slot
    }

    /// Forgets `key` if nothing was decided under it and no request holds
    /// it (after a 503), so undecided keys take no memory.
    pub fn release(&self, key: &str) {
        let mut inner = self.lock();
        let unused = inner.keys.get(key).is_some_and(|slot| {
            // Clones are made under this lock, so a count of one cannot grow.
            Arc::strong_count(slot) == 1
                && slot.try_lock().is_ok_and(|state| state.answer.is_none())
        });
        if unused {
            inner.keys.remove(key);
        }
    }

    /// Records a decision made under `key` (whose lock the caller holds).
    pub fn record_charge(&self, key: &str, state: &mut KeyState, answer: StoredAnswer) {
        let decided = answer.decided;
        let replaced = state.answer.replace(answer).is_some();
        self.total_charges.fetch_add(1, Ordering::Relaxed);
        let hash = self.key_hash(key);
        let mut inner = self.lock();
        let count = inner.charges.entry(hash).or_insert(0);
        *count = count.saturating_add(1);
        let count = *count;
        inner.max_charges_per_key = inner.max_charges_per_key.max(count);
        if !replaced {
            inner.stored_answers += 1;
        }
        let name = inner
            .keys
            .get_key_value(key)
            .map(|(name, _)| name.clone())
            .unwrap_or_else(|| Arc::from(key));
        inner.decided.push_back((decided, name));
        self.evict(&mut inner);
    }

    /// Drops answers past their TTL, and the oldest ones beyond the bound.
    fn evict(&self, inner: &mut Inner) {
        let now = Instant::now();
        // Each turn removes a queue entry, so this ends.
        while let Some((decided, key)) = inner.decided.front().cloned() {
            let over = inner.stored_answers > self.max_answers as u64;
            if !over && now.duration_since(decided) < self.ttl {
                return;
            }
            inner.decided.pop_front();
            let Some(slot) = inner.keys.get(&key).cloned() else {
                continue;
            };
            // A request holds this key right now (replaying, or deciding
            // again after the TTL): keep it; it is queued again below.
            let Ok(state) = slot.try_lock() else {
                inner.decided.push_back((decided, key));
                return;
            };
            let current = state.answer.as_ref().map(|answer| answer.decided);
            drop(state);
            if current != Some(decided) {
                // Decided again since: a later queue entry stands for it.
                continue;
            }
            inner.stored_answers -= 1;
            self.evicted.fetch_add(1, Ordering::Relaxed);
            if Arc::strong_count(&slot) == 2 {
                inner.keys.remove(&key);
            } else if let Ok(mut state) = slot.try_lock() {
                state.answer = None;
            }
        }
    }

    /// Whether `key` was abandoned (within the TTL). Ask while holding the
    /// key's lock: fences are set under it too.
    pub fn is_abandoned(&self, key: &str) -> bool {
        let inner = self.lock();
        inner
            .fences
            .get(key)
            .is_some_and(|fenced| fenced.elapsed() < self.ttl)
    }

    /// Fences `key`, on which nothing was decided (the caller holds its
    /// lock and has checked), so no charge is ever made under it.
    pub fn abandon(&self, key: &str) {
        let now = Instant::now();
        let mut inner = self.lock();
        let name: Arc<str> = Arc::from(key);
        if inner.fences.insert(name.clone(), now).is_none() {
            inner.fence_order.push_back((now, name));
        }
        // Expired fences leave, and the oldest beyond the bound.
        while let Some((fenced, key)) = inner.fence_order.front().cloned() {
            let over = inner.fences.len() > self.max_answers;
            if !over && now.duration_since(fenced) < self.ttl {
                break;
            }
            inner.fence_order.pop_front();
            inner.fences.remove(&key);
        }
    }

    pub fn record_resolve(&self) {
        self.resolves.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_refused_abandoned(&self) {
        self.refused_abandoned.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_replay(&self) {
        self.replays.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_unavailable(&self) {
        self.unavailable.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> Stats {
        let inner = self.lock();
        Stats {
            total_charges: self.total_charges.load(Ordering::Relaxed),
            max_charges_per_key: u64::from(inner.max_charges_per_key),
            keys: inner.charges.len() as u64,
            requests: self.requests.load(Ordering::Relaxed),
            replays: self.replays.load(Ordering::Relaxed),
            unavailable: self.unavailable.load(Ordering::Relaxed),
            stored_answers: inner.stored_answers,
            evicted_answers: self.evicted.load(Ordering::Relaxed),
            resolves: self.resolves.load(Ordering::Relaxed),
            abandoned_keys: inner.fences.len() as u64,
            refused_abandoned: self.refused_abandoned.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> StoredAnswer {
        StoredAnswer {
            fingerprint: 1,
            status: StatusCode::OK,
            decline_code: None,
            charge_id: uuid::Uuid::new_v4(),
            created_at: time::OffsetDateTime::now_utc(),
            decided: Instant::now(),
        }
    }

    fn charge(ledger: &Ledger, key: &str) {
        let slot = ledger.entry(key);
        let mut state = slot.try_lock().unwrap();
        ledger.record_charge(key, &mut state, answer());
        drop(state);
        drop(slot);
        ledger.release(key);
    }

    #[test]
    fn answers_are_bounded_and_the_counts_stay_exact() {
        let ledger = Ledger::new(DEFAULT_TTL, 100);
        for i in 0..1000 {
            charge(&ledger, &format!("key-{i}"));
        }
        let stats = ledger.stats();
        assert_eq!(stats.stored_answers, 100);
        assert_eq!(stats.evicted_answers, 900);
        assert_eq!((stats.total_charges, stats.keys), (1000, 1000));
        assert_eq!(stats.max_charges_per_key, 1);
        assert_eq!(ledger.lock().keys.len(), 100, "evicted keys are forgotten");
        // An evicted key charged again is a second charge, and counted.
        charge(&ledger, "key-0");
        let stats = ledger.stats();
        assert_eq!((stats.total_charges, stats.keys), (1001, 1000));
        assert_eq!(stats.max_charges_per_key, 2);
        // A recent key still has its answer.
        let slot = ledger.entry("key-999");
        assert!(slot.try_lock().unwrap().answer(DEFAULT_TTL).is_some());
    }

    #[test]
    fn fences_are_bounded() {
        let ledger = Ledger::new(DEFAULT_TTL, 10);
        for i in 0..100 {
            ledger.abandon(&format!("k{i}"));
        }
        assert_eq!(ledger.stats().abandoned_keys, 10);
        assert!(ledger.is_abandoned("k99"));
        assert!(!ledger.is_abandoned("k0"));
    }

    #[test]
    fn undecided_keys_take_no_memory() {
        let ledger = Ledger::default();
        for i in 0..100 {
            let key = format!("k{i}");
            drop(ledger.entry(&key));
            ledger.release(&key);
        }
        assert!(ledger.lock().keys.is_empty());
    }
}
