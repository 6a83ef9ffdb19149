//! The Redis connection every service shares.
//!
//! One multiplexed connection per process, managed so that it reconnects by
//! itself after Redis restarts: requests fail fast (and answer 503) while
//! Redis is down, and work again once it is back, with no service restart.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Deserializer};

/// `REDIS_URL`, checked when the configuration is read.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6390";

impl RedisUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("not a Redis URL: {e}"))?;
        drop(client);
        Ok(Self(url.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RedisUrl {
    fn default() -> Self {
        Self(DEFAULT_REDIS_URL.to_owned())
    }
}

impl std::fmt::Debug for RedisUrl {
    /// The URL may carry a password; show only that it is there.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.split_once('@') {
            Some((_, host)) => write!(f, "redis://***@{host}"),
            None => f.write_str(&self.0),
        }
    }
}

impl<'de> Deserialize<'de> for RedisUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        RedisUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A cheap-to-clone handle on the shared connection.
#[derive(Clone)]
pub struct Redis {
    connection: ConnectionManager,
}

impl Redis {
    /// Creates the handle without waiting for Redis: the connection is made
    /// on first use, and readiness reports whether Redis answers.
    pub fn connect(url: &RedisUrl) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            // Few, fast retries per request: callers answer 503 and clients
            // retry, rather than one request hanging for seconds.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self { connection })
    }

    /// A connection to issue commands on (a clone of the multiplexed one).
    pub fn conn(&self) -> ConnectionManager {
        self.connection.clone()
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn();
        redis::cmd("PING").query_async::<()>(&mut conn).await
    }
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redis")
    }
}
