//! A circuit breaker per PSP, shared by every connector through Redis
//! (`psp:{name}:breaker`, docs/architecture.md "Orchestration").
//!
//! Closed, it counts calls and failures (unavailable or unknown outcomes)
//! in a fixed window; `BREAKER_FAILURE_THRESHOLD` failures within
//! `BREAKER_WINDOW_MS` open it, provided they are at least half the calls
//! of the window — so a PSP that fails one card in ten (the sandbox's 503
//! test card, a flaky network) stays in use however busy it is. Open, the PSP is skipped for `BREAKER_COOLDOWN_MS`; then one
//! call — whichever connector claims it first — is let through as a probe
//! (half open). The probe's success closes the breaker, its failure opens
//! it again; a probe that never reports (its connector died) is stale
//! after twice the PSP timeout and another is let through.
//!
//! Every change is one Lua script, so connectors never race each other.
//! Each connector reads the breakers every [`REFRESH`] into a local
//! snapshot, so while every breaker is closed — the happy path — deciding
//! whether to call a PSP and reporting a success cost no Redis round trip:
//! successes are counted locally and added to the window with the next
//! failure report or refresh.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use platform::keyspace::{self, breaker_field};
use platform::psp::{Breaker, BreakerState, PspName};
use platform::redis::Redis;

use crate::stream::now_ms;

/// How often the local snapshot is read again.
pub const REFRESH: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    pub threshold: u32,
    pub window: Duration,
    pub cooldown: Duration,
    /// A probe without an outcome after this long is given up on.
    pub probe_timeout: Duration,
}

/// The breakers of every PSP this connector knows.
pub struct Breakers {
    redis: Redis,
    policy: BreakerPolicy,
    snapshots: BTreeMap<PspName, Mutex<Breaker>>,
    /// Successes seen while closed and not yet added to the window.
    successes: BTreeMap<PspName, AtomicU64>,
}

/// KEYS: the breaker. ARGV: mode (`probe`, `success`, `failure` or
/// `tally`), now (ms), threshold, window, cool-down, probe timeout (ms),
/// successes not yet counted, then the state, failures, calls,
/// window-start, opened-at and probe-start field names. Returns the state
/// after the change and whether the caller may call the PSP.
const SCRIPT: &str = r#"
local mode, now = ARGV[1], tonumber(ARGV[2])
local threshold, window = tonumber(ARGV[3]), tonumber(ARGV[4])
local cooldown, probe_timeout = tonumber(ARGV[5]), tonumber(ARGV[6])
local successes = tonumber(ARGV[7])
local f_state, f_failures, f_calls = ARGV[8], ARGV[9], ARGV[10]
local f_window, f_opened, f_probe = ARGV[11], ARGV[12], ARGV[13]
local h = redis.call('HMGET', KEYS[1], f_state, f_failures, f_calls, f_window, f_opened, f_probe)
local state = h[1] or 'closed'
local failures, calls = tonumber(h[2] or '0'), tonumber(h[3] or '0')
local started = tonumber(h[4] or '0')
local opened, probe = tonumber(h[5] or '0'), tonumber(h[6] or '0')
if mode == 'probe' then
  if (state == 'open' and now >= opened + cooldown)
    or (state == 'half_open' and now >= probe + probe_timeout) then
    redis.call('HSET', KEYS[1], f_state, 'half_open', f_probe, now)
    return {'half_open', 1}
  end
  if state == 'closed' then return {'closed', 1} end
  return {state, 0}
end
if mode == 'success' and state == 'half_open' then
  -- The probe's success closes; a fresh window starts.
  redis.call('HSET', KEYS[1], f_state, 'closed', f_failures, 0, f_calls, 0, f_window, now)
  return {'closed', 1}
end
if mode == 'failure' and state == 'half_open' then
  redis.call('HSET', KEYS[1], f_state, 'open', f_opened, now)
  return {'open', 0}
end
-- While open, reports change nothing: the cool-down, then a probe, decide.
if state ~= 'closed' then return {state, 0} end
if now - started >= window then started = now; failures = 0; calls = 0 end
calls = calls + successes
if mode == 'failure' then failures = failures + 1; calls = calls + 1 end
redis.call('HSET', KEYS[1], f_failures, failures, f_calls, calls, f_window, started)
if mode == 'failure' and failures >= threshold and failures * 2 >= calls then
  redis.call('HSET', KEYS[1], f_state, 'open', f_opened, now)
  return {'open', 0}
end
return {'closed', 1}
"#;

#[derive(Debug, Clone, Copy)]
enum Mode {
    Probe,
    Success,
    Failure,
    /// Adds the successes counted locally to the window.
    Tally,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Probe => "probe",
            Mode::Success => "success",
            Mode::Failure => "failure",
            Mode::Tally => "tally",
        }
    }
}

