//! Binding, serving, readiness and draining — the same for every service.
//!
//! `build(config)` in each service binds a [`Server`] (port 0 in tests) and
//! returns its address plus the future of [`Server::run`]; `main` only adds
//! signal handling. Tests boot the real service in-process the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::connections::HttpLimits;
use crate::health::Readiness;
use crate::lifecycle::{self, Shutdown};

/// How often readiness is retried before `READY=1`.
const READY_POLL: Duration = Duration::from_millis(20);

/// What a service's `build` returns: the bound address, and the future
/// that serves until shutdown.
pub struct Started {
    pub addr: SocketAddr,
    pub serve: futures::future::BoxFuture<'static, anyhow::Result<()>>,
}

/// A bound, not yet serving, HTTP service.
pub struct Server {
    name: &'static str,
    listener: TcpListener,
    routes: Router,
    readiness: Readiness,
    drain_timeout: Duration,
    limits: HttpLimits,
}

impl Server {
    /// Binds `addr` and wraps `routes` with the shared layers of
    /// [`crate::http::service_router`].
    pub async fn bind(
        name: &'static str,
        addr: SocketAddr,
        routes: Router,
        readiness: Readiness,
        drain_timeout: Duration,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            name,
            listener,
            routes,
            readiness,
            drain_timeout,
            limits: HttpLimits::default(),
        })
    }

    /// Header-read and idle timeouts and the connection cap (see
    /// [`crate::connections`]); the defaults unless set.
    pub fn with_limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The bound address and the serving future, as `build` returns them.
    pub fn start(self, shutdown: Shutdown) -> Started {
        use futures::FutureExt;
        Started {
            addr: self.local_addr(),
            serve: self.run(shutdown).map(|r| r.map_err(Into::into)).boxed(),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown`, then drains in-flight requests for at most
    /// the drain timeout. Sends `READY=1` once readiness first passes,
    /// `WATCHDOG=1` while it keeps passing, and `STOPPING=1` as soon as
    /// shutdown is requested; from then on `/readyz` answers 503 while the
    /// port stays open for the shutdown delay, so a gateway takes this
    /// instance out before it stops accepting.
    pub async fn run(self, shutdown: Shutdown) -> std::io::Result<()> {
        let Server {
            name,
            listener,
            routes,
            readiness,
            drain_timeout,
            limits,
        } = self;
        let addr = listener.local_addr()?;
        let readiness = unless_shutting_down(readiness, shutdown.clone());
        let router = crate::http::service_router(routes, readiness.clone(), &limits);
        let serve = crate::connections::serve(listener, router, limits, shutdown.wait());
        let mut serve = std::pin::pin!(serve);

        let lifecycle = tokio::spawn(report_readiness(name, addr, readiness, shutdown.clone()));
        let result = tokio::select! {
            // Shutdown first: with no delay the server future completes in
            // the same poll, and STOPPING=1 must still be sent.
            biased;
            () = shutdown.requested() => {
                lifecycle::notify_stopping();
                tracing::info!(
                    service = name,
                    delay_ms = shutdown.delay().as_millis() as u64,
                    timeout_ms = drain_timeout.as_millis() as u64,
                    "not ready; draining"
                );
                match tokio::time::timeout(shutdown.delay() + drain_timeout, &mut serve).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!(service = name, "drain timed out; closing remaining connections");
                        Ok(())
                    }
                }
            }
            result = &mut serve => result,
        };
        lifecycle.abort();
        tracing::info!(service = name, "stopped");
        result
    }
}

/// Readiness that fails once shutdown is requested.
fn unless_shutting_down(readiness: Readiness, shutdown: Shutdown) -> Readiness {
    Readiness::new(move || {
        let (readiness, shutdown) = (readiness.clone(), shutdown.clone());
        Box::pin(async move {
            if shutdown.is_requested() {
                return Err("shutting down".to_owned());
            }
            readiness.check().await
        })
    })
}

/// Waits for the first passing readiness check, announces it, then pets the
/// watchdog (when systemd asked for one) only while checks keep passing.
async fn report_readiness(
    name: &'static str,
    addr: SocketAddr,
    readiness: Readiness,
    shutdown: Shutdown,
) {
    let mut last_error = String::new();
    loop {
        if shutdown.is_triggered() {
            return;
        }
        match readiness.check().await {
            Ok(()) => break,
            Err(error) => {
                if error != last_error {
                    tracing::warn!(service = name, %error, "not ready yet");
                    last_error = error;
                }
                tokio::time::sleep(READY_POLL).await;
            }
        }
    }
    lifecycle::notify_ready();
    tracing::info!(service = name, %addr, "ready");

    let Some(interval) = lifecycle::watchdog_interval() else {
        return;
    };
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        match readiness.check().await {
            Ok(()) => lifecycle::notify_watchdog(),
            Err(error) => {
                tracing::warn!(service = name, %error, "unhealthy; withholding watchdog ping")
            }
        }
    }
}

/// What `main` does for every service: read the runtime config, start
/// telemetry, build the service from its own config, run it until a signal,
/// and turn the outcome into an exit code.
pub async fn main<C, F, Fut>(name: &'static str, build: F) -> std::process::ExitCode
where
    C: crate::config::FromEnv,
    F: FnOnce(C, crate::config::RuntimeConfig, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<Started>>,
{
    let runtime = crate::config::load_or_exit::<crate::config::RuntimeConfig>();
    let config = crate::config::load_or_exit::<C>();
    // Before anything opens a descriptor: the connection cap is derived
    // from this limit, and 1024 is far too low for a network service.
    let descriptors = crate::connections::raise_descriptor_limit();
    if let Err(error) = config.check(&runtime) {
        crate::config::exit_with(&error);
    }
    let _telemetry = crate::telemetry::init(name, runtime.log_format);
    match descriptors {
        Ok(limit) => tracing::debug!(limit, "file descriptor limit"),
        Err(error) => tracing::warn!(%error, "could not raise the file descriptor limit"),
    }
    let shutdown = Shutdown::on_signals_with_delay(runtime.shutdown_delay_ms.0);
    let Started { addr, serve } = match build(config, runtime, shutdown).await {
        Ok(started) => started,
        // A configuration problem found while building (a file the config
        // names, say) is reported like any other: one line, exit code 2.
        Err(error) if error.downcast_ref::<crate::ConfigError>().is_some() => {
            crate::config::exit_with(error.downcast_ref().expect("checked"));
        }
        Err(error) => {
            tracing::error!(
                service = name,
                error = format!("{error:#}"),
                "failed to start"
            );
            eprintln!("{name}: failed to start: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(service = name, %addr, "listening");
    match serve.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(
                service = name,
                error = format!("{error:#}"),
                "stopped with an error"
            );
            std::process::ExitCode::FAILURE
        }
    }
}
