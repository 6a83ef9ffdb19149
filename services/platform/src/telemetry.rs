//! Where logs go and what they look like.
//!
//! Under systemd (stderr connected to the journal, `JOURNAL_STREAM` set) logs
//! go to journald with structured fields; otherwise JSON lines when
//! `LOG_FORMAT=json` or stdout is not a terminal (process-compose, CI), and
//! human-readable lines on a terminal. `RUST_LOG` filters (default `info`).
//!
//! JSON lines are written by a background thread through a buffer that is
//! flushed whenever the queue runs empty: a request thread formats its line
//! and moves on instead of making a write syscall per line (under load many
//! lines leave in one write). The queue is not lossy — a full queue makes
//! loggers wait — and [`TelemetryGuard`] flushes what is left at exit.

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

/// Keeps the log writer thread alive; dropping it flushes pending lines.
#[must_use = "dropping the guard stops the log writer"]
pub struct TelemetryGuard {
    _writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Installs the global subscriber. Call once, first thing in `main`, and
/// hold the guard until the process ends.
pub fn init(service: &'static str, format: Option<LogFormat>) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match format.unwrap_or_else(LogFormat::detect) {
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(layer) => {
                registry
                    .with(layer.with_syslog_identifier(service.to_owned()))
                    .init();
                TelemetryGuard { _writer: None }
            }
            Err(error) => {
                let (layer, guard) = json_layer();
                registry.with(layer).init();
                tracing::warn!(%error, "journald unavailable, logging JSON to stdout");
                TelemetryGuard {
                    _writer: Some(guard),
                }
            }
        },
        LogFormat::Json => {
            let (layer, guard) = json_layer();
            registry.with(layer).init();
            TelemetryGuard {
                _writer: Some(guard),
            }
        }
        LogFormat::Pretty => {
            registry
                .with(tracing_subscriber::fmt::layer().with_target(false))
                .init();
            TelemetryGuard { _writer: None }
        }
    }
}

fn json_layer<S>() -> (
    impl tracing_subscriber::Layer<S>,
    tracing_appender::non_blocking::WorkerGuard,
)
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        // The queue's slots are allocated up front: the default 128k lines
        // cost ~4 MB per process; 4k lines is plenty between two flushes.
        .buffered_lines_limit(4096)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::new(std::io::stdout()));
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_writer(writer);
    (layer, guard)
}
