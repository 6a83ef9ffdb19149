//! Where logs go and what they look like.
//!
//! Under systemd (stderr connected to the journal, `JOURNAL_STREAM` set) logs
//! go to journald with structured fields; otherwise JSON lines when
//! `LOG_FORMAT=json` or stdout is not a terminal (process-compose, CI), and
//! human-readable lines on a terminal. `RUST_LOG` filters (default `info`).

use std::io::IsTerminal;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The value of `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
    Journald,
}

impl LogFormat {
    /// The format to use when `LOG_FORMAT` is not set.
    pub fn detect() -> Self {
        if journal_is_stderr() {
            LogFormat::Journald
        } else if std::io::stdout().is_terminal() {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        }
    }
}

/// systemd sets `JOURNAL_STREAM=<dev>:<inode>` for the stream it connected;
/// a child that inherited the variable but writes elsewhere must not use it.
fn journal_is_stderr() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(meta) => meta.dev() == dev && meta.ino() == ino,
        // No procfs (macOS): trust the variable, as sd_journal_stream_fd users do.
        Err(_) => true,
    }
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(service: &'static str, format: Option<LogFormat>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match format.unwrap_or_else(LogFormat::detect) {
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(layer) => registry
                .with(layer.with_syslog_identifier(service.to_owned()))
                .init(),
            Err(error) => {
                registry.with(json_layer()).init();
                tracing::warn!(%error, "journald unavailable, logging JSON to stdout");
            }
        },
        LogFormat::Json => registry.with(json_layer()).init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .init(),
    }
}

fn json_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
}
