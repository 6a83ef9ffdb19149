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
///
/// Two moments: shutdown is *requested* (the signal arrives: readiness
/// turns false so load balancers stop sending new work) and, after an
/// optional delay, work must *stop* (listeners close, consumers stop
/// reading, in-flight work drains). The delay (`SHUTDOWN_DELAY_MS`) gives a
/// gateway polling `/readyz` time to take the instance out before its port
/// closes, so a rolling restart fails no request.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    requested: CancellationToken,
    stop: CancellationToken,
    delay: Duration,
}

impl Shutdown {
    /// A handle that only [`Shutdown::trigger`] fires (tests, embedding).
    pub fn new() -> Self {
        Self::default()
    }

    /// The same, stopping `delay` after the request.
    pub fn with_delay(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    /// A handle fired by SIGTERM or SIGINT. Must be called inside a runtime.
    pub fn on_signals() -> Self {
        Self::on_signals_with_delay(Duration::ZERO)
    }

    /// Fired by SIGTERM or SIGINT, stopping `delay` after the signal.
    pub fn on_signals_with_delay(delay: Duration) -> Self {
        let shutdown = Self::with_delay(delay);
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let signal = wait_for_signal().await;
            tracing::info!(
                signal,
                delay_ms = delay.as_millis() as u64,
                "shutdown requested"
            );
            trigger.trigger();
        });
        shutdown
    }

    /// Requests shutdown; work stops after the delay. With a delay, must be
    /// called inside a runtime.
    pub fn trigger(&self) {
        if self.requested.is_cancelled() {
            return;
        }
        self.requested.cancel();
        if self.delay.is_zero() {
            self.stop.cancel();
        } else {
            let stop = self.stop.clone();
            let delay = self.delay;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                stop.cancel();
            });
        }
    }

    /// Whether work must stop now.
    pub fn is_triggered(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Whether shutdown has been requested (work may still be finishing).
    pub fn is_requested(&self) -> bool {
        self.requested.is_cancelled()
    }

    /// Resolves once work must stop.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        self.stop.clone().cancelled_owned()
    }

    /// Resolves once shutdown has been requested.
    pub fn requested(&self) -> impl Future<Output = ()> + Send + 'static {
        self.requested.clone().cancelled_owned()
    }

    pub fn delay(&self) -> Duration {
        self.delay
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
