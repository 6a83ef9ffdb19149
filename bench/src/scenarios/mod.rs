//! One module per scenario. Each measures with a function returning its
//! own result type; [`ScenarioResult`] renders that as its table row and
//! its object under `scenarios` in latest.json.

pub mod auth_memory;
pub mod end_to_end;
pub mod idle_memory;
pub mod instructions;
pub mod list_beside_filtered;
pub mod list_by_customer;
pub mod post;
pub mod post_with_api_key;
pub mod settle;
pub mod settle_failover;
pub mod start_up;

use serde_json::{Map, Value};

use crate::report::{self, Row};

pub trait ScenarioResult {
    /// The scenario's key under `scenarios` in latest.json.
    fn key(&self) -> &'static str;
    /// Its line of the table; `met` is also written to the JSON.
    fn row(&self) -> Row;
    /// Its figures in latest.json (an object, without `met`).
    fn figures(&self) -> Value;
}

/// The Markdown table, one row per result in the order given.
pub fn table(results: &[&dyn ScenarioResult]) -> String {
    let rows: Vec<Row> = results.iter().map(|result| result.row()).collect();
    report::markdown(&rows)
}

/// `scenarios` of latest.json: each result's figures and whether it met its goal.
pub fn json(results: &[&dyn ScenarioResult]) -> Value {
    let mut scenarios = Map::new();
    for result in results {
        let mut figures = result.figures();
        figures["met"] = result.row().met.into();
        scenarios.insert(result.key().into(), figures);
    }
    Value::Object(scenarios)
}
