//! Request ids and the access log.
//!
//! Caddy sets `X-Request-Id`; a direct caller may too, and otherwise one is
//! generated. The id is echoed on the response, attached to every log line
//! of the request (a tracing span), and available to handlers through the
//! [`RequestId`] extractor so it can travel on the queue.

use std::convert::Infallible;
use std::time::Instant;

use axum::extract::{FromRequestParts, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::request::Parts;
use http::{HeaderName, HeaderValue};
use tracing::Instrument;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the HTTP request being handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(uuid::Uuid::new_v4().to_string())))
    }
}

/// A client-sent id is kept only if it is short printable ASCII: it ends up
/// in logs and on the queue, so nothing that could forge a log line passes.
fn accept_incoming(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok = !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| text.to_owned())
}

/// Middleware: assigns the request id, logs the request once when it ends.
pub async fn trace_request(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(accept_incoming)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let header = HeaderValue::from_str(&id).expect("request ids are ASCII");
    req.headers_mut()
        .insert(X_REQUEST_ID.clone(), header.clone());
    req.extensions_mut().insert(RequestId(id.clone()));

    let method = req.method().clone();
    let path = mask_card_numbers(req.uri().path());
    let span = tracing::info_span!("request", request_id = %id);
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    response.headers_mut().insert(X_REQUEST_ID.clone(), header);

    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let _entered = span.enter();
    // Health probes arrive every second from Caddy and process-compose; a
    // healthy answer to one is not worth a log line at info.
    if (path == "/healthz" || path == "/readyz") && status == 200 {
        tracing::debug!(%method, path, status, latency_ms, "request");
    } else {
        tracing::info!(%method, path, status, latency_ms, "request");
    }
    response
}

/// The path as logged: a client that puts a card number in a URL (an id,
/// by mistake), plain or written in groups (`4242-4242-…`, `4242%204242…`),
/// must not get it into the logs ([`crate::card::mask_card_numbers`]).
fn mask_card_numbers(path: &str) -> String {
    crate::card::mask_card_numbers(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_in_paths_are_masked_in_the_log() {
        assert_eq!(
            mask_card_numbers("/transactions/4242424242424242"),
            "/transactions/[card]"
        );
        assert_eq!(
            mask_card_numbers("/x/4000000000000002/y/378282246310005"),
            "/x/[card]/y/[card]"
        );
        assert_eq!(
            mask_card_numbers("/transactions/4242-4242-4242-4242"),
            "/transactions/[card]"
        );
        assert_eq!(
            mask_card_numbers("/transactions/4242%204242%204242%204242"),
            "/transactions/[card]"
        );
        // Not a card: wrong check digit, too short, ids and plain numbers.
        for path in [
            "/transactions/4242424242424241",
            "/transactions/424242424242",
            "/transactions/tx_01a2019f44dc71ecb287c3b3734ae187",
            "/healthz",
            "/é/12",
        ] {
            assert_eq!(mask_card_numbers(path), path);
        }
    }
}
