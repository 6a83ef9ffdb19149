//! Auth API: exchanges merchant credentials for short-lived tokens.

mod configuration;

pub use configuration::Config;

use std::net::SocketAddr;

use futures::FutureExt;
use futures::future::BoxFuture;
use platform::Shutdown;
use platform::config::RuntimeConfig;
use platform::health::Readiness;
use platform::redis::Redis;
use platform::server::Server;

/// Binds the listener, connects Redis lazily, and returns the bound address
/// and the future that serves until `shutdown`.
pub async fn build(
    config: Config,
    runtime: RuntimeConfig,
    shutdown: Shutdown,
) -> anyhow::Result<(SocketAddr, BoxFuture<'static, anyhow::Result<()>>)> {
    let redis = Redis::connect(&config.redis_url)?;
    let routes = axum::Router::new();
    let server = Server::bind(
        "auth-api",
        config.auth_api_addr,
        routes,
        Readiness::redis(redis),
        runtime.shutdown_timeout_secs.0,
    )
    .await?;
    let addr = server.local_addr();
    Ok((
        addr,
        server.run(shutdown).map(|r| r.map_err(Into::into)).boxed(),
    ))
}
