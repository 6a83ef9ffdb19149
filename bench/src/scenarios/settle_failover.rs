//! Settle rate with one PSP failing: psp-a answers 503 to every charge
//! (`PUT /faults`), so each payment meets it until its circuit breaker
//! opens and then goes straight to psp-b. The backlog is queued with the
//! connectors stopped, as for the healthy settle row, whose rate in the
//! same run is the reference. Proof figures from the sandboxes: nothing
//! charged at psp-a, one charge per payment at psp-b.

use std::time::Duration;

use serde_json::{Value, json};

use super::ScenarioResult;
use crate::harness::{Harness, PausedConnectors};
use crate::log;
use crate::report::{Row, thousands};

pub struct SettleFailover {
    backlog: u64,
    seconds: f64,
    healthy_rate: f64,
    /// Requests psp-a answered 503 (before and while probing its breaker).
    refused_at_a: u64,
    charges_at_a: u64,
    charges_at_b: u64,
    /// Idempotency keys psp-b charged for the first time in this row: one
    /// per payment when no payment was charged twice.
    new_keys_at_b: u64,
    /// The most charges psp-b ever made under one key (1: never twice).
    max_charges_per_key_at_b: u64,
}

fn sandbox(harness: &Harness, default_port: u16) -> String {
    format!("http://127.0.0.1:{}", harness.stack.port(default_port))
}

async fn stats(harness: &Harness, url: &str) -> anyhow::Result<Value> {
    Ok(harness
        .client
        .get(format!("{url}/charges/stats"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

async fn set_failure_rate(harness: &Harness, url: &str, rate: f64) -> anyhow::Result<()> {
    harness
        .client
        .put(format!("{url}/faults"))
        .json(&json!({"failure_rate": rate}))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

fn count(stats: &Value, field: &str) -> u64 {
    stats[field].as_u64().unwrap_or(0)
}

pub async fn measure(harness: &Harness, healthy_rate: f64) -> anyhow::Result<SettleFailover> {
    let (a, b) = (sandbox(harness, 7401), sandbox(harness, 7402));
    log("settle with psp-a failing: queueing a backlog, connectors stopped");
    // Counted from here: with the connectors stopped nothing else charges.
    let paused = PausedConnectors::new(&harness.stack);
    set_failure_rate(harness, &a, 1.0).await?;
    let (a_before, b_before) = (stats(harness, &a).await?, stats(harness, &b).await?);
    let already = harness.unsettled().await?;
    let token = Some(harness.alice.get().await?);
    harness
        .post_load(&harness.core_apis[0], token, "failover", harness.seconds)
        .await?;
    // Everything unsettled is this backlog (the end-to-end row's last
    // payments included), all charged from here on.
    let backlog = harness.unsettled_when_quiet().await?;
    if already > 0 {
        log(format!(
            "{already} payments of the previous row join the backlog"
        ));
    }
    drop(paused);
    let time = harness.wait_settled(Duration::from_secs(300)).await?;
    let (a_after, b_after) = (stats(harness, &a).await?, stats(harness, &b).await?);
    set_failure_rate(harness, &a, 0.0).await?;
    let result = SettleFailover {
        backlog,
        seconds: time.as_secs_f64(),
        healthy_rate,
        refused_at_a: count(&a_after, "unavailable") - count(&a_before, "unavailable"),
        charges_at_a: count(&a_after, "total_charges") - count(&a_before, "total_charges"),
        charges_at_b: count(&b_after, "total_charges") - count(&b_before, "total_charges"),
        new_keys_at_b: count(&b_after, "keys") - count(&b_before, "keys"),
        max_charges_per_key_at_b: count(&b_after, "max_charges_per_key"),
    };
    log(format!(
        "settled {backlog} with psp-a failing in {:.1} s: {:.0}/s; psp-a refused {}, charged {}; psp-b charged {} ({} keys charged for the first time, at most {} charge(s) per key)",
        result.seconds,
        result.rate(),
        result.refused_at_a,
        result.charges_at_a,
        result.charges_at_b,
        result.new_keys_at_b,
        result.max_charges_per_key_at_b
    ));
    Ok(result)
}

impl SettleFailover {
    pub fn rate(&self) -> f64 {
        self.backlog as f64 / self.seconds
    }
}

impl ScenarioResult for SettleFailover {
    fn key(&self) -> &'static str {
        "settle_failover"
    }

    fn row(&self) -> Row {
        Row {
            scenario: format!(
                "settle rate, psp-a failing every charge (503): {} refused at psp-a, {} charges at psp-a, {} at psp-b for {} payments",
                self.refused_at_a, self.charges_at_a, self.charges_at_b, self.backlog
            ),
            figure: format!("{}/s", thousands(self.rate())),
            reference: format!(
                "healthy settle, same run: {}/s",
                thousands(self.healthy_rate)
            ),
            ratio: format!("{:.0} %", 100.0 * self.rate() / self.healthy_rate),
            goal: "one charge per payment, none at psp-a".into(),
            met: self.charges_at_a == 0 && self.charges_at_b == self.backlog,
        }
    }

    fn figures(&self) -> Value {
        json!({
            "transactions": self.backlog, "seconds": self.seconds,
            "rate_per_s": self.rate(), "reference_healthy_settle_per_s": self.healthy_rate,
            "ratio": self.rate() / self.healthy_rate,
            "refused_at_psp_a": self.refused_at_a,
            "charges_at_psp_a": self.charges_at_a, "charges_at_psp_b": self.charges_at_b,
            "new_keys_at_psp_b": self.new_keys_at_b,
            "max_charges_per_key_at_psp_b": self.max_charges_per_key_at_b,
        })
    }
}
