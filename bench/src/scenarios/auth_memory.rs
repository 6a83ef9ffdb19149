//! auth-api's resident memory after 1,000 logins, 60 at a time, through
//! the gateway (argon2id allocates 19 MiB per check), against its idle
//! memory at boot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::ScenarioResult;
use crate::harness::Harness;
use crate::log;
use crate::report::{Row, thousands};

const LOGINS: usize = 1000;
const AT_A_TIME: usize = 60;

pub struct AuthMemory {
    idle_kib: u64,
    after_kib: u64,
    /// How many logins got each HTTP status.
    answers: BTreeMap<u16, u32>,
}

/// `idle_kib`: auth-api's resident memory at boot (the idle-memory scenario).
pub async fn measure(harness: &Harness, idle_kib: u64) -> anyhow::Result<AuthMemory> {
    log(format!(
        "auth-api memory: {} logins, {AT_A_TIME} at a time",
        thousands(LOGINS as f64)
    ));
    let answers = login_burst(harness).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_kib = harness
        .stack
        .resident_memory_kib()
        .get("auth-api")
        .copied()
        .unwrap_or(0);
    let result = AuthMemory {
        idle_kib,
        after_kib,
        answers,
    };
    log(format!(
        "  auth-api RSS {:.1} MB idle → {:.1} MB 2 s after {} logins (answers {:?})",
        result.idle_mb(),
        result.after_mb(),
        thousands(LOGINS as f64),
        result.answers
    ));
    Ok(result)
}

/// LOGINS logins of alice and bob in turn, AT_A_TIME at once; the count of
/// each answer's status.
async fn login_burst(harness: &Harness) -> anyhow::Result<BTreeMap<u16, u32>> {
    let slots = Arc::new(Semaphore::new(AT_A_TIME));
    let mut attempts = Vec::new();
    for i in 0..LOGINS {
        let (client, slots) = (harness.client.clone(), slots.clone());
        let url = format!("{}/auth/token", harness.gateway);
        attempts.push(tokio::spawn(async move {
            let _slot = slots.acquire().await?;
            let user = if i % 2 == 0 { "alice" } else { "bob" };
            let response = client
                .post(url)
                .form(&[("username", user), ("password", "password")])
                .send()
                .await?;
            anyhow::Ok(response.status().as_u16())
        }));
    }
    let mut answers = BTreeMap::new();
    for attempt in attempts {
        *answers.entry(attempt.await??).or_default() += 1;
    }
    Ok(answers)
}

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

impl AuthMemory {
    fn idle_mb(&self) -> f64 {
        mb(self.idle_kib)
    }

    fn after_mb(&self) -> f64 {
        mb(self.after_kib)
    }
}

impl ScenarioResult for AuthMemory {
    fn key(&self) -> &'static str {
        "auth_api_memory_after_logins"
    }

    fn row(&self) -> Row {
        let (idle_mb, after_mb) = (self.idle_mb(), self.after_mb());
        Row {
            scenario: format!(
                "auth-api resident memory, 2 s after {} logins ({AT_A_TIME} at a time)",
                thousands(LOGINS as f64)
            ),
            figure: format!("{after_mb:.1} MB"),
            reference: format!("idle: {idle_mb:.1} MB"),
            ratio: format!("{:.2}×", after_mb / idle_mb.max(0.1)),
            goal: "≤ 15 MB".into(),
            met: after_mb <= 15.0,
        }
    }

    fn figures(&self) -> Value {
        json!({"idle_mb": self.idle_mb(), "after_mb": self.after_mb(), "answers": self.answers})
    }
}
