//! The run's settings (environment) and the load shape every scenario shares.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

/// Connections of the POST loads (and the preload's concurrency).
pub const CONNECTIONS: usize = 64;
/// wrk threads of the POST loads.
pub const WRK_THREADS: usize = 2;

pub struct Settings {
    /// Each wrk run of the POST scenarios.
    pub seconds: u64,
    /// Transactions of the large merchant.
    pub preload: usize,
    /// Stack boots for the start-up figure.
    pub boots: usize,
    /// The JSON file.
    pub out: PathBuf,
}

fn setting<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}: not a valid number: {value:?}")),
        Err(_) => Ok(default),
    }
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Settings> {
        let target = e2e::binary_dir()
            .parent()
            .context("target dir")?
            .to_path_buf();
        Ok(Settings {
            seconds: setting("BENCH_SECONDS", 10)?,
            preload: setting("BENCH_PRELOAD", 100_000)?,
            boots: setting::<usize>("BENCH_BOOTS", 3)?.max(1),
            out: std::env::var_os("BENCH_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|| target.join("bench/latest.json")),
        })
    }

    /// `settings` of latest.json.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "wrk_seconds": self.seconds, "wrk_threads": WRK_THREADS, "connections": CONNECTIONS,
            "preload": self.preload, "small_merchant": crate::scenarios::list_by_customer::SMALL_COUNT,
            "boots": self.boots,
        })
    }
}