impl Breakers {
    pub fn new<'a>(
        redis: Redis,
        policy: BreakerPolicy,
        psps: impl IntoIterator<Item = &'a PspName>,
    ) -> Self {
        let closed = Breaker::from_hash(&Default::default());
        let psps: Vec<PspName> = psps.into_iter().cloned().collect();
        Self {
            redis,
            policy,
            snapshots: psps
                .iter()
                .map(|psp| (psp.clone(), Mutex::new(closed)))
                .collect(),
            successes: psps
                .into_iter()
                .map(|psp| (psp, AtomicU64::new(0)))
                .collect(),
        }
    }

    fn snapshot(&self, psp: &PspName) -> Option<Breaker> {
        self.snapshots
            .get(psp)
            .map(|snapshot| *snapshot.lock().expect("breaker snapshot lock"))
    }

    fn set_state(&self, psp: &PspName, state: BreakerState, now: u64) {
        if let Some(snapshot) = self.snapshots.get(psp) {
            let mut snapshot = snapshot.lock().expect("breaker snapshot lock");
            if snapshot.state != state {
                match state {
                    BreakerState::Open => snapshot.opened_at_ms = Some(now),
                    BreakerState::HalfOpen => snapshot.probe_started_ms = Some(now),
                    BreakerState::Closed => {}
                }
            }
            snapshot.state = state;
        }
    }

    /// Whether `psp` may be called now; claims the probe when its
    /// cool-down is over. A PSP this connector does not know is never
    /// admitted.
    pub async fn admit(&self, psp: &PspName) -> redis::RedisResult<bool> {
        let Some(snapshot) = self.snapshot(psp) else {
            return Ok(false);
        };
        let now = now_ms();
        let waiting = match snapshot.state {
            BreakerState::Closed => return Ok(true),
            BreakerState::Open => {
                now < snapshot.opened_at_ms.unwrap_or(0) + millis(self.policy.cooldown)
            }
            BreakerState::HalfOpen => {
                now < snapshot.probe_started_ms.unwrap_or(0) + millis(self.policy.probe_timeout)
            }
        };
        if waiting {
            return Ok(false);
        }
        self.run(psp, Mode::Probe).await
    }

    /// Reports a call's outcome: `healthy` unless the PSP was unavailable
    /// or did not answer in time.
    pub async fn record(&self, psp: &PspName, healthy: bool) -> redis::RedisResult<()> {
        let closed = self
            .snapshot(psp)
            .is_none_or(|snapshot| snapshot.state == BreakerState::Closed);
        match (healthy, closed) {
            // The happy path: counted here, told to Redis later.
            (true, true) => {
                if let Some(count) = self.successes.get(psp) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            (true, false) => self.run(psp, Mode::Success).await.map(drop),
            (false, _) => self.run(psp, Mode::Failure).await.map(drop),
        }
    }

    async fn run(&self, psp: &PspName, mode: Mode) -> redis::RedisResult<bool> {
        static SCRIPT_: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(SCRIPT));
        let now = now_ms();
        let successes = match mode {
            Mode::Failure | Mode::Tally => self
                .successes
                .get(psp)
                .map_or(0, |count| count.swap(0, Ordering::Relaxed)),
            Mode::Probe | Mode::Success => 0,
        };
        let (state, admitted): (String, u8) = SCRIPT_
            .key(keyspace::breaker(psp))
            .arg(mode.as_str())
            .arg(now)
            .arg(self.policy.threshold)
            .arg(millis(self.policy.window))
            .arg(millis(self.policy.cooldown))
            .arg(millis(self.policy.probe_timeout))
            .arg(successes)
            .arg(breaker_field::STATE)
            .arg(breaker_field::FAILURES)
            .arg(breaker_field::CALLS)
            .arg(breaker_field::WINDOW_STARTED_MS)
            .arg(breaker_field::OPENED_AT_MS)
            .arg(breaker_field::PROBE_STARTED_MS)
            .invoke_async(&mut self.redis.conn())
            .await?;
        let state = match state.as_str() {
            "open" => BreakerState::Open,
            "half_open" => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        };
        if !matches!(mode, Mode::Success) && state != BreakerState::Closed {
            tracing::debug!(%psp, state = state.as_str(), "breaker");
        }
        self.set_state(psp, state, now);
        Ok(admitted == 1)
    }

    /// Adds the successes counted locally to the windows, then reads every
    /// breaker into the local snapshot.
    pub async fn refresh(&self) -> redis::RedisResult<()> {
        for (psp, count) in &self.successes {
            if count.load(Ordering::Relaxed) > 0 {
                self.run(psp, Mode::Tally).await?;
            }
        }
        let mut pipe = redis::pipe();
        for psp in self.snapshots.keys() {
            pipe.hgetall(keyspace::breaker(psp));
        }
        let hashes: Vec<std::collections::HashMap<String, String>> =
            pipe.query_async(&mut self.redis.conn()).await?;
        for ((psp, snapshot), hash) in self.snapshots.iter().zip(hashes) {
            let fresh = Breaker::from_hash(&hash);
            let mut snapshot = snapshot.lock().expect("breaker snapshot lock");
            if snapshot.state != fresh.state {
                tracing::info!(%psp, state = fresh.state.as_str(), "circuit breaker changed");
            }
            *snapshot = fresh;
        }
        Ok(())
    }

    /// Publishes `directory` (name → URL) for `GET /psps`, then refreshes
    /// the snapshot every [`REFRESH`] until `shutdown`.
    pub async fn run_refresher(
        self: Arc<Self>,
        directory: Vec<(PspName, String)>,
        shutdown: platform::Shutdown,
    ) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let mut published = false;
        let mut ticks = tokio::time::interval(REFRESH);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = ticks.tick() => {}
            }
            if !published {
                let mut conn = self.redis.conn();
                let fields: Vec<(String, String)> = directory
                    .iter()
                    .map(|(name, url)| (name.to_string(), url.clone()))
                    .collect();
                let written: redis::RedisResult<()> = redis::cmd("HSET")
                    .arg(keyspace::PSP_DIRECTORY)
                    .arg(fields)
                    .query_async(&mut conn)
                    .await;
                published = written.is_ok();
            }
            if let Err(error) = self.refresh().await {
                tracing::debug!(%error, "breaker refresh failed; keeping the last snapshot");
            }
        }
    }
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}
