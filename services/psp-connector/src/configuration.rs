//! psp-connector's settings (DESIGN §3).

use platform::config::{FromEnv, ListenAddr};
use platform::redis::RedisUrl;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Health and readiness endpoints only.
    #[serde(default = "default_addr")]
    pub psp_connector_addr: ListenAddr,
    #[serde(default)]
    pub redis_url: RedisUrl,
}

fn default_addr() -> ListenAddr {
    ([127, 0, 0, 1], 7301).into()
}

impl FromEnv for Config {
    const VARS: &'static [&'static str] = &["PSP_CONNECTOR_ADDR", "REDIS_URL"];
}
