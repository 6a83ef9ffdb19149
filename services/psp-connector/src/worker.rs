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

use platform::keyspace::{self, field};
use platform::queue::{CardDetails, ChargeMessage, DeadLetterReason};
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

/// `failure_reason` of a transaction the connector failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// Every attempt within the retry budget hit a retryable error.
    PspUnavailable,
    /// The PSP refused the request as malformed.
    PspRejectedRequest,
    /// The message's card does not open with this connector's
    /// `CARD_ENCRYPTION_KEY` (keys differ, or it was altered).
    CardUnreadable,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::PspUnavailable => "psp_unavailable",
            FailureReason::PspRejectedRequest => "psp_rejected_request",
            FailureReason::CardUnreadable => "card_unreadable",
        }
    }

    fn field(self) -> (&'static str, String) {
        (field::FAILURE_REASON, self.as_str().to_owned())
    }
}

/// The transaction one entry is about, with what a dead letter names.
struct Job {
    entry_id: String,
    id: TransactionId,
    merchant: String,
    request_id: String,
}

impl Job {
    fn letter(&self, reason: DeadLetterReason, error: String, attempts: Option<u32>) -> DeadLetter {
        DeadLetter {
            transaction_id: Some(self.id.to_string()),
            request_id: Some(self.request_id.clone()),
            attempts,
            ..DeadLetter::new(reason, error, &self.entry_id)
        }
    }
}

/// What follows a PSP's answer.
enum Next {
    /// Record this final status with these fields, and dead-letter the
    /// entry when there is a reason to.
    Final {
        to: Status,
        fields: Vec<(&'static str, String)>,
        dead: Option<(DeadLetterReason, String)>,
    },
    /// Park the message for another attempt after `delay`.
    Retry { delay: Duration, error: String },
}

impl Worker {
    /// Handles `entry`. A Redis error leaves it pending (it is reclaimed
    /// after the claim idle time); nothing else does.
    pub async fn handle(self: Arc<Self>, entry: Entry) {
        let message = match decode(&entry) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(entry_id = %entry.id, %error, "undecodable message; dead-lettering");
                let letter = DeadLetter::new(DeadLetterReason::Undecodable, error, &entry.id);
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
        if let Err(error) = self
            .charge(entry.id, message)
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
        let Ok(id) = TransactionId::parse(&message.transaction_id) else {
            tracing::warn!("message names no valid transaction id; dead-lettering");
            let letter = DeadLetter {
                request_id: Some(message.request_id.clone()),
                ..DeadLetter::new(
                    DeadLetterReason::Undecodable,
                    "transaction_id is not a transaction id",
                    &entry_id,
                )
            };
            return stream::dead_letter(&mut conn, &letter).await;
        };
        let job = Job {
            entry_id,
            id,
            merchant: message.merchant_id.clone(),
            request_id: message.request_id.clone(),
        };
        let Some((card, attempt)) = self.start(&mut conn, &job, &message).await? else {
            return Ok(());
        };
        let first_attempt_ms = *message.first_attempt_ms.get_or_insert_with(stream::now_ms);
        let outcome = self.psp.charge(&message, &card).await;
        match self.retry.decide(outcome, attempt, first_attempt_ms) {
            Next::Retry { delay, error } => {
                tracing::info!(
                    attempt,
                    %error,
                    retry_in_ms = delay.as_millis() as u64,
                    "retryable PSP error; retry scheduled"
                );
                let due = stream::now_ms() + delay.as_millis() as u64;
                stream::schedule_retry(
                    &mut conn,
                    &job.entry_id,
                    job.id.as_str(),
                    &message.to_payload(),
                    due,
                )
                .await
            }
            Next::Final { to, fields, dead } => {
                let dead = dead.map(|(reason, error)| job.letter(reason, error, Some(attempt)));
                record(&mut conn, &job, to, fields, dead, attempt).await
            }
        }
    }

    /// Everything before the PSP call: the record exists and is not final,
    /// the card opens, and the status is `processing` with this attempt
    /// counted. Returns the card and the attempt's number, or `None` when
    /// the entry was finished or dead-lettered instead.
    async fn start(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        job: &Job,
        message: &ChargeMessage,
    ) -> redis::RedisResult<Option<(CardDetails, u32)>> {
        let unknown = || {
            job.letter(
                DeadLetterReason::UnknownTransaction,
                "no transaction record".into(),
                None,
            )
        };
        let Some((status, attempts)) =
            stream::record_state(conn, &keyspace::record(&job.id)).await?
        else {
            tracing::warn!("no such transaction; dead-lettering");
            return stream::dead_letter(conn, &unknown()).await.map(|()| None);
        };
        if status.parse::<Status>().is_ok_and(Status::is_final) {
            tracing::info!(%status, "already final; acknowledging duplicate delivery");
            return stream::finish(conn, &job.entry_id).await.map(|()| None);
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
                    log: None,
                    fields: vec![FailureReason::CardUnreadable.field()],
                };
                transaction::transition(conn, &job.id, &job.merchant, &fail).await?;
                let letter = job.letter(
                    DeadLetterReason::Undecryptable,
                    error.to_string(),
                    Some(attempts),
                );
                return stream::dead_letter(conn, &letter).await.map(|()| None);
            }
        };
        let start = Transition {
            from: vec![Status::Pending, Status::Processing],
            to: Status::Processing,
            add_attempts: 1,
            log: None,
            fields: Vec::new(),
        };
        match transaction::transition(conn, &job.id, &job.merchant, &start).await? {
            TransitionOutcome::Applied => Ok(Some((card, attempts + 1))),
            TransitionOutcome::Refused { current } => {
                tracing::info!(status = %current, "already final; acknowledging duplicate delivery");
                stream::finish(conn, &job.entry_id).await.map(|()| None)
            }
            TransitionOutcome::NotFound => {
                tracing::warn!("transaction vanished; dead-lettering");
                stream::dead_letter(conn, &unknown()).await.map(|()| None)
            }
        }
    }
}

