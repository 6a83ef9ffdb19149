//! One PSP's charge API as the connector sees it: a charge call with five
//! outcomes, and the lookup that settles an unknown one.
//!
//! Every charge carries `Idempotency-Key = {transaction id}:{psp}`
//! ([`platform::psp::idempotency_key`]), so calling one PSP again for the
//! same transaction — after a timeout, a crash or a duplicate delivery —
//! can never charge twice there, and the next PSP of a route has a key of
//! its own. What tells the outcomes apart is whether the PSP may have
//! charged: only outcomes that prove it did not let a payment move on.

use std::time::Duration;

use platform::queue::{CardDetails, ChargeMessage};
use serde::Deserialize;

use crate::configuration::PspUrl;

/// What one charge call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// Carries the PSP's charge id (`ch_…`).
    Approved(String),
    /// Final; carries the PSP's `decline_code`.
    Declined(String),
    /// The PSP provably charged nothing: connection refused, 429, 503, or
    /// the key was abandoned by an earlier lookup. Another PSP may be tried.
    Unavailable(String),
    /// It may or may not have charged (timeout, other 5xx, an unreadable
    /// answer): ask with [`PspClient::resolve`] before anything else.
    Unknown(String),
    /// Any other 4xx: the PSP will never accept this request as sent.
    Rejected(String),
}

/// What a lookup by idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Decided: [`ChargeOutcome::Approved`] or [`ChargeOutcome::Declined`].
    Decided(ChargeOutcome),
    /// Nothing was charged, and the key is now abandoned: nothing will be.
    NotCharged,
    /// The lookup itself failed; the charge is still unknown.
    Failed(String),
}

#[derive(Clone)]
pub struct PspClient {
    http: reqwest::Client,
    /// Parsed once: a `String` here would be parsed again on every charge.
    charges: reqwest::Url,
    resolve: reqwest::Url,
}

#[derive(Deserialize)]
struct ChargeAnswer {
    #[serde(default)]
    id: Option<String>,
    status: String,
    #[serde(default)]
    decline_code: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
}

impl PspClient {
    pub fn new(url: &PspUrl, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(1)))
            // A charge is never re-sent elsewhere on a redirect: a 3xx is
            // an answer the PSP's API does not give, so it is `Rejected`.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            charges: reqwest::Url::parse(&url.charges())?,
            resolve: reqwest::Url::parse(&url.resolve())?,
        })
    }

    /// Charges `card` (opened from `message`) for `message`, under `key`.
    pub async fn charge(
        &self,
        message: &ChargeMessage,
        card: &CardDetails,
        key: &str,
    ) -> ChargeOutcome {
        let body = serde_json::json!({
            "amount": message.amount,
            "currency": message.currency,
            "card": {
                "number": card.number,
                "expiry_month": card.expiry_month,
                "expiry_year": card.expiry_year,
                "cvc": card.cvc,
            },
            "metadata": {
                "transaction_id": message.transaction_id,
                "merchant_id": message.merchant_id,
            },
        });
        let response = match self
            .http
            .post(self.charges.clone())
            .header("Idempotency-Key", key)
            .header("X-Request-Id", &message.request_id)
            .json(&body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => return unsent_or_unknown(&error),
        };
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) => return ChargeOutcome::Unknown(describe(&error)),
        };
        classify(status.as_u16(), &bytes)
    }

    /// What was decided under `key`. A `NotCharged` answer fences the key
    /// at the PSP, so a charge request of ours still on its way there is
    /// refused: from then on the payment may go to another PSP.
    pub async fn resolve(&self, key: &str, request_id: &str) -> Resolution {
        let response = match self
            .http
            .post(self.resolve.clone())
            .header("Idempotency-Key", key)
            .header("X-Request-Id", request_id)
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => return Resolution::Failed(describe(&error)),
        };
        let status = response.status().as_u16();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) => return Resolution::Failed(describe(&error)),
        };
        match (status, classify(status, &bytes)) {
            (200, decided @ (ChargeOutcome::Approved(_) | ChargeOutcome::Declined(_))) => {
                Resolution::Decided(decided)
            }
            (404, _) if error_code(&bytes) == "charge_not_found" => Resolution::NotCharged,
            (status, _) => Resolution::Failed(format!("lookup answered http {status}")),
        }
    }
}

