//! Refunds: the consumer of [`REFUND_STREAM`] (group [`REFUND_GROUP`]),
//! beside the charge consumer (docs/architecture.md "Refunds").
//!
//! Each entry names a `pending` refund; the refund record says how much,
//! of which charge, at which PSP. The worker calls that PSP with
//! `Idempotency-Key = refund id`, so a redelivery, a retry or a second
//! worker never refunds twice, settles the refund by compare-and-set
//! ([`platform::refund::settle`]: `pending` → `succeeded` | `failed`, a
//! failure giving the reservation back), and only then acknowledges and
//! deletes the entry. A retryable outcome (timeout, refused connection,
//! 429, 5xx) is tried again after a backoff while the retry budget
//! (`PSP_RETRY_BUDGET_SECS`, counted from the refund's creation) lasts;
//! the worker keeps the entry meanwhile, refreshing its idle time so no
//! other consumer takes it over. A crash leaves the entry pending: the same
//! consumer name resumes it at start, any other reclaims it after
//! `CONNECTOR_CLAIM_IDLE_MS`, and the refund is made again under the same
//! key, which the PSP answers with its first decision.
//!
//! A refund that fails after a timeout may in truth have been made: the
//! PSP was not heard. Its reservation is given back all the same; the PSP
//! itself never refunds a charge above its amount, so a later refund of
//! the same amount is refused there rather than paid twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use platform::Shutdown;
use platform::keyspace::{REFUND_GROUP, REFUND_STREAM, refund_field};
use platform::psp::PspName;
use platform::redis::Redis;
use platform::refund::{RefundFailure, RefundMessage, RefundStatus, SettleOutcome};
use redis::aio::ConnectionManager;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::psp::RefundOutcome;
use crate::routing::{Psps, SINGLE_PSP};
use crate::stream::{self, Entry, Queue, READ_BLOCK_MS, now_ms};
use crate::worker::backoff;

/// Pause after a Redis error before the loop tries again.
const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// What every refund worker shares.
pub struct RefundWorker {
    pub redis: Redis,
    pub psps: Arc<Psps>,
    /// How long after its creation a refund is still retried.
    pub budget: Duration,
    pub base: Duration,
    pub max: Duration,
    /// The consumer name, to keep held entries fresh.
    pub name: String,
    /// How often a held entry's idle time is reset (half the claim time).
    pub refresh: Duration,
}

pub struct RefundConsumer {
    pub worker: Arc<RefundWorker>,
    /// Used only for the blocking XREADGROUP.
    pub reader: Redis,
    pub concurrency: usize,
    pub claim_idle: Duration,
    pub drain_timeout: Duration,
}

