//! Handling one stream entry: decode, route, charge, record the outcome.
//!
//! The order of steps is what makes delivery at-least-once but the effect
//! exactly-once: the status moves to `processing` (counting the attempt and
//! naming the PSP about to be called) before a PSP is called, to a final
//! status by compare-and-set after it, and only then is the entry
//! acknowledged. A crash anywhere leaves the entry pending; whoever reclaims
//! it calls the PSP the record names first, under the same idempotency key
//! (the PSP replays its answer), or finds the transaction already final and
//! just acknowledges.
//!
//! Across PSPs the rule is: a payment moves to the next PSP of its route
//! only on proof that the current one charged nothing — it was unavailable
//! (refused connection, 429, 503) or, after a timeout or unreadable answer,
//! a lookup by idempotency key found nothing and fenced the key. Without
//! that proof the payment stays with the PSP the record names and is
//! retried there. So at most one PSP can ever have charged it, and that PSP
//! is the one the record names. Declines and rejections are final.

use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::card::CardBrand;
use platform::keyspace::{self, field};
use platform::psp::PspName;
use platform::queue::{CardDetails, ChargeMessage, DeadLetterReason};
use platform::redis::Redis;
use platform::transaction::{
    self, Attempt, AttemptOutcome, QueueEntry, Status, TransactionId, Transition, TransitionOutcome,
};
use tracing::Instrument;

use crate::breaker::Breakers;
use crate::psp::{ChargeOutcome, Resolution};
use crate::routing::{Payment, Psps, Routing};
use crate::stream::{self, DeadLetter, Entry, Queue};

/// What every worker shares.
pub struct Worker {
    pub redis: Redis,
    pub psps: Arc<Psps>,
    pub routing: Routing,
    pub breakers: Arc<Breakers>,
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

/// What [`Worker::prepare`] found: a record to charge and its opened card.
struct Prepared {
    card: CardDetails,
    attempts: u32,
    brand: Option<CardBrand>,
    /// The PSP the record names: it may have charged, so it goes first.
    pinned: Option<PspName>,
}

/// A final status to record, with its fields and the dead letter, if any.
struct Final {
    to: Status,
    fields: Vec<(&'static str, String)>,
    dead: Option<(DeadLetterReason, String)>,
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
        let Some(prepared) = self.prepare(&mut conn, &job, &message).await? else {
            return Ok(());
        };
        let first_attempt_ms = *message.first_attempt_ms.get_or_insert_with(stream::now_ms);
        let payment = Payment {
            amount: message.amount,
            currency: &message.currency,
            brand: prepared.brand,
            merchant: &message.merchant_id,
        };
        let (route, rule) = self.routing.route(&payment);
        let order: Vec<PspName> = prepared
            .pinned
            .iter()
            .chain(
                route
                    .iter()
                    .filter(|psp| Some(*psp) != prepared.pinned.as_ref()),
            )
            .cloned()
            .collect();
        tracing::debug!(rule, route = ?order, "routed");

        let mut attempts = prepared.attempts;
        // The last call's attempt, logged with the next change of the record.
        let mut unlogged: Option<Attempt> = None;
        for (i, psp) in order.iter().enumerate() {
            // The pinned PSP is never skipped: only it can say whether it
            // charged, and nothing else may be tried until it has.
            let pinned = i == 0 && prepared.pinned.is_some();
            if !pinned && !self.breakers.admit(psp).await? {
                tracing::debug!(%psp, "circuit breaker open; skipping");
                continue;
            }
            // Name the PSP on the record before calling it: whoever handles
            // this payment next asks that PSP first.
            let begin = Transition {
                from: vec![Status::Pending, Status::Processing],
                to: Status::Processing,
                add_attempts: 1,
                log: unlogged.take(),
                fields: vec![(field::PSP, psp.to_string())],
            };
            if !self.apply(&mut conn, &job, &begin).await? {
                return Ok(());
            }
            attempts += 1;
            let (outcome, attempt) = self.call(psp, &message, &prepared.card, &job).await;
            let done = match outcome {
                ChargeOutcome::Approved(charge_id) => Final {
                    to: Status::Succeeded,
                    fields: vec![(field::PSP_REFERENCE, charge_id)],
                    dead: None,
                },
                ChargeOutcome::Declined(code) => Final {
                    to: Status::Declined,
                    fields: vec![(field::DECLINE_CODE, code)],
                    dead: None,
                },
                ChargeOutcome::Rejected(error) => Final {
                    to: Status::Failed,
                    fields: vec![FailureReason::PspRejectedRequest.field()],
                    dead: Some((DeadLetterReason::PspRejectedRequest, error)),
                },
                ChargeOutcome::Unavailable(error) => {
                    tracing::info!(%psp, attempt = attempts, %error, "PSP charged nothing; trying the next of the route");
                    unlogged = Some(attempt);
                    continue;
                }
                ChargeOutcome::Unknown(error) => {
                    // Not settled: the payment stays with this PSP.
                    tracing::info!(%psp, attempt = attempts, %error, "outcome unknown; staying with this PSP");
                    return self
                        .retry_or_fail(
                            &mut conn,
                            &job,
                            &message,
                            attempts,
                            first_attempt_ms,
                            error,
                            Some(attempt),
                        )
                        .await;
                }
            };
            return record(&mut conn, &job, done, attempts, Some(attempt)).await;
        }
        // No PSP of the route charged, and none can have: the route is
        // tried again later, from the top.
        let error = unlogged
            .as_ref()
            .and_then(|attempt| attempt.error.clone())
            .unwrap_or_else(|| {
                "every PSP of the route is skipped by its circuit breaker".to_owned()
            });
        self.retry_or_fail(
            &mut conn,
            &job,
            &message,
            attempts,
            first_attempt_ms,
            error,
            unlogged,
        )
        .await
    }

