//! psp-sandbox's settings (DESIGN §3, §6).

use platform::config::{FromEnv, ListenAddr};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "default_addr")]
    pub psp_sandbox_addr: ListenAddr,
}

fn default_addr() -> ListenAddr {
    ([127, 0, 0, 1], 7401).into()
}

impl FromEnv for Config {
    const VARS: &'static [&'static str] = &["PSP_SANDBOX_ADDR"];
}
