//! Handling one stream entry: decode, charge, record the outcome.
//!
//! The order of steps is what makes delivery at-least-once but the effect
//! exactly-once: the status moves to `processing` (counting the attempt)
//! before the PSP is called, to a final status by compare-and-set after it,
//! and only then is the entry acknowledged. A crash anywhere leaves the
//! entry pending; whoever reclaims it charges again under the same
//! idempotency key (the PSP replays its answer) or finds the transaction
//! already final and just acknowledges.

use std::sync::Arc;
use std::time::Duration;

use platform::queue::ChargeMessage;
use platform::redis::Redis;
use platform::transaction::{self, Status, TransactionId, Transition, TransitionOutcome};
use tracing::Instrument;

use crate::psp::{ChargeOutcome, PspClient};
use crate::stream::{self, DeadLetter, Entry};

/// What every worker shares.
pub struct Worker {
    pub redis: Redis,
    pub psp: PspClient,
    /// Opens the sealed card of each message.
    pub card_key: platform::crypto::CardKey,
    pub retry: RetryPolicy,
}

/// When a retryable outcome is tried again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// How long after its first attempt a transaction is still retried.
    pub budget: Duration,
    /// An optional cap on attempts, on top of the budget.
    pub max_attempts: Option<u32>,
    /// Backoff: full jitter up to `base · 2^(attempt-1)`, capped at `max`.
    pub base: Duration,
    pub max: Duration,
}

/// `failure_reason` when every attempt hit a retryable error.
pub const FAILURE_PSP_UNAVAILABLE: &str = "psp_unavailable";
/// `failure_reason` when the PSP refused the request as malformed.
pub const FAILURE_PSP_REJECTED: &str = "psp_rejected_request";
/// `failure_reason` when the message's card does not open with this
/// connector's `CARD_ENCRYPTION_KEY` (keys differ, or it was altered).
pub const FAILURE_CARD_UNREADABLE: &str = "card_unreadable";

