//! The small merchant's list again, while the large merchant runs list
//! queries with two filters (customer and status) in a loop from four
//! clients: a filtered list must not scan every record and so must not
//! slow the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::ScenarioResult;
use super::list_by_customer::{BIG_CUSTOMER, SMALL_COUNT, small_path};
use crate::harness::Harness;
use crate::report::Row;
use crate::{log, wrk};

/// Clients running the filtered lists.
const FILTERING_CLIENTS: usize = 4;

pub struct ListBesideFiltered {
    small_merchant: wrk::Figures,
    filtered_requests: u64,
    /// The small merchant's p50 alone (the list-by-customer scenario).
    alone_p50_ms: f64,
}

pub async fn measure(harness: &Harness, alone_p50_ms: f64) -> anyhow::Result<ListBesideFiltered> {
    log("listing latency: small merchant while the large one runs filtered lists");
    let stop = Arc::new(AtomicBool::new(false));
    let filtering = start_filtered_lists(harness, &stop);
    let small_merchant = harness
        .list_load(&small_path(), harness.bob.get().await?)
        .await;
    stop.store(true, Ordering::Relaxed);
    let mut filtered_requests = 0;
    for client in filtering {
        filtered_requests += client.await??;
    }
    let result = ListBesideFiltered {
        small_merchant: small_merchant?,
        filtered_requests,
        alone_p50_ms,
    };
    log(format!(
        "  small merchant p50 {:.2} ms beside {filtered_requests} filtered lists (alone {alone_p50_ms:.2} ms)",
        result.small_merchant.p50_ms()
    ));
    Ok(result)
}

/// The large merchant's two-filter lists, one after another on each
/// client until `stop`; each task answers how many it ran.
fn start_filtered_lists(
    harness: &Harness,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<anyhow::Result<u64>>> {
    let url = format!(
        "{}/transactions?customer_id={BIG_CUSTOMER}&status=failed",
        harness.core_apis[0]
    );
    (0..FILTERING_CLIENTS)
        .map(|_| {
            let (client, url, tokens, stop) = (
                harness.client.clone(),
                url.clone(),
                harness.alice.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let token = tokens.get().await?;
                    let response = client.get(&url).bearer_auth(&token).send().await?;
                    anyhow::ensure!(
                        response.status() == 200,
                        "filtered list: {}",
                        response.status()
                    );
                    done += 1;
                }
                anyhow::Ok(done)
            })
        })
        .collect()
}

impl ListBesideFiltered {
    fn ratio(&self) -> f64 {
        self.small_merchant.p50_ms() / self.alone_p50_ms
    }
}

impl ScenarioResult for ListBesideFiltered {
    fn key(&self) -> &'static str {
        "small_list_beside_filtered_lists"
    }

    fn row(&self) -> Row {
        Row {
            scenario: format!(
                "`GET /transactions?customer_id=…`, merchant with {SMALL_COUNT}, while the large merchant runs `customer_id` + `status` lists from {FILTERING_CLIENTS} clients"
            ),
            figure: format!(
                "p50 {:.2} ms ({} filtered lists meanwhile)",
                self.small_merchant.p50_ms(),
                self.filtered_requests
            ),
            reference: format!("same query alone: p50 {:.2} ms", self.alone_p50_ms),
            ratio: format!("{:.2}×", self.ratio()),
            goal: "≤ 2×".into(),
            met: self.ratio() <= 2.0,
        }
    }

    fn figures(&self) -> Value {
        json!({
            "small_merchant": self.small_merchant.json(),
            "filtered_requests": self.filtered_requests,
            "alone_p50_ms": self.alone_p50_ms,
            "ratio": self.ratio(),
        })
    }
}
