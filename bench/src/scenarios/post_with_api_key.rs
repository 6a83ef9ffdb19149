//! `POST /transactions` through the gateway with an API key beside the same
//! load with alice's JWT, in one run: what verifying a key (SHA-256, the
//! per-process cache, one Redis read per key per 500 ms) costs against
//! verifying a token (HMAC) plus the user's customer check. The runs
//! alternate (token, key, token, key), so a drift of the machine during the
//! run touches both alike.

use serde_json::{Value, json};

use super::ScenarioResult;
use crate::harness::Harness;
use crate::report::{Row, thousands};
use crate::settings::CONNECTIONS;
use crate::{log, wrk};

pub struct KeyVsToken {
    token: Vec<wrk::Figures>,
    key: Vec<wrk::Figures>,
}

fn mean_rate(runs: &[wrk::Figures]) -> f64 {
    runs.iter().map(wrk::Figures::rate).sum::<f64>() / runs.len() as f64
}

fn max_p99(runs: &[wrk::Figures]) -> f64 {
    runs.iter().map(wrk::Figures::p99_ms).fold(0.0, f64::max)
}

impl KeyVsToken {
    fn ratio(&self) -> f64 {
        mean_rate(&self.key) / mean_rate(&self.token)
    }
}

/// Connectors paused, like the other POST rows.
pub async fn measure(harness: &Harness) -> anyhow::Result<KeyVsToken> {
    log("POST /transactions through Caddy: alice's JWT beside an API key");
    let key = harness.api_key("alice").await?;
    let mut result = KeyVsToken {
        token: Vec::new(),
        key: Vec::new(),
    };
    for round in 0..2 {
        // A token with at least 10 s left (they live 30 s).
        let token = harness.alice.get().await?;
        let name = format!("jwt-{round}");
        let figures = harness
            .post_load(&harness.gateway, Some(token), &name, harness.seconds)
            .await?;
        result.token.push(figures);
        let name = format!("key-{round}");
        let figures = harness
            .post_load(&harness.gateway, Some(key.clone()), &name, harness.seconds)
            .await?;
        result.key.push(figures);
    }
    log(format!(
        "  API key {:.0}/s, JWT {:.0}/s",
        mean_rate(&result.key),
        mean_rate(&result.token)
    ));
    Ok(result)
}

impl ScenarioResult for KeyVsToken {
    fn key(&self) -> &'static str {
        "post_with_api_key"
    }

    fn row(&self) -> Row {
        let ratio = self.ratio();
        Row {
            scenario: format!(
                "`POST /transactions` through Caddy with an API key, {CONNECTIONS} connections"
            ),
            figure: format!(
                "{}/s, p99 {:.1} ms",
                thousands(mean_rate(&self.key)),
                max_p99(&self.key)
            ),
            reference: format!(
                "the same with alice's JWT: {}/s, p99 {:.1} ms",
                thousands(mean_rate(&self.token)),
                max_p99(&self.token)
            ),
            ratio: format!("{:.0} %", 100.0 * ratio),
            goal: "≥ 90 %".into(),
            met: ratio >= 0.90,
        }
    }

    fn figures(&self) -> Value {
        let runs = |runs: &[wrk::Figures]| {
            runs.iter()
                .map(|f| {
                    json!({"rate_per_s": f.rate(), "p50_ms": f.p50_ms(), "p99_ms": f.p99_ms(),
                           "requests": f.requests})
                })
                .collect::<Vec<_>>()
        };
        json!({
            "api_key": runs(&self.key), "jwt": runs(&self.token),
            "api_key_rate_per_s": mean_rate(&self.key), "jwt_rate_per_s": mean_rate(&self.token),
            "ratio": self.ratio(),
        })
    }
}
