//! Settle rate (XADD → final), two connectors, sandbox latency 0: the
//! backlog the accept scenarios queued while the connectors were stopped,
//! released at once and timed to the last final status. The reference is
//! `redis-benchmark` XADD on the same Redis, run first while it is quiet.
//! Beside the rate, the CPU each process of the stack spent per settled
//! payment meanwhile: the connectors, the sandboxes, Redis, and the webhook
//! dispatcher and sink, which deliver each payment's events as they come.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::ScenarioResult;
use crate::harness::{Harness, PausedConnectors};
use crate::report::{Row, thousands};
use crate::{cpu, log, reference};

const XADD_REQUESTS: u64 = 100_000;

pub struct Settle {
    backlog: u64,
    seconds: f64,
    xadd_rate: f64,
    /// µs of CPU per settled payment, by process.
    cpu: BTreeMap<String, f64>,
}

/// Consumes the pause: the connectors start on the backlog here.
pub async fn measure(harness: &Harness, paused: PausedConnectors<'_>) -> anyhow::Result<Settle> {
    log("redis-benchmark XADD, then settling the backlog");
    let port = harness.stack.port(6390);
    let xadd_rate =
        tokio::task::spawn_blocking(move || reference::redis_benchmark_xadd(port, XADD_REQUESTS))
            .await??;
    let backlog = harness.unsettled_when_quiet().await?;
    drop(paused);
    let meter = cpu::Meter::start(running_processes(harness).await?);
    let time = harness.wait_settled(Duration::from_secs(300)).await?;
    let settle = Settle {
        backlog,
        seconds: time.as_secs_f64(),
        xadd_rate,
        cpu: meter.per_request_us(backlog as f64),
    };
    log(format!(
        "settled {backlog} in {:.1} s: {:.0}/s (XADD reference {xadd_rate:.0}/s)",
        settle.seconds,
        settle.rate()
    ));
    log(format!(
        "  CPU per settled payment: {} (all: {:.0} µs)",
        cpu::describe(&settle.cpu),
        settle.cpu.values().sum::<f64>()
    ));
    Ok(settle)
}

/// Every process of the stack with its pid, once the connectors just
/// started again have one (so their work from the start is counted).
async fn running_processes(harness: &Harness) -> anyhow::Result<Vec<(String, u32)>> {
    let stack = &harness.stack;
    for _ in 0..500 {
        let states: Vec<_> = stack
            .process_names()
            .iter()
            .map(|name| stack.state(name))
            .collect();
        let connectors_up = states
            .iter()
            .filter(|state| state.name.starts_with("psp-connector"))
            .all(|state| state.pid != 0);
        if connectors_up {
            return Ok(states
                .into_iter()
                .filter(|state| state.pid != 0)
                .map(|state| (state.name, state.pid))
                .collect());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    anyhow::bail!("the connectors did not start again within a second")
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
            "cpu_us_per_payment": self.cpu,
        })
    }
}
