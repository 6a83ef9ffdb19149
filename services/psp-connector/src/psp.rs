//! The PSP's charge API as the connector sees it: one call, four outcomes.
//!
//! Every call carries `Idempotency-Key = transaction id`, so calling again
//! for the same transaction — after a timeout, a crash or a duplicate
//! delivery — can never charge twice.

use std::time::Duration;

use platform::queue::{CardDetails, ChargeMessage};
use serde::Deserialize;

use crate::configuration::PspUrl;

/// What one charge call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Approved,
    /// Final; carries the PSP's `decline_code`.
    Declined(String),
    /// Timeout, refused connection, 429 or 5xx: worth trying again.
    Retryable(String),
    /// Any other 4xx: the PSP will never accept this request as sent.
    Rejected(String),
}

#[derive(Clone)]
pub struct PspClient {
    http: reqwest::Client,
    /// Parsed once: a `String` here would be parsed again on every charge.
    charges: reqwest::Url,
}

#[derive(Deserialize)]
struct ChargeAnswer {
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
        })
    }

    /// Charges `card` (opened from `message`) for `message`.
    pub async fn charge(&self, message: &ChargeMessage, card: &CardDetails) -> ChargeOutcome {
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
            .header("Idempotency-Key", &message.transaction_id)
            .header("X-Request-Id", &message.request_id)
            .json(&body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => return ChargeOutcome::Retryable(describe(&error)),
        };
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) => return ChargeOutcome::Retryable(describe(&error)),
        };
        classify(status.as_u16(), &bytes)
    }
}

/// Turns a PSP answer into an outcome.
fn classify(status: u16, body: &[u8]) -> ChargeOutcome {
    match status {
        200 | 402 => match serde_json::from_slice::<ChargeAnswer>(body) {
            Ok(answer) if answer.status == "succeeded" && status == 200 => ChargeOutcome::Approved,
            Ok(answer) if answer.status == "declined" => ChargeOutcome::Declined(
                answer
                    .decline_code
                    .unwrap_or_else(|| "card_declined".to_owned()),
            ),
            // An answer we cannot read decided something we do not know;
            // asking again under the same key returns the same decision.
            _ => ChargeOutcome::Retryable(format!("unreadable answer (http {status})")),
        },
        429 | 500..=599 => ChargeOutcome::Retryable(format!("http {status}")),
        _ => {
            let code = serde_json::from_slice::<ErrorAnswer>(body)
                .map(|answer| answer.error.code)
                .unwrap_or_else(|_| "unknown".to_owned());
            ChargeOutcome::Rejected(format!("http {status}: {code}"))
        }
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
            classify(200, br#"{"status":"succeeded"}"#),
            ChargeOutcome::Approved
        );
        assert_eq!(
            classify(
                402,
                br#"{"status":"declined","decline_code":"insufficient_funds"}"#
            ),
            ChargeOutcome::Declined("insufficient_funds".into())
        );
        assert!(matches!(classify(503, b""), ChargeOutcome::Retryable(_)));
        assert!(matches!(
            classify(200, b"<html>"),
            ChargeOutcome::Retryable(_)
        ));
        assert_eq!(
            classify(422, br#"{"error":{"code":"invalid_card_number"}}"#),
            ChargeOutcome::Rejected("http 422: invalid_card_number".into())
        );
    }
}
