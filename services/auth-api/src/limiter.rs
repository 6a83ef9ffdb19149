//! The brute-force limit: at most [`MAX_FAILURES`] failed logins per
//! username in a fixed [`WINDOW`]; after that every attempt for that
//! username, right password or not, gets 429 until the window ends.
//!
//! The counter lives in Redis so it holds across restarts and replicas.
//! An attempt *reserves* a slot atomically (one Lua script: check, INCR, set
//! the expiry on the first slot) before the password is checked, and a
//! successful login gives its slot back. Checking first and counting after
//! would let a burst of parallel guesses all pass the check; reserving
//! bounds the guesses in flight too.
//!
//! Keys hold a hash of the normalised username, not the username: their
//! length is fixed whatever an attacker sends, and Redis holds no names.

use std::time::Duration;

use blake2::{Blake2s256, Digest};
use platform::redis::Redis;

use crate::credentials::Username;

/// Failed logins allowed per username per window.
pub const MAX_FAILURES: u32 = 5;
/// The window, counted from the first failure.
pub const WINDOW: Duration = Duration::from_secs(60);

const KEY_PREFIX: &str = "auth:login-failures:";

/// KEYS[1] counter; ARGV[1] limit; ARGV[2] window in ms.
/// Returns {1, count} when a slot was reserved, {0, ms left} when blocked.
const RESERVE: &str = r"
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[1]) then
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    left = tonumber(ARGV[2])
  end
  return {0, left}
end
count = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, count}
";

/// KEYS[1] counter. Gives back one slot, never going below zero.
const RELEASE: &str = r"
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then
  redis.call('DECR', KEYS[1])
end
return 0
";

/// The outcome of [`LoginLimiter::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Go ahead; call [`LoginLimiter::release`] if the login succeeds.
    Allowed,
    /// Too many failures; try again after this long.
    Blocked { retry_after: Duration },
}

#[derive(Clone)]
pub struct LoginLimiter {
    redis: Redis,
    max_failures: u32,
    window: Duration,
    reserve: redis::Script,
    release: redis::Script,
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
            release: redis::Script::new(RELEASE),
        }
    }

    /// Reserves an attempt for `username`, or says how long it is blocked.
    pub async fn reserve(&self, username: &Username) -> redis::RedisResult<Attempt> {
        let mut conn = self.redis.conn();
        let (allowed, value): (i64, i64) = self
            .reserve
            .key(key_for(username))
            .arg(self.max_failures)
            .arg(self.window.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(if allowed == 1 {
            Attempt::Allowed
        } else {
            Attempt::Blocked {
                retry_after: Duration::from_millis(value.max(0) as u64),
            }
        })
    }

    /// Gives back the slot of a successful login.
    pub async fn release(&self, username: &Username) -> redis::RedisResult<()> {
        let mut conn = self.redis.conn();
        self.release
            .key(key_for(username))
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
    }
}

/// The Redis key counting `username`'s failures: a fixed-length hash.
pub fn key_for(username: &Username) -> String {
    let digest = Blake2s256::digest(username.as_str().as_bytes());
    let mut key = String::with_capacity(KEY_PREFIX.len() + 32);
    key.push_str(KEY_PREFIX);
    for byte in &digest[..16] {
        key.push_str(&format!("{byte:02x}"));
    }
    key
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
