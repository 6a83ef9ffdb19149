//! One benchmark command: `cargo run --release -p bench`.
//!
//! Boots the whole platform from process-compose.yaml on free ports (the
//! end-to-end harness), warms it up, runs every scenario of the benchmark
//! next to its reference in the same run, prints a Markdown table and
//! writes every figure, the machine's core count and the git revision to
//! `target/bench/latest.json`. See BENCHMARKS.md for how to read it.
//!
//! Settings (environment): `BENCH_SECONDS` (each wrk run, default 10),
//! `BENCH_PRELOAD` (transactions of the large merchant, default 100000),
//! `BENCH_BOOTS` (stack boots for the start-up figure, default 3),
//! `BENCH_OUT` (the JSON file). `cargo run --release -p bench -- instructions`
//! runs only the instruction counts, `… -- webhooks` only the webhook
//! delivery rate.

mod cpu;
mod driver;
mod harness;
mod prerequisites;
mod provenance;
mod reference;
mod report;
mod scenarios;
mod settings;
mod webhook_rate;
mod wrk;

use std::process::ExitCode;

use harness::{Harness, PausedConnectors};
use provenance::Provenance;
use scenarios::post::Route;
use scenarios::{
    ScenarioResult, auth_memory, end_to_end, idle_memory, instructions, list_beside_filtered,
    list_by_customer, post, post_with_api_key, settle, settle_failover, start_up,
};
use settings::Settings;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("hello") {
        let addr = args.get(2).map_or("127.0.0.1:7299", String::as_str);
        return match reference::serve_hello(addr) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("hello-world: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    if cfg!(debug_assertions) {
        eprintln!("bench: measure release builds only: cargo run --release -p bench");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // `bench instructions`: only the instruction counts (a minute or two).
    let only_instructions = args.get(1).map(String::as_str) == Some("instructions");
    let only_webhooks = args.get(1).map(String::as_str) == Some("webhooks");
    match runtime.block_on(async {
        if only_instructions {
            run_instructions_only().await
        } else if only_webhooks {
            let webhooks = webhook_rate::measure(&e2e::binary_dir(), 5_000, 1).await?;
            println!("{}", scenarios::table(&[&webhooks]));
            Ok(())
        } else {
            run().await
        }
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn log(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

/// The scenarios in the order they run (each may use figures of the ones
/// before), then the table and latest.json.
async fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let root = e2e::repo_root();
    let work = tempfile::tempdir()?;
    reference::copy_self(work.path())?;
    prerequisites::check(&root)?;
    let provenance = Provenance::capture(&root);
    let run_id = format!(
        "bench{}",
        driver::unix_ns(std::time::SystemTime::now()) / 1_000_000
    );

    let (start_up, stack) = start_up::measure(settings.boots).await?;
    let idle_memory = idle_memory::measure(&stack).await;
    log(format!(
        "boot {:.0} ms, idle memory {:.1} MB",
        start_up.median_ms(),
        idle_memory.total_mb()
    ));
    let harness = Harness::start(stack, &root, work.path(), run_id, settings.seconds).await?;
    harness.warm_up().await?;

    // From here to the settle scenario the connectors are stopped.
    let paused = PausedConnectors::new(&harness.stack);
    let preload = list_by_customer::preload(&harness, settings.preload).await?;
    let lists = list_by_customer::measure(&harness, preload).await?;
    let beside = list_beside_filtered::measure(&harness, lists.small_p50_ms()).await?;
    let auth_memory = auth_memory::measure(&harness, idle_memory.process_kib("auth-api")).await?;
    let through_caddy = post::measure(&harness, Route::ThroughCaddy).await?;
    let direct = post::measure(&harness, Route::Direct).await?;
    let with_api_key = post_with_api_key::measure(&harness).await?;
    let settle = settle::measure(&harness, paused).await?;
    let end_to_end = end_to_end::measure(&harness, through_caddy.rate(), settle.rate()).await?;
    let failover = settle_failover::measure(&harness, settle.rate()).await?;

    let load_after = provenance::loadavg();
    harness.shut_down().await?;
    let instructions = instructions::measure(work.path()).await?;
    let webhooks = webhook_rate::measure(&e2e::binary_dir(), 5_000, 1).await?;

    // The order of the table.
    let results: [&dyn ScenarioResult; 13] = [
        &through_caddy,
        &direct,
        &lists,
        &beside,
        &auth_memory,
        &settle,
        &failover,
        &end_to_end,
        &start_up,
        &idle_memory,
        &instructions,
        &with_api_key,
        &webhooks,
    ];
    write_report(&settings, &provenance, &load_after, &results)
}

/// Only the instruction counts, printed as their table row.
async fn run_instructions_only() -> anyhow::Result<()> {
    let root = e2e::repo_root();
    prerequisites::check(&root)?;
    let work = tempfile::tempdir()?;
    let instructions = instructions::measure(work.path()).await?;
    println!("{}", scenarios::table(&[&instructions]));
    Ok(())
}

/// Writes latest.json and prints the table.
fn write_report(
    settings: &Settings,
    provenance: &Provenance,
    load_after: &str,
    results: &[&dyn ScenarioResult],
) -> anyhow::Result<()> {
    let table = scenarios::table(results);
    let document = provenance.document(
        load_after,
        settings.json(),
        scenarios::json(results),
        &table,
    )?;
    if let Some(dir) = settings.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&settings.out, serde_json::to_string_pretty(&document)?)?;
    println!(
        "{}",
        provenance.headline(&document["machine"]["cores"], load_after)
    );
    println!("{table}");
    println!("figures: {}", settings.out.display());
    Ok(())
}
