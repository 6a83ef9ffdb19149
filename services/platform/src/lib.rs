//! The shared runtime of every payment-platform service.
//!
//! Each service is a library plus a thin `main.rs`; everything that is not
//! domain code lives here once: how configuration is read ([`config`]), how
//! logs are written ([`telemetry`]), how a process starts, reports readiness
//! and drains ([`lifecycle`], [`server`]), what an error looks like on the
//! wire ([`http`]), how Redis is reached ([`redis`]), how tokens and API
//! keys are checked ([`auth`], [`access`]), what every Redis name is
//! ([`keyspace`]) and what travels on the queue ([`queue`], [`transaction`]).

pub mod access;
pub mod auth;
pub mod card;
pub mod config;
pub mod connections;
pub mod crypto;
pub mod event;
pub mod health;
pub mod http;
pub mod id;
pub mod keyspace;
pub mod lifecycle;
pub mod psp;
pub mod queue;
pub mod redis;
pub mod refund;
pub mod server;
pub mod telemetry;
pub mod transaction;
pub mod webhook;

#[cfg(feature = "test-support")]
pub mod testing;

pub use config::ConfigError;
pub use http::ApiError;
pub use lifecycle::Shutdown;
