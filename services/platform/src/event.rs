//! Events: one per transaction status change, written by the status
//! transition script in the same step as the change
//! ([`crate::transaction::transition`]), and one per settled refund
//! (`refund.succeeded`, `refund.failed`), written by the refund settle
//! script in the same step ([`crate::refund::settle`]); read by core-api
//! (`GET /events`) and delivered to webhook endpoints by
//! webhook-dispatcher.
//!
//! An event's record (`evt:{id}`, [`crate::keyspace::event`]) holds a
//! snapshot of the transaction record as the script left it, so
//! `data.object` is the transaction at that moment: the event of the move
//! to `processing` says `processing` even when it is read after the
//! payment succeeded (docs/architecture.md "Events and webhooks").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::transaction::Status;

/// `evt_` followed by a UUIDv7 in 32 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(String);

pub const ID_PREFIX: &str = "evt_";

impl EventId {
    /// A new, time-ordered id.
    pub fn generate() -> Self {
        Self(crate::id::generate(ID_PREFIX))
    }

    /// Accepts exactly what [`generate`](Self::generate) produces.
    pub fn parse(text: &str) -> Option<Self> {
        crate::id::is_generated(text, ID_PREFIX).then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What happened. One per status a transaction can move to, and one per
/// final refund status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "transaction.processing")]
    TransactionProcessing,
    #[serde(rename = "transaction.succeeded")]
    TransactionSucceeded,
    #[serde(rename = "transaction.declined")]
    TransactionDeclined,
    #[serde(rename = "transaction.failed")]
    TransactionFailed,
    #[serde(rename = "refund.succeeded")]
    RefundSucceeded,
    #[serde(rename = "refund.failed")]
    RefundFailed,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::TransactionProcessing,
        EventType::TransactionSucceeded,
        EventType::TransactionDeclined,
        EventType::TransactionFailed,
        EventType::RefundSucceeded,
        EventType::RefundFailed,
    ];

    /// The event a refund's move to `status` writes; none for `pending`.
    pub fn of_refund(status: crate::refund::RefundStatus) -> Option<Self> {
        use crate::refund::RefundStatus;
        match status {
            RefundStatus::Pending => None,
            RefundStatus::Succeeded => Some(Self::RefundSucceeded),
            RefundStatus::Failed => Some(Self::RefundFailed),
        }
    }

    /// The event a move to `status` writes; none for `pending`, which is
    /// where a transaction starts, never where it moves.
    pub fn of_status(status: Status) -> Option<Self> {
        match status {
            Status::Pending => None,
            Status::Processing => Some(Self::TransactionProcessing),
            Status::Succeeded => Some(Self::TransactionSucceeded),
            Status::Declined => Some(Self::TransactionDeclined),
            Status::Failed => Some(Self::TransactionFailed),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TransactionProcessing => "transaction.processing",
            Self::TransactionSucceeded => "transaction.succeeded",
            Self::TransactionDeclined => "transaction.declined",
            Self::TransactionFailed => "transaction.failed",
            Self::RefundSucceeded => "refund.succeeded",
            Self::RefundFailed => "refund.failed",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown event type {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_bad_ones_are_refused() {
        let id = EventId::generate();
        assert_eq!(EventId::parse(id.as_str()), Some(id));
        for text in ["", "evt_", "tx_0192", "evt_../x"] {
            assert_eq!(EventId::parse(text), None, "{text}");
        }
        let v4 = format!("evt_{}", uuid::Uuid::new_v4().simple());
        assert_eq!(EventId::parse(&v4), None);
    }

    #[test]
    fn every_final_refund_status_has_an_event() {
        use crate::refund::RefundStatus;
        for status in RefundStatus::ALL {
            let event = EventType::of_refund(status);
            assert_eq!(event.is_none(), status == RefundStatus::Pending);
            if let Some(event) = event {
                assert_eq!(event.as_str(), format!("refund.{status}"));
                assert_eq!(event.as_str().parse::<EventType>(), Ok(event));
            }
        }
    }

    #[test]
    fn every_status_but_pending_has_an_event() {
        for status in Status::ALL {
            let event = EventType::of_status(status);
            assert_eq!(event.is_none(), status == Status::Pending);
            if let Some(event) = event {
                assert_eq!(event.as_str().parse::<EventType>(), Ok(event));
                assert_eq!(event.as_str(), format!("transaction.{status}"));
            }
        }
    }
}
