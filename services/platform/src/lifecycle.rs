//! Process lifecycle, systemd style: `READY=1`, `WATCHDOG=1`, `STOPPING=1`.
//!
//! [`Shutdown`] is the one place signals become a value every task can wait
//! on; the notify functions are no-ops without `NOTIFY_SOCKET`, so the same
//! binary runs under systemd, process-compose and a test harness.

use std::future::Future;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// A shutdown request, cloned into every task that must stop.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A handle that only [`Shutdown::trigger`] fires (tests, embedding).
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle fired by SIGTERM or SIGINT. Must be called inside a runtime.
    pub fn on_signals() -> Self {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let signal = wait_for_signal().await;
            tracing::info!(signal, "shutdown requested");
            trigger.trigger();
        });
        shutdown
    }

    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once shutdown has been requested.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        self.token.clone().cancelled_owned()
    }
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

fn notify(state: NotifyState<'_>) {
    if let Err(error) = sd_notify::notify(&[state]) {
        tracing::warn!(%error, "sd_notify failed");
    }
}

/// `READY=1`: the listener is bound and the dependencies answer.
pub fn notify_ready() {
    notify(NotifyState::Ready);
}

/// `STOPPING=1`: shutdown has begun; in-flight work is draining.
pub fn notify_stopping() {
    notify(NotifyState::Stopping);
}

/// `WATCHDOG=1`: the service is alive and healthy.
pub fn notify_watchdog() {
    notify(NotifyState::Watchdog);
}

/// How often to pet the watchdog: half of `WATCHDOG_USEC`, as systemd advises.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| timeout / 2)
}