impl RefundConsumer {
    /// Runs until `shutdown`, then waits up to the drain timeout for the
    /// refunds in flight; what does not finish stays pending.
    pub async fn run(self, shutdown: Shutdown) {
        let name = self.worker.name.clone();
        let mut conn = self.worker.redis.conn();
        let mut reader = self.reader.conn();
        loop {
            match stream::ensure_group_of(&mut conn, Queue::REFUNDS).await {
                Ok(()) => break,
                Err(error) => tracing::warn!(%error, "cannot create the refund group yet"),
            }
            tokio::select! {
                () = tokio::time::sleep(ERROR_PAUSE) => {}
                () = shutdown.wait() => return,
            }
        }
        tracing::info!(consumer = %name, "consuming refunds");
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut tasks = JoinSet::new();
        // Own pending entries first (a restart under the same name), then
        // new ones, with a reclaim of stale ones every half claim time.
        let mut own = Some("0".to_owned());
        let claim_every = (self.claim_idle / 2).max(Duration::from_millis(50));
        let mut next_claim = tokio::time::Instant::now();
        let mut claim_cursor = "0-0".to_owned();
        while !shutdown.is_triggered() {
            while tasks.try_join_next().is_some() {}
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = tasks.join_next() => {}
                    () = shutdown.wait() => break,
                }
                continue;
            }
            let read = if let Some(after) = own.take() {
                let read =
                    stream::read_group(&mut conn, Queue::REFUNDS, &name, free, None, &after).await;
                if let Ok(entries) = &read
                    && let Some(last) = entries.last()
                {
                    own = Some(last.id.clone());
                }
                read
            } else if tokio::time::Instant::now() >= next_claim {
                next_claim = tokio::time::Instant::now() + claim_every;
                let idle = self.claim_idle.as_millis() as u64;
                stream::claim_stale_of(&mut conn, Queue::REFUNDS, &name, idle, &claim_cursor, free)
                    .await
                    .map(|(entries, cursor)| {
                        if cursor != "0-0" {
                            next_claim = tokio::time::Instant::now();
                        }
                        claim_cursor = cursor;
                        entries
                    })
            } else {
                tokio::select! {
                    read = stream::read_group(&mut reader, Queue::REFUNDS, &name, free, Some(READ_BLOCK_MS), ">") => read,
                    () = shutdown.wait() => break,
                }
            };
            match read {
                Ok(entries) => {
                    for entry in entries {
                        if !in_flight.lock().expect("lock").insert(entry.id.clone()) {
                            continue;
                        }
                        let permit = permits.clone().try_acquire_owned();
                        let Ok(permit) = permit else {
                            in_flight.lock().expect("lock").remove(&entry.id);
                            continue;
                        };
                        let (worker, in_flight, shutdown) =
                            (self.worker.clone(), in_flight.clone(), shutdown.clone());
                        tasks.spawn(async move {
                            let id = entry.id.clone();
                            worker.handle(entry, &shutdown).await;
                            in_flight.lock().expect("lock").remove(&id);
                            drop(permit);
                        });
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "reading the refund stream failed; retrying");
                    own = Some("0".to_owned());
                    if error.code() == Some("NOGROUP")
                        && let Err(error) = stream::ensure_group_of(&mut conn, Queue::REFUNDS).await
                    {
                        tracing::warn!(%error, "recreating the refund group failed");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(ERROR_PAUSE) => {}
                        () = shutdown.wait() => {}
                    }
                }
            }
        }
        crate::consumer::drain_within(&mut tasks, self.drain_timeout, "refunds").await;
        tracing::info!("refund consumer stopped");
    }
}

