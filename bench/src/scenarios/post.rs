//! `POST /transactions` under wrk load, the platform against its
//! reference in the same run, with the CPU per request of each process
//! involved (to say what limits a rate). Two routes: through Caddy (the
//! gateway in front of core-api, against the reference Caddy with the same
//! Caddyfile in front of hello-worlds), and direct (one core-api against
//! one hello-world).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::ScenarioResult;
use crate::harness::Harness;
use crate::report::{Row, thousands};
use crate::settings::CONNECTIONS;
use crate::{cpu, log, wrk};

#[derive(Debug, Clone, Copy)]
pub enum Route {
    ThroughCaddy,
    Direct,
}

/// One side of a comparison: where the load goes and whose CPU it costs.
struct Target {
    url: String,
    token: Option<String>,
    /// Tells this load's Idempotency-Keys apart.
    name: &'static str,
    processes: Vec<(String, u32)>,
}

impl Route {
    fn reference(self, harness: &Harness) -> Target {
        let references = &harness.references;
        let (url, name, processes) = match self {
            Route::ThroughCaddy => (&references.caddy, "ref-caddy", references.pids()),
            Route::Direct => {
                let mut pids = references.pids();
                pids.retain(|(name, _)| name == "hello-0");
                (&references.hellos[0], "ref-hello", pids)
            }
        };
        Target {
            url: url.clone(),
            token: None,
            name,
            processes,
        }
    }

    async fn platform(self, harness: &Harness) -> anyhow::Result<Target> {
        let (url, name, names): (_, _, &[&str]) = match self {
            Route::ThroughCaddy => (
                &harness.gateway,
                "gateway",
                &["gateway", "core-api-0", "core-api-1", "redis"],
            ),
            Route::Direct => (&harness.core_apis[0], "core-api", &["core-api-0", "redis"]),
        };
        Ok(Target {
            url: url.clone(),
            token: Some(harness.alice.get().await?),
            name,
            processes: names
                .iter()
                .map(|n| (n.to_string(), harness.stack.pid(n)))
                .collect(),
        })
    }

    fn announce(self) -> &'static str {
        match self {
            Route::ThroughCaddy => "POST /transactions through Caddy: reference, then platform",
            Route::Direct => "POST /transactions direct: hello-world, then one core-api",
        }
    }
}

pub struct PostComparison {
    route: Route,
    platform: wrk::Figures,
    reference: wrk::Figures,
    /// Microseconds of CPU per request of each process.
    platform_cpu: BTreeMap<String, f64>,
    reference_cpu: BTreeMap<String, f64>,
}

/// The reference first, then the platform, each `harness.seconds` long.
pub async fn measure(harness: &Harness, route: Route) -> anyhow::Result<PostComparison> {
    log(route.announce());
    let (reference, reference_cpu) = metered_load(harness, route.reference(harness)).await?;
    let (platform, platform_cpu) = metered_load(harness, route.platform(harness).await?).await?;
    log(format!(
        "  CPU per request: reference {}; platform {}",
        cpu::describe(&reference_cpu),
        cpu::describe(&platform_cpu)
    ));
    Ok(PostComparison {
        route,
        platform,
        reference,
        platform_cpu,
        reference_cpu,
    })
}

async fn metered_load(
    harness: &Harness,
    target: Target,
) -> anyhow::Result<(wrk::Figures, BTreeMap<String, f64>)> {
    let meter = cpu::Meter::start(target.processes);
    let figures = harness
        .post_load(&target.url, target.token, target.name, harness.seconds)
        .await?;
    let per_request = meter.per_request_us(figures.requests);
    Ok((figures, per_request))
}

impl PostComparison {
    /// The platform's POST rate (requests/s).
    pub fn rate(&self) -> f64 {
        self.platform.rate()
    }

    fn ratio(&self) -> f64 {
        self.platform.rate() / self.reference.rate()
    }
}

/// The goal of each route: a rate ratio and a p99.
struct Goal {
    min_ratio: f64,
    max_p99_ms: f64,
}

impl ScenarioResult for PostComparison {
    fn key(&self) -> &'static str {
        match self.route {
            Route::ThroughCaddy => "post_through_caddy",
            Route::Direct => "post_direct",
        }
    }

    fn row(&self) -> Row {
        let (scenario, reference, goal) = match self.route {
            Route::ThroughCaddy => (
                "through Caddy",
                "Caddy → axum hello-world",
                Goal {
                    min_ratio: 0.60,
                    max_p99_ms: 15.0,
                },
            ),
            Route::Direct => (
                "direct to one core-api",
                "axum hello-world",
                Goal {
                    min_ratio: 0.25,
                    max_p99_ms: 5.0,
                },
            ),
        };
        let figures =
            |f: &wrk::Figures| format!("{}/s, p99 {:.1} ms", thousands(f.rate()), f.p99_ms());
        Row {
            scenario: format!("`POST /transactions` {scenario}, {CONNECTIONS} connections"),
            figure: figures(&self.platform),
            reference: format!("{reference}: {}", figures(&self.reference)),
            ratio: format!("{:.0} %", 100.0 * self.ratio()),
            goal: format!(
                "≥ {:.0} %; p99 ≤ {} ms",
                100.0 * goal.min_ratio,
                goal.max_p99_ms
            ),
            met: self.ratio() >= goal.min_ratio && self.platform.p99_ms() <= goal.max_p99_ms,
        }
    }

    fn figures(&self) -> Value {
        json!({
            "platform": self.platform.json(), "reference": self.reference.json(),
            "cpu_us_per_request": {"platform": self.platform_cpu, "reference": self.reference_cpu},
            "ratio": self.ratio(),
        })
    }
}
