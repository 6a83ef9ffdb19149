//! `POST /transactions` through the gateway with an API key beside the same
//! load with a user's JWT, in one run: what verifying a key (SHA-256, the
//! per-process cache, a Redis read per key per 500 ms) costs against
//! verifying a token (HMAC) plus the user's customer check. Also links the
//! dev users to the customers the other scenarios pay for: a user token
//! acts only for linked customers.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::json;

use crate::driver;
use crate::report::{Row, thousands};
use crate::wrk;

/// A new API key of `admin`'s merchant.
async fn create_key(
    client: &reqwest::Client,
    gateway: &str,
    admin: &str,
) -> anyhow::Result<String> {
    let token = driver::Tokens::new(client, gateway, admin).get().await?;
    let response = client
        .post(format!("{gateway}/auth/api_keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "bench"}))
        .send()
        .await?;
    if response.status() != 201 {
        bail!("POST /auth/api_keys answered {}", response.status());
    }
    let created: serde_json::Value = response.json().await?;
    Ok(created["key"].as_str().context("no key")?.to_owned())
}

/// Links each `(admin, user, customers)`: `user` of `admin`'s merchant to
/// `customers`, with a key `admin` creates.
pub async fn link_customers(
    client: &reqwest::Client,
    gateway: &str,
    links: &[(&str, &str, &[&str])],
) -> anyhow::Result<()> {
    for (admin, user, customers) in links {
        let key = create_key(client, gateway, admin).await?;
        for customer in *customers {
            let response = client
                .put(format!("{gateway}/auth/users/{user}/customers/{customer}"))
                .bearer_auth(&key)
                .send()
                .await?;
            if response.status() != 200 {
                bail!(
                    "linking {user} to {customer} answered {}",
                    response.status()
                );
            }
        }
    }
    Ok(())
}

/// Both loads, each run twice, alternating (token, key, token, key), so a
/// drift of the machine during the run touches both alike.
pub struct KeyVsToken {
    pub token: Vec<wrk::Figures>,
    pub key: Vec<wrk::Figures>,
}

impl KeyVsToken {
    fn mean_rate(runs: &[wrk::Figures]) -> f64 {
        runs.iter().map(wrk::Figures::rate).sum::<f64>() / runs.len() as f64
    }

    fn max_p99(runs: &[wrk::Figures]) -> f64 {
        runs.iter().map(wrk::Figures::p99_ms).fold(0.0, f64::max)
    }

    pub fn ratio(&self) -> f64 {
        Self::mean_rate(&self.key) / Self::mean_rate(&self.token)
    }

    /// The table row: the key's rate, the token's as its reference.
    pub fn row(&self, connections: usize) -> Row {
        let ratio = self.ratio();
        Row {
            scenario: format!(
                "`POST /transactions` through Caddy with an API key, {connections} connections"
            ),
            figure: format!(
                "{}/s, p99 {:.1} ms",
                thousands(Self::mean_rate(&self.key)),
                Self::max_p99(&self.key)
            ),
            reference: format!(
                "the same with alice's JWT: {}/s, p99 {:.1} ms",
                thousands(Self::mean_rate(&self.token)),
                Self::max_p99(&self.token)
            ),
            ratio: format!("{:.0} %", 100.0 * ratio),
            goal: "≥ 90 %".into(),
            met: ratio >= 0.90,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let runs = |runs: &[wrk::Figures]| {
            runs.iter()
                .map(|f| json!({"rate_per_s": f.rate(), "p50_ms": f.p50_ms(), "p99_ms": f.p99_ms(), "requests": f.requests}))
                .collect::<Vec<_>>()
        };
        json!({
            "api_key": runs(&self.key), "jwt": runs(&self.token),
            "api_key_rate_per_s": Self::mean_rate(&self.key),
            "jwt_rate_per_s": Self::mean_rate(&self.token),
            "ratio": self.ratio(),
        })
    }
}

/// Settings of [`measure`]: the wrk script, the gateway, seconds per run,
/// wrk threads and connections, and a prefix for the Idempotency-Keys.
pub struct Setup<'a> {
    pub script: &'a Path,
    pub gateway: &'a str,
    pub seconds: u64,
    pub threads: usize,
    pub connections: usize,
    pub run_id: &'a str,
}

/// POSTs for `customer` (alice must be linked to it) with alice's JWT and
/// with an API key of acme, alternating.
pub async fn measure(
    client: &reqwest::Client,
    setup: &Setup<'_>,
    customer: &str,
) -> anyhow::Result<KeyVsToken> {
    let key = create_key(client, setup.gateway, "alice").await?;
    let tokens = driver::Tokens::new(client, setup.gateway, "alice");
    let body = driver::body(customer);
    let mut result = KeyVsToken {
        token: Vec::new(),
        key: Vec::new(),
    };
    for round in 0..2 {
        for with_key in [false, true] {
            // A token with at least 10 s left (they live 30 s).
            let credential = if with_key {
                key.clone()
            } else {
                tokens.get().await?
            };
            let run_id = format!(
                "{}-{}-{round}",
                setup.run_id,
                if with_key { "key" } else { "jwt" }
            );
            let (script, url, body) = (
                setup.script.to_owned(),
                setup.gateway.to_owned(),
                body.clone(),
            );
            let (seconds, threads, connections) = (setup.seconds, setup.threads, setup.connections);
            let figures = tokio::task::spawn_blocking(move || {
                wrk::run(
                    &script,
                    &wrk::Load {
                        url: &url,
                        method: "POST",
                        path: "/transactions",
                        token: Some(&credential),
                        body: Some(&body),
                        run_id: &run_id,
                        threads,
                        connections,
                        seconds,
                    },
                )
            })
            .await??;
            if with_key {
                result.key.push(figures);
            } else {
                result.token.push(figures);
            }
        }
    }
    Ok(result)
}