impl Worker {
    /// Handles `entry`. A Redis error leaves it pending (it is reclaimed
    /// after the claim idle time); nothing else does.
    pub async fn handle(self: Arc<Self>, entry: Entry) {
        let message = match decode(&entry) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(entry_id = %entry.id, %error, "undecodable message; dead-lettering");
                let letter = DeadLetter {
                    reason: "undecodable",
                    error,
                    entry_id: entry.id.clone(),
                    ..DeadLetter::default()
                };
                if let Err(error) = stream::dead_letter(&mut self.redis.conn(), &letter).await {
                    tracing::warn!(entry_id = %entry.id, %error, "could not dead-letter; left pending");
                }
                return;
            }
        };
        let span = tracing::info_span!(
            "transaction",
            transaction_id = %message.transaction_id,
            request_id = %message.request_id,
            entry_id = %entry.id,
        );
        let entry_id = entry.id.clone();
        if let Err(error) = self
            .charge(entry_id, message)
            .instrument(span.clone())
            .await
        {
            span.in_scope(
                || tracing::warn!(%error, "redis error; message left pending for reclaim"),
            );
        }
    }

    async fn charge(&self, entry_id: String, mut message: ChargeMessage) -> redis::RedisResult<()> {
        let mut conn = self.redis.conn();
        let id = match TransactionId::parse(&message.transaction_id) {
            Ok(id) => id,
            Err(_) => {
                tracing::warn!("message names no valid transaction id; dead-lettering");
                return stream::dead_letter(
                    &mut conn,
                    &DeadLetter {
                        reason: "undecodable",
                        error: "transaction_id is not a transaction id".into(),
                        entry_id,
                        request_id: Some(message.request_id.clone()),
                        ..DeadLetter::default()
                    },
                )
                .await;
            }
        };
        let letter = |reason, error: String, attempts| DeadLetter {
            reason,
            error,
            entry_id: entry_id.clone(),
            transaction_id: Some(id.to_string()),
            request_id: Some(message.request_id.clone()),
            attempts,
        };

        let Some((status, attempts)) =
            stream::record_state(&mut conn, &transaction::keys::record(&id)).await?
        else {
            tracing::warn!("no such transaction; dead-lettering");
            return stream::dead_letter(
                &mut conn,
                &letter("unknown_transaction", "no transaction record".into(), None),
            )
            .await;
        };
        if status.parse::<Status>().is_ok_and(Status::is_final) {
            tracing::info!(%status, "already final; acknowledging duplicate delivery");
            return stream::finish(&mut conn, &entry_id).await;
        }

        let card = match message.open_card(&self.card_key) {
            Ok(card) => card,
            Err(error) => {
                // No attempt can ever succeed: fail it now, and say why.
                tracing::warn!(%error, "card does not open; failing the transaction");
                let fail = Transition {
                    from: vec![Status::Pending, Status::Processing],
                    to: Status::Failed,
                    add_attempts: 0,
                    fields: vec![("failure_reason", FAILURE_CARD_UNREADABLE.to_owned())],
                };
                transaction::transition(&mut conn, &id, &fail).await?;
                return stream::dead_letter(
                    &mut conn,
                    &letter("undecryptable", error.to_string(), Some(attempts)),
                )
                .await;
            }
        };

        let start = Transition {
            from: vec![Status::Pending, Status::Processing],
            to: Status::Processing,
            add_attempts: 1,
            fields: Vec::new(),
        };
        match transaction::transition(&mut conn, &id, &start).await? {
            TransitionOutcome::Applied => {}
            TransitionOutcome::Refused { current } => {
                tracing::info!(status = %current, "already final; acknowledging duplicate delivery");
                return stream::finish(&mut conn, &entry_id).await;
            }
            TransitionOutcome::NotFound => {
                tracing::warn!("transaction vanished; dead-lettering");
                return stream::dead_letter(
                    &mut conn,
                    &letter("unknown_transaction", "no transaction record".into(), None),
                )
                .await;
            }
        }
        let attempt = attempts + 1;
        let first_attempt_ms = *message.first_attempt_ms.get_or_insert_with(stream::now_ms);

        let outcome = self.psp.charge(&message, &card).await;
        let retry = match &outcome {
            ChargeOutcome::Retryable(_) => {
                Some(self.retry.next(attempt, first_attempt_ms, stream::now_ms()))
            }
            _ => None,
        };
        let (to, fields, dead) = match outcome {
            ChargeOutcome::Approved => (Status::Succeeded, vec![], None),
            ChargeOutcome::Declined(code) => (Status::Declined, vec![("decline_code", code)], None),
            ChargeOutcome::Rejected(error) => (
                Status::Failed,
                vec![("failure_reason", FAILURE_PSP_REJECTED.to_owned())],
                Some(letter("psp_rejected_request", error, Some(attempt))),
            ),
            ChargeOutcome::Retryable(error) => match retry.expect("decided for retryable") {
                Retry::GiveUp(reason) => (
                    Status::Failed,
                    vec![("failure_reason", FAILURE_PSP_UNAVAILABLE.to_owned())],
                    Some(letter(reason, error, Some(attempt))),
                ),
                Retry::After(delay) => {
                    tracing::info!(
                        attempt,
                        %error,
                        retry_in_ms = delay.as_millis() as u64,
                        "retryable PSP error; retry scheduled"
                    );
                    let due = stream::now_ms() + delay.as_millis() as u64;
                    return stream::schedule_retry(
                        &mut conn,
                        &entry_id,
                        id.as_str(),
                        &message.to_payload(),
                        due,
                    )
                    .await;
                }
            },
        };

        let done = Transition {
            from: vec![Status::Processing],
            to,
            add_attempts: 0,
            fields,
        };
        match transaction::transition(&mut conn, &id, &done).await? {
            TransitionOutcome::Applied => {
                tracing::info!(status = %to, attempt, "transaction final");
                match dead {
                    // The transaction is final either way; the dead letter
                    // and the acknowledgement go together.
                    Some(letter) => {
                        tracing::warn!(reason = letter.reason, error = %letter.error, "dead-lettering");
                        stream::dead_letter(&mut conn, &letter).await
                    }
                    None => stream::finish(&mut conn, &entry_id).await,
                }
            }
            TransitionOutcome::Refused { current } => {
                // Another worker finished it first (a duplicate delivery
                // racing this one); its outcome stands.
                tracing::info!(status = %current, "finished elsewhere; acknowledging");
                stream::finish(&mut conn, &entry_id).await
            }
            TransitionOutcome::NotFound => {
                tracing::warn!("transaction vanished while charging; acknowledging");
                stream::finish(&mut conn, &entry_id).await
            }
        }
    }
}