/// What follows one PSP answer.
enum Next {
    Settle(RefundStatus, Vec<(&'static str, String)>),
    Retry(Duration),
}

impl RefundWorker {
    /// Handles `entry`; a Redis error or a shutdown during a backoff leaves
    /// it pending for a later delivery.
    pub async fn handle(&self, entry: Entry, shutdown: &Shutdown) {
        let mut conn = self.redis.conn();
        let Some(message) = entry
            .payload
            .as_deref()
            .and_then(|payload| RefundMessage::from_payload(payload).ok())
        else {
            tracing::warn!(entry_id = %entry.id, "undecodable refund message; dropped");
            if let Err(error) = stream::finish_of(&mut conn, Queue::REFUNDS, &entry.id).await {
                tracing::warn!(entry_id = %entry.id, %error, "could not drop it; left pending");
            }
            return;
        };
        let span = tracing::info_span!(
            "refund",
            refund_id = %message.refund_id,
            transaction_id = %message.transaction_id,
            request_id = %message.request_id,
            entry_id = %entry.id,
        );
        if let Err(error) = self
            .refund(&mut conn, &entry.id, &message, shutdown)
            .instrument(span.clone())
            .await
        {
            span.in_scope(|| tracing::warn!(%error, "redis error; refund left pending"));
        }
    }

    async fn refund(
        &self,
        conn: &mut ConnectionManager,
        entry_id: &str,
        message: &RefundMessage,
        shutdown: &Shutdown,
    ) -> redis::RedisResult<()> {
        let key = platform::keyspace::refund(&message.refund_id);
        let record: HashMap<String, String> =
            redis::cmd("HGETALL").arg(&key).query_async(conn).await?;
        let field = |name: &str| record.get(name).cloned().unwrap_or_default();
        if record.is_empty() || field(refund_field::MERCHANT_ID) != message.merchant_id {
            tracing::warn!("no such refund; acknowledging");
            return stream::finish_of(conn, Queue::REFUNDS, entry_id).await;
        }
        if field(refund_field::STATUS) != RefundStatus::Pending.as_str() {
            tracing::info!("already settled; acknowledging duplicate delivery");
            return stream::finish_of(conn, Queue::REFUNDS, entry_id).await;
        }
        let amount: u64 = field(refund_field::AMOUNT).parse().unwrap_or(0);
        let charge = field(refund_field::PSP_REFERENCE);
        // A record charged before there were several PSPs names none.
        let name = record
            .get(refund_field::PSP)
            .map_or(SINGLE_PSP, String::as_str);
        let psp = PspName::parse(name)
            .ok()
            .and_then(|name| self.psps.get(&name));
        let Some(psp) = psp else {
            tracing::warn!(psp = name, "no such PSP configured; failing the refund");
            let fields = vec![(
                refund_field::FAILURE_REASON,
                RefundFailure::UnknownPsp.as_str().to_owned(),
            )];
            return self
                .settle(conn, entry_id, message, RefundStatus::Failed, fields)
                .await;
        };
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let _: i64 = redis::cmd("HINCRBY")
                .arg(&key)
                .arg(refund_field::ATTEMPTS)
                .arg(1)
                .query_async(conn)
                .await?;
            let outcome = psp
                .refund(
                    &charge,
                    amount,
                    message.refund_id.as_str(),
                    &message.request_id,
                )
                .await;
            let next = match outcome {
                RefundOutcome::Succeeded(psp_refund_id) => Next::Settle(
                    RefundStatus::Succeeded,
                    vec![(refund_field::PSP_REFUND_ID, psp_refund_id)],
                ),
                RefundOutcome::Failed(reason, detail) => {
                    tracing::warn!(reason = reason.as_str(), %detail, "the PSP refused the refund");
                    Next::Settle(
                        RefundStatus::Failed,
                        vec![(refund_field::FAILURE_REASON, reason.as_str().to_owned())],
                    )
                }
                RefundOutcome::Retryable(error) => {
                    let deadline = message.created_ms + self.budget.as_millis() as u64;
                    let left = deadline.saturating_sub(now_ms());
                    if left == 0 {
                        tracing::warn!(attempt, %error, "retry budget exhausted; failing the refund");
                        Next::Settle(
                            RefundStatus::Failed,
                            vec![(
                                refund_field::FAILURE_REASON,
                                RefundFailure::PspUnavailable.as_str().to_owned(),
                            )],
                        )
                    } else {
                        let delay =
                            backoff(attempt, self.base, self.max).min(Duration::from_millis(left));
                        tracing::info!(attempt, %error, retry_in_ms = delay.as_millis() as u64, "retryable PSP error");
                        Next::Retry(delay)
                    }
                }
            };
            match next {
                Next::Settle(to, fields) => {
                    return self.settle(conn, entry_id, message, to, fields).await;
                }
                Next::Retry(delay) => {
                    if !self.wait(conn, entry_id, delay, shutdown).await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Waits `delay`, keeping the entry ours (its idle time reset every
    /// `refresh`). False when shutdown came first.
    async fn wait(
        &self,
        conn: &mut ConnectionManager,
        entry_id: &str,
        delay: Duration,
        shutdown: &Shutdown,
    ) -> redis::RedisResult<bool> {
        let until = tokio::time::Instant::now() + delay;
        loop {
            let now = tokio::time::Instant::now();
            if now >= until {
                return Ok(true);
            }
            let step = (until - now).min(self.refresh);
            tokio::select! {
                () = tokio::time::sleep(step) => {}
                () = shutdown.wait() => return Ok(false),
            }
            let _: redis::Value = redis::cmd("XCLAIM")
                .arg(REFUND_STREAM)
                .arg(REFUND_GROUP)
                .arg(&self.name)
                .arg(0)
                .arg(entry_id)
                .arg("JUSTID")
                .query_async(conn)
                .await?;
        }
    }

    /// Settles the refund, then acknowledges the entry.
    async fn settle(
        &self,
        conn: &mut ConnectionManager,
        entry_id: &str,
        message: &RefundMessage,
        to: RefundStatus,
        fields: Vec<(&'static str, String)>,
    ) -> redis::RedisResult<()> {
        let outcome = platform::refund::settle(
            conn,
            &message.refund_id,
            &message.transaction_id,
            &message.merchant_id,
            to,
            &fields,
        )
        .await?;
        match outcome {
            SettleOutcome::Applied => tracing::info!(status = %to, "refund final"),
            SettleOutcome::Refused { current } => {
                tracing::info!(status = %current, "settled elsewhere; acknowledging");
            }
            SettleOutcome::NotFound => tracing::warn!("refund vanished; acknowledging"),
        }
        stream::finish_of(conn, Queue::REFUNDS, entry_id).await
    }
}
