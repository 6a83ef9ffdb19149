//! Idle memory of every process of the stack, two seconds after all are ready.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::stack::Stack;
use serde_json::{Value, json};

use super::ScenarioResult;
use crate::report::Row;

pub struct IdleMemory {
    /// Resident memory of each process (and its children), KiB.
    per_process_kib: BTreeMap<String, u64>,
}

pub async fn measure(stack: &Stack) -> IdleMemory {
    tokio::time::sleep(Duration::from_secs(2)).await;
    IdleMemory {
        per_process_kib: stack.resident_memory_kib(),
    }
}

impl IdleMemory {
    pub fn total_mb(&self) -> f64 {
        self.per_process_kib.values().sum::<u64>() as f64 * 1024.0 / 1e6
    }

    /// One process's resident memory, KiB (0 if it was not running).
    pub fn process_kib(&self, name: &str) -> u64 {
        self.per_process_kib.get(name).copied().unwrap_or(0)
    }
}

impl ScenarioResult for IdleMemory {
    fn key(&self) -> &'static str {
        "idle_memory"
    }

    fn row(&self) -> Row {
        let total_mb = self.total_mb();
        Row {
            scenario: format!(
                "idle memory, whole stack ({} processes)",
                self.per_process_kib.len()
            ),
            figure: format!("{total_mb:.1} MB"),
            reference: "—".into(),
            ratio: "—".into(),
            goal: "≤ 150 MB".into(),
            met: total_mb <= 150.0,
        }
    }

    fn figures(&self) -> Value {
        let per_process_mib: serde_json::Map<String, Value> = self
            .per_process_kib
            .iter()
            .map(|(name, kib)| (name.clone(), json!(*kib as f64 / 1024.0)))
            .collect();
        json!({"total_mb": self.total_mb(), "per_process_mib": per_process_mib})
    }
}