/// What to do after a retryable outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Try again after this long.
    After(Duration),
    /// Stop: the dead-letter reason.
    GiveUp(&'static str),
}

impl RetryPolicy {
    /// After attempt number `attempt` of a transaction first tried at
    /// `first_attempt_ms` failed retryably (at `now_ms`): the next delay,
    /// never past the end of the budget (so the last attempt is made at its
    /// end), or why to stop.
    fn next(&self, attempt: u32, first_attempt_ms: u64, now_ms: u64) -> Retry {
        if self.max_attempts.is_some_and(|max| attempt >= max) {
            return Retry::GiveUp("max_attempts_exceeded");
        }
        let elapsed = Duration::from_millis(now_ms.saturating_sub(first_attempt_ms));
        let Some(left) = self
            .budget
            .checked_sub(elapsed)
            .filter(|left| !left.is_zero())
        else {
            return Retry::GiveUp("retry_budget_exhausted");
        };
        Retry::After(backoff(attempt, self.base, self.max).min(left))
    }
}

/// The message in an entry, or why there is none. The reason never quotes
/// the payload (it may hold a card number): serde's messages can echo
/// values, so only the error class and position are kept.
fn decode(entry: &Entry) -> Result<ChargeMessage, String> {
    let payload = entry
        .payload
        .as_deref()
        .ok_or_else(|| format!("no `{}` field", platform::queue::PAYLOAD_FIELD))?;
    ChargeMessage::from_payload(payload).map_err(|error| {
        format!(
            "payload is not a charge message ({:?} error at line {} column {})",
            error.classify(),
            error.line(),
            error.column()
        )
    })
}

/// Exponential backoff with full jitter: a uniformly random delay up to
/// `base · 2^(attempt-1)`, capped at `max`, so retries of many transactions
/// failing together spread out instead of hammering the PSP in waves.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let cap = base.saturating_mul(1 << exponent).min(max);
    cap.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for _ in 0..100 {
            assert!(backoff(1, base, max) <= base);
            assert!(backoff(3, base, max) <= base * 4);
            assert!(backoff(30, base, max) <= max);
        }
    }

    #[test]
    fn retries_stop_at_the_budget_or_the_optional_cap() {
        let policy = |max_attempts| RetryPolicy {
            budget: Duration::from_secs(60),
            max_attempts,
            base: Duration::from_millis(250),
            max: Duration::from_secs(5),
        };
        let now = 1_000_000_000;
        let unlimited = policy(None);
        // Attempt 40 within the budget is retried, within the backoff cap.
        match unlimited.next(40, now - 1_000, now) {
            Retry::After(delay) => assert!(delay <= Duration::from_secs(5), "{delay:?}"),
            other => panic!("{other:?}"),
        }
        // Near the end of the budget the delay is what is left of it.
        match unlimited.next(40, now - 59_900, now) {
            Retry::After(delay) => assert!(delay <= Duration::from_millis(100), "{delay:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            unlimited.next(2, now - 60_000, now),
            Retry::GiveUp("retry_budget_exhausted")
        );
        let capped = policy(Some(3));
        assert!(matches!(capped.next(2, now, now), Retry::After(_)));
        assert_eq!(
            capped.next(3, now, now),
            Retry::GiveUp("max_attempts_exceeded")
        );
    }

    #[test]
    fn decode_errors_do_not_quote_the_payload() {
        let entry = Entry {
            id: "1-0".into(),
            payload: Some(r#"{"transaction_id":"tx_1","card":{"number":4242424242424242}}"#.into()),
        };
        let error = decode(&entry).unwrap_err();
        assert!(!error.contains("4242"), "{error}");
        let missing = Entry {
            id: "1-0".into(),
            payload: None,
        };
        assert!(decode(&missing).is_err());
    }
}
