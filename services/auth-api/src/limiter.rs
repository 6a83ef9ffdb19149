//! The brute-force limit: at most [`MAX_FAILURES`] failed logins per
//! username in a [`WINDOW`] that starts at the first failure; after that
//! every attempt for that username, right password or not, gets 429 until
//! the window ends.
//!
//! The counters live in Redis (one hash per username: `failures`,
//! `inflight`) so the limit holds across restarts and replicas. Each
//! attempt *reserves* a slot before its password is checked and *finishes*
//! it afterwards, each step one atomic Lua script. A slot is free only while
//! `failures + inflight < MAX_FAILURES`, so even a burst of parallel guesses
//! gets at most five checked; a legitimate login that finds the slots taken
//! by checks still in flight waits for them briefly instead of being
//! refused. Successful logins never count as failures.
//!
//! Keys hold a hash of the normalised username, not the username: their
//! length is fixed whatever an attacker sends, and Redis holds no names.
//! Every key expires within the window, so a crashed process cannot leave
//! a slot taken for longer than that.

use std::fmt::Write;
use std::time::{Duration, Instant};

use blake2::{Blake2s256, Digest};
use platform::keyspace::{self, login_field};
use platform::redis::Redis;

use crate::credentials::Username;

/// Failed logins allowed per username per window.
pub const MAX_FAILURES: u32 = 5;
/// The window, counted from the first failure.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long an attempt waits for a slot held by checks still in flight.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// KEYS[1] the hash; ARGV[1] limit; ARGV[2] window in ms; ARGV[3], ARGV[4]
/// the failures and in-flight field names ([`login_field`]).
/// {1, 0}: slot reserved; {0, ms left}: blocked; {2, 0}: all slots in flight.
const RESERVE: &str = r"
local failures = tonumber(redis.call('HGET', KEYS[1], ARGV[3]) or '0')
if failures >= tonumber(ARGV[1]) then
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    left = tonumber(ARGV[2])
  end
  return {0, left}
end
local inflight = tonumber(redis.call('HGET', KEYS[1], ARGV[4]) or '0')
if failures + inflight >= tonumber(ARGV[1]) then
  return {2, 0}
end
redis.call('HINCRBY', KEYS[1], ARGV[4], 1)
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, 0}
";

/// KEYS[1] the hash; ARGV[1] 1 if the login failed; ARGV[2] window in ms;
/// ARGV[3], ARGV[4] the failures and in-flight field names.
/// Frees the slot and, for a failure, counts it; the first failure starts
/// the window.
const FINISH: &str = r"
local inflight = tonumber(redis.call('HGET', KEYS[1], ARGV[4]) or '0')
if inflight > 0 then
  redis.call('HINCRBY', KEYS[1], ARGV[4], -1)
end
if ARGV[1] == '1' then
  if redis.call('HINCRBY', KEYS[1], ARGV[3], 1) == 1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
end
return 0
";

/// The outcome of [`LoginLimiter::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Go ahead, then call [`LoginLimiter::finish`] with the outcome.
    Allowed,
    /// Refused; try again after this long.
    Blocked { retry_after: Duration },
}

#[derive(Clone)]
pub struct LoginLimiter {
    redis: Redis,
    max_failures: u32,
    window: Duration,
    reserve: redis::Script,
    finish: redis::Script,
}

impl LoginLimiter {
    /// The product limit: [`MAX_FAILURES`] per [`WINDOW`].
    pub fn new(redis: Redis) -> Self {
        Self::with_limit(redis, MAX_FAILURES, WINDOW)
    }

    pub fn with_limit(redis: Redis, max_failures: u32, window: Duration) -> Self {
        Self {
            redis,
            max_failures,
            window,
            reserve: redis::Script::new(RESERVE),
            finish: redis::Script::new(FINISH),
        }
    }

    fn window_ms(&self) -> u64 {
        self.window.as_millis() as u64
    }

    /// Reserves a slot for one password check of `username`, waiting up to
    /// [`MAX_WAIT`] while all free slots are held by checks in flight.
    pub async fn reserve(&self, username: &Username) -> redis::RedisResult<Attempt> {
        let key = key_for(username);
        let started = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            let mut conn = self.redis.conn();
            let (outcome, left_ms): (i64, i64) = self
                .reserve
                .key(&key)
                .arg(self.max_failures)
                .arg(self.window_ms())
                .arg(login_field::FAILURES)
                .arg(login_field::IN_FLIGHT)
                .invoke_async(&mut conn)
                .await?;
            match outcome {
                1 => return Ok(Attempt::Allowed),
                0 => {
                    return Ok(Attempt::Blocked {
                        retry_after: Duration::from_millis(left_ms.max(0) as u64),
                    });
                }
                _ if started.elapsed() >= MAX_WAIT => {
                    return Ok(Attempt::Blocked {
                        retry_after: Duration::from_secs(1),
                    });
                }
                _ => {
                    // Checks take tens of milliseconds; back off so a crowd
                    // of waiters does not turn into a flood of scripts.
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
            }
        }
    }

    /// Frees the slot of a finished check, counting it if it `failed`.
    pub async fn finish(&self, username: &Username, failed: bool) -> redis::RedisResult<()> {
        let mut conn = self.redis.conn();
        self.finish
            .key(key_for(username))
            .arg(u8::from(failed))
            .arg(self.window_ms())
            .arg(login_field::FAILURES)
            .arg(login_field::IN_FLIGHT)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
    }
}

/// The Redis hash counting `username`'s attempts: a fixed-length key.
pub fn key_for(username: &Username) -> String {
    let digest = Blake2s256::digest(username.as_str().as_bytes());
    let mut hex = String::with_capacity(32);
    for byte in &digest[..16] {
        write!(hex, "{byte:02x}").expect("writing to a String");
    }
    keyspace::login_attempts(&hex)
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub fn retry_after_secs(left: Duration) -> u64 {
    left.as_millis().div_ceil(1000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_a_fixed_length_and_follow_normalisation() {
        let short = key_for(&Username::parse("a").unwrap());
        let long = key_for(&Username::parse(&"x".repeat(64)).unwrap());
        assert_eq!(short.len(), long.len());
        assert_eq!(
            key_for(&Username::parse(" Alice").unwrap()),
            key_for(&Username::parse("alice").unwrap())
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(59_001)), 60);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
