//! auth-api's settings (docs/architecture.md "Lifecycle").

use std::path::PathBuf;
use std::time::Duration;

use platform::auth::JwtSecret;
use platform::config::{FromEnv, ListenAddr};
use platform::redis::RedisUrl;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "default_addr")]
    pub auth_api_addr: ListenAddr,
    #[serde(default)]
    pub redis_url: RedisUrl,
    pub jwt_secret: JwtSecret,
    #[serde(default)]
    pub auth_token_ttl_secs: TokenTtl,
    /// Read and checked by `build` (see [`crate::users`]); a problem with it
    /// is still reported as `config error: AUTH_USERS_FILE: …`, exit 2.
    #[serde(default = "default_users_file")]
    pub auth_users_file: PathBuf,
    /// Logins that may wait for a free core while others are hashed (one
    /// per core); more at once are answered 503 `server_busy`. Default 8
    /// per core.
    #[serde(default, deserialize_with = "optional_count")]
    pub auth_login_queue: Option<usize>,
}

fn optional_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<usize>, D::Error> {
    platform::config::parsed(deserializer).map(Some)
}

fn default_addr() -> ListenAddr {
    ([127, 0, 0, 1], 7101).into()
}

fn default_users_file() -> PathBuf {
    PathBuf::from("config/users.toml")
}

impl FromEnv for Config {
    const VARS: &'static [&'static str] = &[
        "AUTH_API_ADDR",
        "REDIS_URL",
        "JWT_SECRET",
        "AUTH_TOKEN_TTL_SECS",
        "AUTH_USERS_FILE",
        "AUTH_LOGIN_QUEUE",
    ];

    /// The development JWT secret only in development.
    fn check(
        &self,
        runtime: &platform::config::RuntimeConfig,
    ) -> Result<(), platform::ConfigError> {
        platform::auth::refuse_development_secret(&runtime.platform_env, self.jwt_secret.as_bytes())
    }
}

/// `AUTH_TOKEN_TTL_SECS`: how long an issued token is valid.
///
/// Tokens cannot be revoked, so their lifetime is their blast radius: the
/// value must be at least one second and at most [`TokenTtl::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenTtl(Duration);

impl TokenTtl {
    pub const DEFAULT: Duration = Duration::from_secs(30);
    /// The verifier refuses longer-lived tokens, so this is its maximum.
    pub const MAX: Duration = platform::auth::MAX_TOKEN_LIFETIME;

    pub fn from_secs(secs: u64) -> Result<Self, String> {
        let ttl = Duration::from_secs(secs);
        if ttl.is_zero() || ttl > Self::MAX {
            return Err(format!(
                "must be between 1 and {} seconds (got {secs})",
                Self::MAX.as_secs()
            ));
        }
        Ok(Self(ttl))
    }

    pub fn duration(self) -> Duration {
        self.0
    }
}

impl Default for TokenTtl {
    fn default() -> Self {
        Self(Self::DEFAULT)
    }
}

impl<'de> Deserialize<'de> for TokenTtl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let secs: u64 = platform::config::parsed(deserializer)?;
        TokenTtl::from_secs(secs).map_err(serde::de::Error::custom)
    }
}
