//! The queue between core-api (producer) and psp-connector (consumer).
//!
//! An entry of the stream [`crate::keyspace::STREAM`] has one field,
//! [`crate::keyspace::PAYLOAD_FIELD`], holding a [`ChargeMessage`] as JSON.
//! Both sides use this type, so a schema change is a compile error rather
//! than a dead letter. The message carries the
//! card, which the transaction record never holds, sealed with
//! `CARD_ENCRYPTION_KEY` ([`crate::crypto`]): Redis never sees a card
//! number or CVC. The connector deletes the entry once the transaction is
//! final.

use serde::{Deserialize, Serialize};

use crate::crypto::{CardKey, SealError, SealedCard};

/// Why the connector dead-lettered a message: the `reason` field of its
/// letter, read back by core-api's admin view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// The entry holds no charge message.
    Undecodable,
    /// The message names a transaction that has no record.
    UnknownTransaction,
    /// `PSP_MAX_ATTEMPTS` was reached.
    MaxAttemptsExceeded,
    /// `PSP_RETRY_BUDGET_SECS` ran out.
    RetryBudgetExhausted,
    /// The PSP refused the request as malformed.
    PspRejectedRequest,
    /// The card does not open with this connector's key.
    Undecryptable,
}

impl DeadLetterReason {
    pub const ALL: [DeadLetterReason; 6] = [
        DeadLetterReason::Undecodable,
        DeadLetterReason::UnknownTransaction,
        DeadLetterReason::MaxAttemptsExceeded,
        DeadLetterReason::RetryBudgetExhausted,
        DeadLetterReason::PspRejectedRequest,
        DeadLetterReason::Undecryptable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Undecodable => "undecodable",
            DeadLetterReason::UnknownTransaction => "unknown_transaction",
            DeadLetterReason::MaxAttemptsExceeded => "max_attempts_exceeded",
            DeadLetterReason::RetryBudgetExhausted => "retry_budget_exhausted",
            DeadLetterReason::PspRejectedRequest => "psp_rejected_request",
            DeadLetterReason::Undecryptable => "undecryptable",
        }
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the connector needs to charge one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeMessage {
    pub transaction_id: String,
    /// `X-Request-Id` of the HTTP request that created the transaction.
    pub request_id: String,
    pub merchant_id: String,
    /// Minor units.
    pub amount: u64,
    pub currency: String,
    /// The [`CardDetails`], sealed for this transaction and merchant.
    pub card: SealedCard,
    /// When the connector first tried to charge it (Unix ms); set on the
    /// messages it parks for a retry, so the retry budget counts from the
    /// first attempt whichever connector makes the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_attempt_ms: Option<u64>,
}

/// Card data in transit to the PSP, before it is sealed and after it is
/// opened (never on the queue as such). `Debug` hides the number and CVC.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardDetails {
    pub number: String,
    pub expiry_month: u8,
    pub expiry_year: u16,
    pub cvc: String,
}

impl std::fmt::Debug for CardDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let last4 = self
            .number
            .get(self.number.len().saturating_sub(4)..)
            .unwrap_or("");
        write!(
            f,
            "CardDetails(**** {last4}, {:02}/{})",
            self.expiry_month, self.expiry_year
        )
    }
}

impl ChargeMessage {
    /// The card, opened with `key`; it opens only in the message of the
    /// transaction and merchant it was sealed for.
    pub fn open_card(&self, key: &CardKey) -> Result<CardDetails, SealError> {
        key.open(&self.card, &self.transaction_id, &self.merchant_id)
    }

    pub fn to_payload(&self) -> String {
        serde_json::to_string(self).expect("a ChargeMessage always serialises")
    }

    pub fn from_payload(payload: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_card() {
        let card = CardDetails {
            number: "4242424242424242".into(),
            expiry_month: 12,
            expiry_year: 2030,
            cvc: "123".into(),
        };
        let text = format!("{card:?}");
        assert!(
            !text.contains("424242424242") && !text.contains("123"),
            "{text}"
        );
        assert!(text.contains("4242"));
    }
}
