//! webhook-sink: the local receiver for development. It accepts
//! deliveries on `POST /webhooks`, checks each signature against
//! `WEBHOOK_SINK_SECRET`, keeps the last `WEBHOOK_SINK_KEEP` in memory and
//! lists them, newest first, on `GET /webhooks` (the dashboard's panel;
//! the end-to-end suite re-verifies them with another implementation).
//!
//! `WEBHOOK_SINK_STATUS` makes it answer every delivery with that status
//! instead of 200 (to watch retries and dead letters locally).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes as Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use platform::Shutdown;
use platform::config::{FromEnv, ListenAddr, RuntimeConfig};
use platform::health::Readiness;
use platform::server::{Server, Started};
use platform::webhook::Secret;
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Deserialize)]
pub struct SinkConfig {
    #[serde(default = "default_addr")]
    pub webhook_sink_addr: ListenAddr,
    #[serde(deserialize_with = "secret")]
    pub webhook_sink_secret: Secret,
    /// Deliveries kept.
    #[serde(
        default = "default_keep",
        deserialize_with = "platform::config::parsed"
    )]
    pub webhook_sink_keep: usize,
    /// The status every delivery is answered with (default 200).
    #[serde(default = "default_status", deserialize_with = "status")]
    pub webhook_sink_status: u16,
}

fn default_addr() -> ListenAddr {
    ([127, 0, 0, 1], 7501).into()
}
fn default_keep() -> usize {
    200
}
fn default_status() -> u16 {
    200
}

fn secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
    let text = String::deserialize(deserializer)?;
    Secret::parse(text.trim())
        .ok_or_else(|| serde::de::Error::custom("must be whsec_ and the base64 of 16-64 bytes"))
}

fn status<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    let code: u16 = platform::config::parsed(deserializer)?;
    if !(200..=599).contains(&code) {
        return Err(serde::de::Error::custom(
            "must be an HTTP status from 200 to 599",
        ));
    }
    Ok(code)
}

impl FromEnv for SinkConfig {
    const VARS: &'static [&'static str] = &[
        "WEBHOOK_SINK_ADDR",
        "WEBHOOK_SINK_SECRET",
        "WEBHOOK_SINK_KEEP",
        "WEBHOOK_SINK_STATUS",
    ];
}

/// One received delivery.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    /// RFC 3339, UTC.
    pub received_at: String,
    /// The `webhook-id`, `webhook-timestamp` and `webhook-signature`
    /// headers as sent.
    pub headers: HashMap<String, String>,
    /// The body as sent (JSON text).
    pub body: String,
    /// Whether the signature checked out with the sink's secret (and the
    /// timestamp is within five minutes).
    pub verified: bool,
    /// From the body, for the dashboard: the event type and transaction.
    pub event_type: Option<String>,
    pub transaction_id: Option<String>,
    pub status: Option<String>,
}

#[derive(Clone)]
struct Sink {
    secret: Secret,
    keep: usize,
    answer: StatusCode,
    received: Arc<Mutex<VecDeque<Received>>>,
}

/// How far a delivery's timestamp may be from now (Standard Webhooks'
/// replay window).
const TOLERANCE_SECS: i64 = 300;

fn verify(secret: &Secret, headers: &HeaderMap, body: &[u8]) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(timestamp), Some(signature)) = (
        text("webhook-id"),
        text("webhook-timestamp").and_then(|t| t.parse::<i64>().ok()),
        text("webhook-signature"),
    ) else {
        return false;
    };
    let now = (platform::webhook::now_ms() / 1000) as i64;
    (now - timestamp).abs() <= TOLERANCE_SECS && secret.verify(signature, id, timestamp, body)
}

async fn receive(State(sink): State<Sink>, headers: HeaderMap, body: Body) -> StatusCode {
    let verified = verify(&sink.secret, &headers, &body);
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let field = |pointer: &str| {
        parsed
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let received = Received {
        received_at: platform::transaction::now_rfc3339(),
        headers: ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .into_iter()
            .filter_map(|name| {
                let value = headers.get(name)?.to_str().ok()?;
                Some((name.to_owned(), value.to_owned()))
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        verified,
        event_type: field("/type"),
        transaction_id: field("/data/object/id"),
        status: field("/data/object/status"),
    };
    tracing::info!(
        webhook_id = received.headers.get("webhook-id").map(String::as_str),
        event_type = received.event_type.as_deref(),
        verified,
        "webhook received"
    );
    let mut list = sink.received.lock().expect("sink lock");
    list.push_front(received);
    list.truncate(sink.keep);
    if verified {
        sink.answer
    } else {
        StatusCode::BAD_REQUEST
    }
}

async fn list(State(sink): State<Sink>) -> axum::Json<serde_json::Value> {
    let list = sink.received.lock().expect("sink lock");
    axum::Json(serde_json::json!({ "data": list.iter().collect::<Vec<_>>() }))
}

/// Binds the sink's listener; serves until `shutdown`.
pub async fn build(
    config: SinkConfig,
    runtime: RuntimeConfig,
    shutdown: Shutdown,
) -> anyhow::Result<Started> {
    let sink = Sink {
        secret: config.webhook_sink_secret,
        keep: config.webhook_sink_keep.max(1),
        answer: StatusCode::from_u16(config.webhook_sink_status)?,
        received: Arc::default(),
    };
    let routes = axum::Router::new()
        .route("/webhooks", post(receive).get(list))
        .with_state(sink);
    let server = Server::bind(
        "webhook-sink",
        config.webhook_sink_addr,
        routes,
        Readiness::always(),
        runtime.shutdown_timeout_secs.0,
    )
    .await?
    .with_limits(runtime.http_limits());
    Ok(server.start(shutdown))
}
