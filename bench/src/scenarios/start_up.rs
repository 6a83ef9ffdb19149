//! Stack start (binaries built) → all ready: each boot from nothing (fresh
//! data dir), the median of `BENCH_BOOTS`.

use e2e::stack::Stack;
use serde_json::{Value, json};

use super::ScenarioResult;
use crate::log;
use crate::report::{Row, quantile};

pub struct StartUp {
    boots_ms: Vec<f64>,
}

/// Boots the stack `boots` times; the last one stays up for the other scenarios.
pub async fn measure(boots: usize) -> anyhow::Result<(StartUp, Stack)> {
    let mut boots_ms = Vec::new();
    for i in 1..=boots {
        log(format!("booting the stack ({i}/{boots})"));
        let booted = Stack::boot().await;
        boots_ms.push(booted.boot_time.as_secs_f64() * 1000.0);
        if i == boots {
            return Ok((StartUp { boots_ms }, booted));
        }
        tokio::task::spawn_blocking(move || drop(booted)).await?;
    }
    anyhow::bail!("no boot: BENCH_BOOTS must be at least 1")
}

impl StartUp {
    pub fn median_ms(&self) -> f64 {
        quantile(&self.boots_ms, 0.5)
    }
}

impl ScenarioResult for StartUp {
    fn key(&self) -> &'static str {
        "start_up"
    }

    fn row(&self) -> Row {
        let median_ms = self.median_ms();
        Row {
            scenario: "stack start (binaries built) → all ready".into(),
            figure: format!("{median_ms:.0} ms (median of {})", self.boots_ms.len()),
            reference: "—".into(),
            ratio: "—".into(),
            goal: "≤ 2 s".into(),
            met: median_ms <= 2000.0,
        }
    }

    fn figures(&self) -> Value {
        json!({"boot_ms": self.boots_ms, "median_ms": self.median_ms()})
    }
}
