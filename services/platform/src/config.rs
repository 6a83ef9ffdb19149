//! Twelve-factor configuration: typed defaults, then environment variables.
//!
//! A service describes its settings as a struct whose field names are the
//! lower-cased variable names (`redis_url` ← `REDIS_URL`), with serde defaults
//! for the optional ones. Values that need checking are newtypes whose
//! `Deserialize` rejects bad input, so a loaded config is always valid.
//! Errors name the variable and the problem on one line, and
//! [`load_or_exit`] turns them into `config error: VAR: problem` and exit
//! code 2 — never a panic.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use figment::Figment;
use figment::error::Kind;
use figment::providers::Serialized;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::str::FromStr;

/// A configuration struct read from the environment.
pub trait FromEnv: DeserializeOwned {
    /// Every variable this struct reads. Only these are looked at, so a stray
    /// variable of another service cannot leak in, and the end-to-end suite
    /// can check that process-compose.yaml sets nothing that no one reads.
    const VARS: &'static [&'static str];

    /// Checks beyond one variable's own parsing, such as a development
    /// secret outside development: [`crate::server::main`] runs it after
    /// loading, before anything starts, and exits on the error like on any
    /// other configuration error.
    fn check(&self, _runtime: &RuntimeConfig) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// One configuration problem: which variable, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// Reads `T` from the process environment.
///
/// Every value is handed over as text: figment's own `Env` provider guesses
/// types, which would turn a secret such as `0123…` into the number 123.
/// Numeric fields parse their text with [`parsed`].
pub fn load<T: FromEnv>() -> Result<T, ConfigError> {
    let vars: BTreeMap<String, String> = T::VARS
        .iter()
        .filter_map(|name| {
            std::env::var(name)
                .ok()
                .map(|value| (name.to_lowercase(), value))
        })
        .collect();
    from_figment(Figment::from(Serialized::defaults(vars)))
}

/// `#[serde(deserialize_with = "platform::config::parsed")]` for any
/// `FromStr` field (numbers, rates): the environment holds text.
pub fn parsed<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let text = String::deserialize(deserializer)?;
    text.trim()
        .parse()
        .map_err(|error| serde::de::Error::custom(format!("{error} (got {text:?})")))
}

/// Reads `T` or ends the process with a one-line message and exit code 2.
pub fn load_or_exit<T: FromEnv>() -> T {
    match load::<T>() {
        Ok(config) => config,
        Err(error) => exit_with(&error),
    }
}

/// Prints `config error: …` and exits with code 2 (the code systemd calls
/// "invalid argument"); used for every start-up configuration failure.
pub fn exit_with(error: &ConfigError) -> ! {
    eprintln!("config error: {error}");
    std::process::exit(2)
}

fn from_figment<T: DeserializeOwned>(figment: Figment) -> Result<T, ConfigError> {
    figment.extract::<T>().map_err(|error| {
        // figment may collect several errors; the first is enough to act on.
        let error = error
            .into_iter()
            .next()
            .expect("figment errors are non-empty");
        let mut path = error.path.clone();
        let problem = match &error.kind {
            Kind::MissingField(field) => {
                path.push(field.to_string());
                "is required but not set".to_owned()
            }
            Kind::InvalidType(actual, expected) => format!("expected {expected}, found {actual}"),
            Kind::InvalidValue(actual, expected) => format!("expected {expected}, found {actual}"),
            Kind::Message(message) => message.clone(),
            other => other.to_string(),
        };
        let variable = path
            .last()
            .map(|p| p.to_uppercase())
            .unwrap_or_else(|| "environment".into());
        ConfigError { variable, problem }
    })
}

/// A listen address such as `127.0.0.1:7201`.
pub type ListenAddr = SocketAddr;

/// A duration given in milliseconds (`PSP_TIMEOUT_MS=2000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub Duration);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value: u64 = parsed(deserializer)?;
        Ok(Millis(Duration::from_millis(value)))
    }
}

/// A duration given in whole seconds (`SHUTDOWN_TIMEOUT_SECS=10`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secs(pub Duration);

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value: u64 = parsed(deserializer)?;
        Ok(Secs(Duration::from_secs(value)))
    }
}