    /// Applies `change`; `false` (after acknowledging or dead-lettering the
    /// entry) when the transaction is final or gone.
    async fn apply(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        job: &Job,
        change: &Transition,
    ) -> redis::RedisResult<bool> {
        match transaction::transition(conn, &job.id, &job.merchant, change).await? {
            TransitionOutcome::Applied => Ok(true),
            TransitionOutcome::Refused { current } => {
                tracing::info!(status = %current, "already final; acknowledging duplicate delivery");
                stream::finish(conn, &job.entry_id).await.map(|()| false)
            }
            TransitionOutcome::NotFound => {
                tracing::warn!("transaction vanished; dead-lettering");
                let letter = job.letter(
                    DeadLetterReason::UnknownTransaction,
                    "no transaction record".into(),
                    None,
                );
                stream::dead_letter(conn, &letter).await.map(|()| false)
            }
        }
    }

    /// One call to `psp`, settled: an unknown outcome is looked up by
    /// idempotency key before it is returned. Reports to the breaker.
    async fn call(
        &self,
        psp: &PspName,
        message: &ChargeMessage,
        card: &CardDetails,
        job: &Job,
    ) -> (ChargeOutcome, Attempt) {
        let at = transaction::now_rfc3339();
        let started = Instant::now();
        let key = platform::psp::idempotency_key(&job.id, psp);
        let outcome = match self.psps.get(psp) {
            None => ChargeOutcome::Unknown(format!("{psp} is not among this connector's PSP_URLS")),
            Some(client) => {
                let first = client.charge(message, card, &key).await;
                let healthy = !matches!(
                    first,
                    ChargeOutcome::Unavailable(_) | ChargeOutcome::Unknown(_)
                );
                if let Err(error) = self.breakers.record(psp, healthy).await {
                    tracing::warn!(%psp, %error, "could not update the circuit breaker");
                }
                match first {
                    ChargeOutcome::Unknown(error) => {
                        match client.resolve(&key, &job.request_id).await {
                            Resolution::Decided(decided) => {
                                tracing::info!(%psp, %error, "the lookup found the charge's decision");
                                decided
                            }
                            Resolution::NotCharged => ChargeOutcome::Unavailable(format!(
                                "{error}; the lookup found no charge"
                            )),
                            Resolution::Failed(lookup) => {
                                ChargeOutcome::Unknown(format!("{error}; {lookup}"))
                            }
                        }
                    }
                    first => first,
                }
            }
        };
        let (kind, error) = match &outcome {
            ChargeOutcome::Approved(_) => (AttemptOutcome::Approved, None),
            ChargeOutcome::Declined(_) => (AttemptOutcome::Declined, None),
            ChargeOutcome::Unavailable(e) => (AttemptOutcome::Unavailable, Some(e.clone())),
            ChargeOutcome::Unknown(e) => (AttemptOutcome::Unknown, Some(e.clone())),
            ChargeOutcome::Rejected(e) => (AttemptOutcome::Rejected, Some(e.clone())),
        };
        let attempt = Attempt {
            psp: psp.to_string(),
            outcome: kind,
            latency_ms: started.elapsed().as_millis() as u64,
            at,
            error,
        };
        (outcome, attempt)
    }

