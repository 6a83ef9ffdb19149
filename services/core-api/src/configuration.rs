//! core-api's settings (docs/architecture.md "Lifecycle").

use platform::auth::JwtSecret;
use platform::config::{FromEnv, ListenAddr};
use platform::crypto::CardKey;
use platform::redis::RedisUrl;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "default_addr")]
    pub core_api_addr: ListenAddr,
    #[serde(default)]
    pub redis_url: RedisUrl,
    pub jwt_secret: JwtSecret,
    /// Seals card data on the queue for the connector (32 bytes, hex or
    /// base64); the development key when unset, refused outside
    /// development.
    #[serde(default)]
    pub card_encryption_key: CardKey,
}

fn default_addr() -> ListenAddr {
    ([127, 0, 0, 1], 7201).into()
}

impl FromEnv for Config {
    const VARS: &'static [&'static str] = &[
        "CORE_API_ADDR",
        "REDIS_URL",
        "JWT_SECRET",
        "CARD_ENCRYPTION_KEY",
    ];

    /// The development JWT secret and card key only in development.
    fn check(
        &self,
        runtime: &platform::config::RuntimeConfig,
    ) -> Result<(), platform::ConfigError> {
        platform::auth::refuse_development_secret(
            &runtime.platform_env,
            self.jwt_secret.as_bytes(),
        )?;
        platform::crypto::refuse_development_key(&runtime.platform_env, &self.card_encryption_key)
    }
}