/// How long a stopping service waits for in-flight work (`SHUTDOWN_TIMEOUT_SECS`).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings the runtime itself reads, for every service.
#[derive(Debug, Clone, Deserialize)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub log_format: Option<crate::telemetry::LogFormat>,
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_secs: Secs,
    /// How long a stopping service keeps accepting, with `/readyz` at 503,
    /// before it closes its port (`SHUTDOWN_DELAY_MS`, default 0): set it
    /// above the gateway's health-check interval for zero-failure restarts.
    #[serde(default = "default_shutdown_delay")]
    pub shutdown_delay_ms: Millis,
    /// Where this process runs (`PLATFORM_ENV`, default `development`):
    /// outside development, development secrets are refused at start.
    #[serde(default)]
    pub platform_env: PlatformEnv,
    /// A request head must arrive within this long of its first byte, and
    /// a body within this long of its head (`HTTP_HEADER_TIMEOUT_MS`).
    #[serde(
        default = "default_header_timeout",
        deserialize_with = "positive_millis"
    )]
    pub http_header_timeout_ms: Millis,
    /// A keep-alive connection idle this long is closed
    /// (`HTTP_IDLE_TIMEOUT_MS`).
    #[serde(default = "default_idle_timeout", deserialize_with = "positive_millis")]
    pub http_idle_timeout_ms: Millis,
    /// Open connections at most (`HTTP_MAX_CONNECTIONS`); default and
    /// upper bound: the file descriptor limit less a reserve.
    #[serde(default, deserialize_with = "optional_positive")]
    pub http_max_connections: Option<usize>,
}

impl RuntimeConfig {
    /// The listener limits these settings describe.
    pub fn http_limits(&self) -> crate::connections::HttpLimits {
        crate::connections::HttpLimits {
            header_timeout: self.http_header_timeout_ms.0,
            idle_timeout: self.http_idle_timeout_ms.0,
            max_connections: self.http_max_connections,
        }
    }
}

fn default_header_timeout() -> Millis {
    Millis(crate::connections::DEFAULT_HEADER_TIMEOUT)
}

fn default_idle_timeout() -> Millis {
    Millis(crate::connections::DEFAULT_IDLE_TIMEOUT)
}

fn positive_millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Millis, D::Error> {
    let millis = Millis::deserialize(deserializer)?;
    if millis.0.is_zero() {
        return Err(serde::de::Error::custom("must be at least 1 ms"));
    }
    Ok(millis)
}

fn optional_positive<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<usize>, D::Error> {
    let value: usize = parsed(deserializer)?;
    if value == 0 {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(Some(value))
}

/// `PLATFORM_ENV`: the name of the environment a process runs in, such as
/// `development` (the default), `staging` or `production`. Only
/// `development` accepts the development secrets that process-compose.yaml
/// ships ([`crate::auth::refuse_development_secret`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformEnv(String);

impl PlatformEnv {
    pub const DEVELOPMENT: &'static str = "development";

    /// 1–32 characters of `a-z`, `0-9`, `-` and `_`: a name, not free text.
    pub fn new(name: &str) -> Result<Self, String> {
        let ok = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "expected a lower-case name such as development or production (got {name:?})"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_development(&self) -> bool {
        self.0 == Self::DEVELOPMENT
    }
}

impl Default for PlatformEnv {
    fn default() -> Self {
        Self(Self::DEVELOPMENT.to_owned())
    }
}

impl<'de> Deserialize<'de> for PlatformEnv {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        PlatformEnv::new(String::deserialize(deserializer)?.trim())
            .map_err(serde::de::Error::custom)
    }
}

fn default_shutdown_delay() -> Millis {
    Millis(Duration::ZERO)
}

fn default_shutdown_timeout() -> Secs {
    Secs(DEFAULT_SHUTDOWN_TIMEOUT)
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            log_format: None,
            shutdown_timeout_secs: default_shutdown_timeout(),
            shutdown_delay_ms: default_shutdown_delay(),
            platform_env: PlatformEnv::default(),
            http_header_timeout_ms: default_header_timeout(),
            http_idle_timeout_ms: default_idle_timeout(),
            http_max_connections: None,
        }
    }
}