    /// After attempt number `attempts` settled nothing: park the message
    /// for another try, or fail the transaction when the budget is spent.
    #[allow(clippy::too_many_arguments)]
    async fn retry_or_fail(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        job: &Job,
        message: &ChargeMessage,
        attempts: u32,
        first_attempt_ms: u64,
        error: String,
        log: Option<Attempt>,
    ) -> redis::RedisResult<()> {
        match self
            .retry
            .next(attempts, first_attempt_ms, stream::now_ms())
        {
            Retry::After(delay) => {
                if let Some(attempt) = log {
                    let logged = Transition {
                        from: vec![Status::Pending, Status::Processing],
                        to: Status::Processing,
                        add_attempts: 0,
                        log: Some(attempt),
                        fields: Vec::new(),
                    };
                    if !self.apply(conn, job, &logged).await? {
                        return Ok(());
                    }
                }
                tracing::info!(
                    attempt = attempts,
                    %error,
                    retry_in_ms = delay.as_millis() as u64,
                    "retry scheduled"
                );
                let due = stream::now_ms() + delay.as_millis() as u64;
                stream::schedule_retry(
                    conn,
                    &job.entry_id,
                    job.id.as_str(),
                    &message.to_payload(),
                    due,
                )
                .await
            }
            Retry::GiveUp(reason) => {
                let done = Final {
                    to: Status::Failed,
                    fields: vec![FailureReason::PspUnavailable.field()],
                    dead: Some((reason, error)),
                };
                record(conn, job, done, attempts, log).await
            }
        }
    }

    /// Everything before routing: the record exists and is not final, and
    /// the card opens. `None` when the entry was finished or dead-lettered
    /// instead.
    async fn prepare(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        job: &Job,
        message: &ChargeMessage,
    ) -> redis::RedisResult<Option<Prepared>> {
        let Some(state) = stream::record_state(conn, &keyspace::record(&job.id)).await? else {
            tracing::warn!("no such transaction; dead-lettering");
            let letter = job.letter(
                DeadLetterReason::UnknownTransaction,
                "no transaction record".into(),
                None,
            );
            return stream::dead_letter(conn, &letter).await.map(|()| None);
        };
        if state.status.parse::<Status>().is_ok_and(Status::is_final) {
            tracing::info!(status = %state.status, "already final; acknowledging duplicate delivery");
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
                    Some(state.attempts),
                );
                return stream::dead_letter(conn, &letter).await.map(|()| None);
            }
        };
        let pinned = state.psp.as_deref().map(|name| {
            PspName::parse(name).unwrap_or_else(|_| {
                // Not a name this code writes; still the PSP that may have
                // charged, so kept — it will be found unconfigured.
                PspName::parse("unknown").expect("a valid name")
            })
        });
        Ok(Some(Prepared {
            card,
            attempts: state.attempts,
            brand: state.brand.as_deref().and_then(CardBrand::parse),
            pinned,
        }))
    }
}

/// Records a final status by compare-and-set, with the last attempt, and
/// acknowledges the entry: in the same script when it has no dead letter
/// (every payment that settles), after it with the dead letter otherwise.
async fn record(
    conn: &mut redis::aio::ConnectionManager,
    job: &Job,
    done: Final,
    attempt: u32,
    log: Option<Attempt>,
) -> redis::RedisResult<()> {
    let to = done.to;
    let dead = done
        .dead
        .map(|(reason, error)| job.letter(reason, error, Some(attempt)));
    let change = Transition {
        from: vec![Status::Pending, Status::Processing],
        to,
        add_attempts: 0,
        log,
        fields: done.fields,
    };
    let acknowledged = dead.is_none();
    let outcome = match &dead {
        Some(_) => transaction::transition(conn, &job.id, &job.merchant, &change).await?,
        None => {
            let entry = QueueEntry {
                stream: Queue::CHARGES.stream,
                group: Queue::CHARGES.group,
                entry_id: &job.entry_id,
            };
            transaction::transition_and_acknowledge(conn, &job.id, &job.merchant, &change, entry)
                .await?
        }
    };
    match outcome {
        TransitionOutcome::Applied => {
            tracing::info!(status = %to, attempt, "transaction final");
            match dead {
                // The transaction is final either way; the dead letter and
                // the acknowledgement go together.
                Some(letter) => {
                    tracing::warn!(reason = %letter.reason, error = %letter.error, "dead-lettering");
                    stream::dead_letter(conn, &letter).await
                }
                None => Ok(()),
            }
        }
        TransitionOutcome::Refused { current } => {
            // Another worker finished it first (a duplicate delivery racing
            // this one); its outcome stands.
            tracing::info!(status = %current, "finished elsewhere; acknowledging");
            if acknowledged {
                return Ok(());
            }
            stream::finish(conn, &job.entry_id).await
        }
        TransitionOutcome::NotFound => {
            tracing::warn!("transaction vanished while charging; acknowledging");
            if acknowledged {
                return Ok(());
            }
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