/// Records a final status by compare-and-set, then acknowledges the entry
/// (with its dead letter, when there is one).
async fn record(
    conn: &mut redis::aio::ConnectionManager,
    job: &Job,
    to: Status,
    fields: Vec<(&'static str, String)>,
    dead: Option<DeadLetter>,
    attempt: u32,
) -> redis::RedisResult<()> {
    let done = Transition {
        from: vec![Status::Processing],
        to,
        add_attempts: 0,
        log: None,
        fields,
    };
    match transaction::transition(conn, &job.id, &job.merchant, &done).await? {
        TransitionOutcome::Applied => {
            tracing::info!(status = %to, attempt, "transaction final");
            match dead {
                // The transaction is final either way; the dead letter and
                // the acknowledgement go together.
                Some(letter) => {
                    tracing::warn!(reason = %letter.reason, error = %letter.error, "dead-lettering");
                    stream::dead_letter(conn, &letter).await
                }
                None => stream::finish(conn, &job.entry_id).await,
            }
        }
        TransitionOutcome::Refused { current } => {
            // Another worker finished it first (a duplicate delivery racing
            // this one); its outcome stands.
            tracing::info!(status = %current, "finished elsewhere; acknowledging");
            stream::finish(conn, &job.entry_id).await
        }
        TransitionOutcome::NotFound => {
            tracing::warn!("transaction vanished while charging; acknowledging");
            stream::finish(conn, &job.entry_id).await
        }
    }
}

/// What to do after a retryable outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Try again after this long.
    After(Duration),
    /// Stop: the dead-letter reason.
    GiveUp(DeadLetterReason),
}

impl RetryPolicy {
    /// What follows `outcome` of attempt number `attempt`.
    fn decide(&self, outcome: ChargeOutcome, attempt: u32, first_attempt_ms: u64) -> Next {
        let failed = |reason: FailureReason, dead| Next::Final {
            to: Status::Failed,
            fields: vec![reason.field()],
            dead: Some(dead),
        };
        match outcome {
            ChargeOutcome::Approved => Next::Final {
                to: Status::Succeeded,
                fields: Vec::new(),
                dead: None,
            },
            ChargeOutcome::Declined(code) => Next::Final {
                to: Status::Declined,
                fields: vec![(field::DECLINE_CODE, code)],
                dead: None,
            },
            ChargeOutcome::Rejected(error) => failed(
                FailureReason::PspRejectedRequest,
                (DeadLetterReason::PspRejectedRequest, error),
            ),
            ChargeOutcome::Retryable(error) => {
                match self.next(attempt, first_attempt_ms, stream::now_ms()) {
                    Retry::After(delay) => Next::Retry { delay, error },
                    Retry::GiveUp(reason) => failed(FailureReason::PspUnavailable, (reason, error)),
                }
            }
        }
    }

    /// After attempt number `attempt` of a transaction first tried at
    /// `first_attempt_ms` failed retryably (at `now_ms`): the next delay,
    /// never past the end of the budget (so the last attempt is made at its
    /// end), or why to stop.
    fn next(&self, attempt: u32, first_attempt_ms: u64, now_ms: u64) -> Retry {
        if self.max_attempts.is_some_and(|max| attempt >= max) {
            return Retry::GiveUp(DeadLetterReason::MaxAttemptsExceeded);
        }
        let elapsed = Duration::from_millis(now_ms.saturating_sub(first_attempt_ms));
        let Some(left) = self
            .budget
            .checked_sub(elapsed)
            .filter(|left| !left.is_zero())
        else {
            return Retry::GiveUp(DeadLetterReason::RetryBudgetExhausted);
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
        .ok_or_else(|| format!("no `{}` field", keyspace::PAYLOAD_FIELD))?;
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
            Retry::GiveUp(DeadLetterReason::RetryBudgetExhausted)
        );
        let capped = policy(Some(3));
        assert!(matches!(capped.next(2, now, now), Retry::After(_)));
        assert_eq!(
            capped.next(3, now, now),
            Retry::GiveUp(DeadLetterReason::MaxAttemptsExceeded)
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