impl FromEnv for RuntimeConfig {
    const VARS: &'static [&'static str] = &[
        "LOG_FORMAT",
        "SHUTDOWN_TIMEOUT_SECS",
        "SHUTDOWN_DELAY_MS",
        "PLATFORM_ENV",
        "HTTP_HEADER_TIMEOUT_MS",
        "HTTP_IDLE_TIMEOUT_MS",
        "HTTP_MAX_CONNECTIONS",
    ];
}

/// Variables read by libraries rather than by a config struct: the systemd
/// protocol (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`,
/// `JOURNAL_STREAM`) and log filtering (`RUST_LOG`).
pub const PROTOCOL_VARS: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "RUST_LOG",
];

#[cfg(test)]
// figment's Jail closures return its (large) error type; that is its API.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[derive(Debug, Deserialize)]
    struct Example {
        example_addr: ListenAddr,
        #[serde(default = "default_timeout")]
        example_timeout_ms: Millis,
        example_secret: String,
    }
    fn default_timeout() -> Millis {
        Millis(Duration::from_millis(2000))
    }
    impl FromEnv for Example {
        const VARS: &'static [&'static str] =
            &["EXAMPLE_ADDR", "EXAMPLE_TIMEOUT_MS", "EXAMPLE_SECRET"];
    }

    #[test]
    fn defaults_then_environment() {
        Jail::expect_with(|jail| {
            jail.set_env("EXAMPLE_ADDR", "127.0.0.1:7999");
            jail.set_env("EXAMPLE_SECRET", "012345");
            let config = load::<Example>().unwrap();
            assert_eq!(config.example_addr, "127.0.0.1:7999".parse().unwrap());
            assert_eq!(
                config.example_timeout_ms,
                Millis(Duration::from_millis(2000))
            );
            // A numeric-looking value still reads as a string where one is wanted.
            assert_eq!(config.example_secret, "012345");
            Ok(())
        });
    }

    #[test]
    fn missing_variable_is_named() {
        Jail::expect_with(|jail| {
            jail.set_env("EXAMPLE_ADDR", "127.0.0.1:7999");
            let error = load::<Example>().unwrap_err();
            assert_eq!(error.to_string(), "EXAMPLE_SECRET: is required but not set");
            Ok(())
        });
    }

    #[test]
    fn invalid_value_is_named() {
        Jail::expect_with(|jail| {
            jail.set_env("EXAMPLE_ADDR", "not-an-address");
            jail.set_env("EXAMPLE_SECRET", "x");
            let error = load::<Example>().unwrap_err();
            assert_eq!(error.variable, "EXAMPLE_ADDR");
            jail.set_env("EXAMPLE_ADDR", "127.0.0.1:1");
            jail.set_env("EXAMPLE_TIMEOUT_MS", "soon");
            let error = load::<Example>().unwrap_err();
            assert_eq!(error.variable, "EXAMPLE_TIMEOUT_MS");
            Ok(())
        });
    }

    #[test]
    fn platform_env_defaults_to_development_and_must_be_a_name() {
        Jail::expect_with(|jail| {
            let runtime = load::<RuntimeConfig>().unwrap();
            assert!(runtime.platform_env.is_development());
            jail.set_env("PLATFORM_ENV", "production");
            let runtime = load::<RuntimeConfig>().unwrap();
            assert_eq!(runtime.platform_env.as_str(), "production");
            assert!(!runtime.platform_env.is_development());
            for bad in ["", "Production", "prod uction", &"x".repeat(33)] {
                jail.set_env("PLATFORM_ENV", bad);
                let error = load::<RuntimeConfig>().unwrap_err();
                assert_eq!(error.variable, "PLATFORM_ENV", "{bad:?}");
            }
            Ok(())
        });
    }

    #[test]
    fn unrelated_variables_are_ignored() {
        Jail::expect_with(|jail| {
            jail.set_env("EXAMPLE_ADDR", "127.0.0.1:1");
            jail.set_env("EXAMPLE_SECRET", "x");
            jail.set_env("EXAMPLE_UNRELATED", "whatever");
            assert!(load::<Example>().is_ok());
            Ok(())
        });
    }
}