/// A request that failed before an answer: if it never reached the PSP
/// (refused or failed connection) nothing was charged; otherwise it may
/// have been.
fn unsent_or_unknown(error: &reqwest::Error) -> ChargeOutcome {
    if error.is_connect() {
        ChargeOutcome::Unavailable(describe(error))
    } else {
        ChargeOutcome::Unknown(describe(error))
    }
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorAnswer>(body)
        .map(|answer| answer.error.code)
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Turns a PSP answer into an outcome. A declined charge answers 402, but
/// its body is read either way: a lookup answers 200 for both.
fn classify(status: u16, body: &[u8]) -> ChargeOutcome {
    match status {
        200 | 402 => match serde_json::from_slice::<ChargeAnswer>(body) {
            Ok(ChargeAnswer {
                id: Some(id),
                status: answer,
                ..
            }) if answer == "succeeded" && status == 200 => ChargeOutcome::Approved(id),
            Ok(answer) if answer.status == "declined" => ChargeOutcome::Declined(
                answer
                    .decline_code
                    .unwrap_or_else(|| "card_declined".to_owned()),
            ),
            // An answer we cannot read decided something we do not know.
            _ => ChargeOutcome::Unknown(format!("unreadable answer (http {status})")),
        },
        // Decided nothing: a 503 or 429 is the PSP turning the request
        // away before any decision, and an abandoned key never charges.
        429 | 503 => ChargeOutcome::Unavailable(format!("http {status}")),
        409 if error_code(body) == "idempotency_key_abandoned" => {
            ChargeOutcome::Unavailable("http 409: idempotency_key_abandoned".to_owned())
        }
        500..=599 => ChargeOutcome::Unknown(format!("http {status}")),
        _ => ChargeOutcome::Rejected(format!("http {status}: {}", error_code(body))),
    }
}

/// A short reason for a failed call. Never the request body, so no card.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        assert_eq!(
            classify(200, br#"{"id":"ch_1","status":"succeeded"}"#),
            ChargeOutcome::Approved("ch_1".into())
        );
        assert_eq!(
            classify(
                402,
                br#"{"status":"declined","decline_code":"insufficient_funds"}"#
            ),
            ChargeOutcome::Declined("insufficient_funds".into())
        );
        assert!(matches!(classify(503, b""), ChargeOutcome::Unavailable(_)));
        assert!(matches!(classify(429, b""), ChargeOutcome::Unavailable(_)));
        assert!(matches!(
            classify(409, br#"{"error":{"code":"idempotency_key_abandoned"}}"#),
            ChargeOutcome::Unavailable(_)
        ));
        assert!(matches!(classify(500, b""), ChargeOutcome::Unknown(_)));
        assert!(matches!(
            classify(200, b"<html>"),
            ChargeOutcome::Unknown(_)
        ));
        assert!(matches!(
            classify(200, br#"{"status":"succeeded"}"#),
            ChargeOutcome::Unknown(_)
        ));
        assert_eq!(
            classify(422, br#"{"error":{"code":"invalid_card_number"}}"#),
            ChargeOutcome::Rejected("http 422: invalid_card_number".into())
        );
        assert!(matches!(
            classify(409, br#"{"error":{"code":"request_in_progress"}}"#),
            ChargeOutcome::Rejected(_)
        ));
    }
}

/// What one refund call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// Made (or replayed): the PSP's refund id.
    Succeeded(String),
    /// Refused for good: why, and the PSP's detail.
    Failed(platform::refund::RefundFailure, String),
    /// Timeout, refused connection, 429 or 5xx: worth trying again under
    /// the same key.
    Retryable(String),
}

#[derive(Deserialize)]
struct RefundAnswer {
    id: String,
    status: String,
}

impl PspClient {
    /// Refunds `amount` of charge `charge_id` under `Idempotency-Key =
    /// refund_id`, so a repeated call (redelivery, crash, retry) replays
    /// the first decision instead of refunding twice.
    pub async fn refund(
        &self,
        charge_id: &str,
        amount: u64,
        refund_id: &str,
        request_id: &str,
    ) -> RefundOutcome {
        use platform::refund::RefundFailure;
        let mut url = self.charges.clone();
        // Pushed as a segment, so the charge id is escaped, never a path.
        match url.path_segments_mut() {
            Ok(mut segments) => {
                segments.push(charge_id).push("refunds");
            }
            Err(()) => {
                return RefundOutcome::Failed(
                    RefundFailure::PspRejectedRequest,
                    "the PSP URL cannot take a path".to_owned(),
                );
            }
        }
        let response = match self
            .http
            .post(url)
            .header("Idempotency-Key", refund_id)
            .header("X-Request-Id", request_id)
            .json(&serde_json::json!({ "amount": amount }))
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => return RefundOutcome::Retryable(describe(&error)),
        };
        let status = response.status().as_u16();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) => return RefundOutcome::Retryable(describe(&error)),
        };
        classify_refund(status, &bytes)
    }
}

fn classify_refund(status: u16, body: &[u8]) -> RefundOutcome {
    use platform::refund::RefundFailure;
    match status {
        200 => match serde_json::from_slice::<RefundAnswer>(body) {
            Ok(answer) if answer.status == "succeeded" => RefundOutcome::Succeeded(answer.id),
            _ => RefundOutcome::Retryable("unreadable answer (http 200)".to_owned()),
        },
        429 | 500..=599 => RefundOutcome::Retryable(format!("http {status}")),
        _ => {
            let code = serde_json::from_slice::<ErrorAnswer>(body)
                .map(|answer| answer.error.code)
                .unwrap_or_else(|_| "unknown".to_owned());
            let reason = match (status, code.as_str()) {
                (404, _) => RefundFailure::ChargeNotFound,
                (_, "refund_exceeds_charge") => RefundFailure::ExceedsCharge,
                _ => RefundFailure::PspRejectedRequest,
            };
            RefundOutcome::Failed(reason, format!("http {status}: {code}"))
        }
    }
}

#[cfg(test)]
mod refund_tests {
    use super::*;
    use platform::refund::RefundFailure;

    #[test]
    fn refund_answers_are_classified() {
        assert_eq!(
            classify_refund(200, br#"{"id":"re_1","status":"succeeded"}"#),
            RefundOutcome::Succeeded("re_1".into())
        );
        assert!(matches!(
            classify_refund(503, b""),
            RefundOutcome::Retryable(_)
        ));
        assert!(matches!(
            classify_refund(200, b"<html>"),
            RefundOutcome::Retryable(_)
        ));
        assert!(matches!(
            classify_refund(404, br#"{"error":{"code":"charge_not_found"}}"#),
            RefundOutcome::Failed(RefundFailure::ChargeNotFound, _)
        ));
        assert!(matches!(
            classify_refund(422, br#"{"error":{"code":"refund_exceeds_charge"}}"#),
            RefundOutcome::Failed(RefundFailure::ExceedsCharge, _)
        ));
        assert!(matches!(
            classify_refund(400, b""),
            RefundOutcome::Failed(RefundFailure::PspRejectedRequest, _)
        ));
    }
}
