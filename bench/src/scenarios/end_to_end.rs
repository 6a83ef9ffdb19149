//! End to end, POST → `succeeded`, open loop through the gateway: from
//! when a POST was due to its record's final status, split at the record's
//! `created_at` into accept (POST through the gateway until core-api wrote
//! it) and settle (queue, connector, PSP). At half the largest rate the
//! platform sustains, and at a low rate (the pipeline's own latency).

use std::time::Duration;

use anyhow::bail;
use platform::transaction::TransactionId;
use serde_json::{Value, json};

use super::ScenarioResult;
use crate::driver::{self, Final, Sent};
use crate::harness::Harness;
use crate::log;
use crate::report::{Row, quantile, thousands};

/// alice's customer of the end-to-end payments.
pub const END_TO_END_CUSTOMER: &str = "cus_e2e";

/// The unloaded run: its rate and duration.
const LOW_RATE: f64 = 100.0;
const LOW_SECONDS: u64 = 5;

/// The figures of one open-loop run (latency in ms).
#[derive(serde::Serialize)]
pub struct Latencies {
    rate_per_s: f64,
    transactions: usize,
    total_p50: f64,
    total_p90: f64,
    total_p99: f64,
    total_max: f64,
    accept_p50: f64,
    accept_p99: f64,
    settle_p50: f64,
    settle_p99: f64,
}

pub struct EndToEnd {
    max_rate: f64,
    half_max: Latencies,
    low: Latencies,
}

/// `post_rate` (the gateway's POST rate) and `settle_rate` were measured
/// by the scenarios before. Accepting and settling share the same cores,
/// so a transaction costs 1/post + 1/settle of the machine: the max rate
/// is their harmonic combination.
pub async fn measure(
    harness: &Harness,
    post_rate: f64,
    settle_rate: f64,
) -> anyhow::Result<EndToEnd> {
    let max_rate = 1.0 / (1.0 / post_rate + 1.0 / settle_rate);
    let run_id = &harness.run_id;
    let half_max = open_loop(harness, max_rate / 2.0, harness.seconds, run_id).await?;
    let low = open_loop(harness, LOW_RATE, LOW_SECONDS, &format!("{run_id}-low")).await?;
    Ok(EndToEnd {
        max_rate,
        half_max,
        low,
    })
}

/// POSTs at `rate` for `seconds` and waits for every transaction to succeed.
async fn open_loop(
    harness: &Harness,
    rate: f64,
    seconds: u64,
    run_id: &str,
) -> anyhow::Result<Latencies> {
    log(format!(
        "end to end: {rate:.0}/s for {seconds} s through the gateway"
    ));
    let sent = driver::open_loop(
        &harness.client,
        &harness.gateway,
        &harness.alice,
        END_TO_END_CUSTOMER,
        rate,
        Duration::from_secs(seconds),
        &format!("{run_id}-e2e"),
    )
    .await?;
    let accepted: Vec<&Sent> = sent.iter().filter(|s| s.id.is_some()).collect();
    let ids: Vec<TransactionId> = accepted.iter().filter_map(|s| s.id.clone()).collect();
    let mut redis = harness.redis.clone();
    let finals = driver::final_states(&mut redis, &ids, Duration::from_secs(120)).await?;
    let not_succeeded = finals.iter().filter(|f| f.status != "succeeded").count();
    let post_failures = sent.len() - ids.len();
    if post_failures > 0 || not_succeeded > 0 {
        let mut failures = std::collections::BTreeMap::<&str, usize>::new();
        for failure in sent.iter().filter_map(|s| s.failure.as_deref()) {
            *failures.entry(failure).or_default() += 1;
        }
        // Redis' own complaints (a stalled AOF fsync blocks its writes).
        let redis_log: Vec<String> = harness
            .stack
            .log("redis")
            .lines()
            .filter(|line| line.contains('#'))
            .map(str::to_owned)
            .collect();
        bail!(
            "end to end: {post_failures} POSTs failed ({failures:?}), {not_succeeded} not succeeded; \
             Redis warnings:\n{}",
            redis_log.join("\n")
        );
    }
    let latencies = Latencies::new(rate, &accepted, &finals);
    log(format!(
        "  p50 {:.1} ms, p99 {:.1} ms (accept p50 {:.1} / p99 {:.1}, settle p50 {:.1} / p99 {:.1})",
        latencies.total_p50,
        latencies.total_p99,
        latencies.accept_p50,
        latencies.accept_p99,
        latencies.settle_p50,
        latencies.settle_p99
    ));
    Ok(latencies)
}

impl Latencies {
    /// `accepted[i]` is the POST of `finals[i]`.
    fn new(rate: f64, accepted: &[&Sent], finals: &[Final]) -> Latencies {
        let ms = |ns: i128| ns as f64 / 1e6;
        let mut total = Vec::new();
        let mut accept = Vec::new();
        let mut settle = Vec::new();
        for (record, sent) in finals.iter().zip(accepted) {
            total.push(ms(record.updated_unix_ns - sent.due_unix_ns));
            accept.push(ms(record.created_unix_ns - sent.due_unix_ns));
            settle.push(ms(record.updated_unix_ns - record.created_unix_ns));
        }
        Latencies {
            rate_per_s: rate,
            transactions: total.len(),
            total_p50: quantile(&total, 0.5),
            total_p90: quantile(&total, 0.9),
            total_p99: quantile(&total, 0.99),
            total_max: quantile(&total, 1.0),
            accept_p50: quantile(&accept, 0.5),
            accept_p99: quantile(&accept, 0.99),
            settle_p50: quantile(&settle, 0.5),
            settle_p99: quantile(&settle, 0.99),
        }
    }
}

impl ScenarioResult for EndToEnd {
    fn key(&self) -> &'static str {
        "end_to_end"
    }

    fn row(&self) -> Row {
        let (p50, p99) = (self.half_max.total_p50, self.half_max.total_p99);
        Row {
            scenario: format!(
                "end to end, POST → `succeeded`, at half the max rate ({}/s)",
                thousands(self.half_max.rate_per_s)
            ),
            figure: format!("p50 {p50:.1} ms, p99 {p99:.1} ms"),
            reference: "—".into(),
            ratio: "—".into(),
            goal: "p50 ≤ 20 ms, p99 ≤ 100 ms".into(),
            met: p50 <= 20.0 && p99 <= 100.0,
        }
    }

    fn figures(&self) -> Value {
        json!({
            "max_rate_per_s": self.max_rate, "half_max_rate": self.half_max, "low_rate": self.low,
            "latency_unit": "ms",
        })
    }
}
