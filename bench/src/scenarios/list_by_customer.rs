//! `GET /transactions?customer_id=…` on a merchant holding many
//! transactions against the same query on a merchant with few, direct to
//! one core-api, alternating, two rounds. The merchants are filled first
//! through the real create path (the preload).

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use serde_json::{Value, json};

use super::ScenarioResult;
use crate::driver::{self, Tokens};
use crate::harness::Harness;
use crate::report::{Row, thousands};
use crate::settings::CONNECTIONS;
use crate::{log, wrk};

/// Customer of the large merchant (alice/acme) and of the small one (bob/globex).
pub const BIG_CUSTOMER: &str = "cus_big";
pub const SMALL_CUSTOMER: &str = "cus_small";
/// Transactions of the small merchant.
pub const SMALL_COUNT: usize = 100;

pub fn big_path() -> String {
    format!("/transactions?customer_id={BIG_CUSTOMER}")
}

pub fn small_path() -> String {
    format!("/transactions?customer_id={SMALL_CUSTOMER}")
}

/// The preload: `count` transactions for acme/cus_big and SMALL_COUNT for
/// globex/cus_small, POSTed to both core-api replicas, 64 at a time.
pub struct Preload {
    count: usize,
    seconds: f64,
}

impl Preload {
    fn rate(&self) -> f64 {
        self.count as f64 / self.seconds
    }
}

pub async fn preload(harness: &Harness, count: usize) -> anyhow::Result<Preload> {
    log(format!(
        "preloading {count} transactions for acme/{BIG_CUSTOMER} and {SMALL_COUNT} for globex/{SMALL_CUSTOMER}"
    ));
    let big = post_customer(harness, &harness.alice, BIG_CUSTOMER, count, "preload-big").await?;
    post_customer(
        harness,
        &harness.bob,
        SMALL_CUSTOMER,
        SMALL_COUNT,
        "preload-small",
    )
    .await?;
    let preload = Preload {
        count,
        seconds: big.as_secs_f64(),
    };
    log(format!(
        "preload: {:.1} s, {:.0}/s",
        preload.seconds,
        preload.rate()
    ));
    Ok(preload)
}

/// `count` transactions of `customer`, each written once through the API.
async fn post_customer(
    harness: &Harness,
    tokens: &Arc<Tokens>,
    customer: &str,
    count: usize,
    name: &str,
) -> anyhow::Result<Duration> {
    driver::post_many(
        &harness.client,
        &harness.core_apis,
        tokens,
        customer,
        count,
        CONNECTIONS,
        &format!("{}-{name}", harness.run_id),
    )
    .await
}

pub struct ListByCustomer {
    preload: Preload,
    big_runs: Vec<wrk::Figures>,
    small_runs: Vec<wrk::Figures>,
}

pub async fn measure(harness: &Harness, preload: Preload) -> anyhow::Result<ListByCustomer> {
    log("listing latency: large vs small merchant");
    let (big_path, small_path) = (big_path(), small_path());
    check_full_page(harness, &big_path, &harness.alice.get().await?).await?;
    check_full_page(harness, &small_path, &harness.bob.get().await?).await?;
    let mut big_runs = Vec::new();
    let mut small_runs = Vec::new();
    for round in 0..2 {
        for (path, tokens, runs) in [
            (&small_path, &harness.bob, &mut small_runs),
            (&big_path, &harness.alice, &mut big_runs),
        ] {
            // A token with at least 10 s left for each run (they live 30 s).
            let figures = harness.list_load(path, tokens.get().await?).await?;
            log(format!(
                "  round {round} {path}: p50 {:.2} ms, p99 {:.2} ms, {:.0}/s",
                figures.p50_ms(),
                figures.p99_ms(),
                figures.rate()
            ));
            runs.push(figures);
        }
    }
    Ok(ListByCustomer {
        preload,
        big_runs,
        small_runs,
    })
}

/// A list response, checked to hold a full page (so both merchants' queries
/// do the same work).
async fn check_full_page(harness: &Harness, path: &str, token: &str) -> anyhow::Result<()> {
    let url = format!("{}{path}", harness.core_apis[0]);
    let json: serde_json::Value = harness
        .client
        .get(&url)
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let page = json["data"].as_array().map_or(0, Vec::len);
    if page != 20 || json["has_more"] != true {
        bail!("{url}: expected a full page of 20 with more, got {page}");
    }
    Ok(())
}

fn mean(runs: &[wrk::Figures], figure: fn(&wrk::Figures) -> f64) -> f64 {
    runs.iter().map(figure).sum::<f64>() / runs.len() as f64
}

impl ListByCustomer {
    /// The small merchant's p50 over the rounds: the reference of this
    /// scenario and of the one beside filtered lists.
    pub fn small_p50_ms(&self) -> f64 {
        mean(&self.small_runs, wrk::Figures::p50_ms)
    }

    fn big_p50_ms(&self) -> f64 {
        mean(&self.big_runs, wrk::Figures::p50_ms)
    }

    fn small_p99_ms(&self) -> f64 {
        mean(&self.small_runs, wrk::Figures::p99_ms)
    }

    fn big_p99_ms(&self) -> f64 {
        mean(&self.big_runs, wrk::Figures::p99_ms)
    }

    fn ratio(&self) -> f64 {
        self.big_p50_ms() / self.small_p50_ms()
    }
}

impl ScenarioResult for ListByCustomer {
    fn key(&self) -> &'static str {
        "list_by_customer"
    }

    fn row(&self) -> Row {
        Row {
            scenario: format!(
                "`GET /transactions?customer_id=…`, merchant holding {} transactions",
                thousands(self.preload.count as f64)
            ),
            figure: format!(
                "p50 {:.2} ms (p99 {:.2} ms)",
                self.big_p50_ms(),
                self.big_p99_ms()
            ),
            reference: format!(
                "same query, merchant with {SMALL_COUNT}: p50 {:.2} ms (p99 {:.2} ms)",
                self.small_p50_ms(),
                self.small_p99_ms()
            ),
            ratio: format!("{:.2}×", self.ratio()),
            goal: "≤ 1.5×".into(),
            met: self.ratio() <= 1.5,
        }
    }

    fn figures(&self) -> Value {
        json!({
            "large_merchant": self.big_runs.iter().map(wrk::Figures::json).collect::<Vec<_>>(),
            "small_merchant": self.small_runs.iter().map(wrk::Figures::json).collect::<Vec<_>>(),
            "large_p50_ms": self.big_p50_ms(), "small_p50_ms": self.small_p50_ms(),
            "large_p99_ms": self.big_p99_ms(), "small_p99_ms": self.small_p99_ms(),
            "ratio": self.ratio(),
            "preload_seconds": self.preload.seconds, "preload_rate_per_s": self.preload.rate(),
        })
    }
}
