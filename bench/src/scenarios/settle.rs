//! Settle rate (XADD → final), two connectors, sandbox latency 0: the
//! backlog the accept scenarios queued while the connectors were stopped,
//! released at once and timed to the last final status. The reference is
//! `redis-benchmark` XADD on the same Redis, run first while it is quiet.

use std::time::Duration;

use serde_json::{Value, json};

use super::ScenarioResult;
use crate::harness::{Harness, PausedConnectors};
use crate::report::{Row, thousands};
use crate::{log, reference};

const XADD_REQUESTS: u64 = 100_000;

pub struct Settle {
    backlog: u64,
    seconds: f64,
    xadd_rate: f64,
}

/// Consumes the pause: the connectors start on the backlog here.
pub async fn measure(harness: &Harness, paused: PausedConnectors<'_>) -> anyhow::Result<Settle> {
    log("redis-benchmark XADD, then settling the backlog");
    let port = harness.stack.port(6390);
    let xadd_rate =
        tokio::task::spawn_blocking(move || reference::redis_benchmark_xadd(port, XADD_REQUESTS))
            .await??;
    let backlog = harness.unsettled().await?;
    drop(paused);
    let time = harness.wait_settled(Duration::from_secs(300)).await?;
    let settle = Settle {
        backlog,
        seconds: time.as_secs_f64(),
        xadd_rate,
    };
    log(format!(
        "settled {backlog} in {:.1} s: {:.0}/s (XADD reference {xadd_rate:.0}/s)",
        settle.seconds,
        settle.rate()
    ));
    Ok(settle)
}

impl Settle {
    /// Transactions settled per second.
    pub fn rate(&self) -> f64 {
        self.backlog as f64 / self.seconds
    }
}

impl ScenarioResult for Settle {
    fn key(&self) -> &'static str {
        "settle"
    }

    fn row(&self) -> Row {
        Row {
            scenario: "settle rate (XADD → final), two connectors, sandbox latency 0".into(),
            figure: format!("{}/s", thousands(self.rate())),
            reference: format!("`redis-benchmark` XADD: {}/s", thousands(self.xadd_rate)),
            ratio: format!("{:.0} %", 100.0 * self.rate() / self.xadd_rate),
            goal: "≥ 5,000 settled/s".into(),
            met: self.rate() >= 5000.0,
        }
    }

    fn figures(&self) -> Value {
        json!({
            "transactions": self.backlog, "seconds": self.seconds,
            "rate_per_s": self.rate(), "reference_xadd_per_s": self.xadd_rate,
            "ratio": self.rate() / self.xadd_rate,
        })
    }
}
