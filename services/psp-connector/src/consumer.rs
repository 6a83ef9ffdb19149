//! The consumer loop: reads the stream, reclaims what dead consumers left,
//! runs up to `CONNECTOR_CONCURRENCY` workers, moves due retries back onto
//! the stream, and drains on shutdown.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platform::Shutdown;
use platform::health::Readiness;
use platform::redis::Redis;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::stream::{self, Entry};
use crate::worker::Worker;

/// Pause after a Redis error before the loop tries again.
const ERROR_PAUSE: Duration = Duration::from_millis(500);
/// A consumer idle this long (and holding nothing) has surely exited.
const PRUNE_MIN_IDLE: Duration = Duration::from_secs(5);
/// Retries moved per script call (the mover loops while there are more).
const MOVE_BATCH: usize = 500;

/// "Is the consumer loop alive?" — half of readiness.
#[derive(Debug, Default)]
pub struct Liveness {
    running: AtomicBool,
    last_beat_ms: AtomicU64,
}

impl Liveness {
    /// A loop turn takes at most one blocking read (or one wait for a free
    /// worker slot) plus an error pause; more than this means it is stuck.
    const STALE_AFTER_MS: u64 = stream::READ_BLOCK_MS + 5_000;

    fn beat(&self) {
        self.last_beat_ms.store(stream::now_ms(), Ordering::Relaxed);
    }

    pub fn readiness(self: &Arc<Self>) -> Readiness {
        let liveness = self.clone();
        Readiness::new(move || {
            let liveness = liveness.clone();
            Box::pin(async move {
                if !liveness.running.load(Ordering::Relaxed) {
                    return Err("consumer loop not running".to_owned());
                }
                let age =
                    stream::now_ms().saturating_sub(liveness.last_beat_ms.load(Ordering::Relaxed));
                if age > Self::STALE_AFTER_MS {
                    return Err(format!("consumer loop silent for {age} ms"));
                }
                Ok(())
            })
        })
    }
}

pub struct Consumer {
    pub name: String,
    /// Used only for the blocking XREADGROUP, which would stall every other
    /// command queued behind it on a shared connection.
    pub reader: Redis,
    pub redis: Redis,
    pub worker: Arc<Worker>,
    pub concurrency: usize,
    pub claim_idle: Duration,
    pub retry_poll: Duration,
    pub drain_timeout: Duration,
    pub liveness: Arc<Liveness>,
}

impl Consumer {
    /// Runs until `shutdown`, then waits up to the drain timeout for
    /// in-flight transactions. What does not finish stays pending in the
    /// group and is reclaimed by another consumer.
    pub async fn run(self, shutdown: Shutdown) {
        if !self.create_group(&shutdown).await {
            return;
        }
        tracing::info!(consumer = %self.name, concurrency = self.concurrency, "consuming");
        let mover = tokio::spawn(move_retries(
            self.redis.clone(),
            self.retry_poll,
            shutdown.clone(),
        ));

        let permits = Arc::new(Semaphore::new(self.concurrency));
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut tasks = JoinSet::new();
        let claim_every = (self.claim_idle / 2).max(Duration::from_millis(50));
        let mut next_claim = Instant::now();
        let mut claim_cursor = "0-0".to_owned();
        // This consumer's own unacknowledged entries are read first, and
        // again after every Redis error: a restarted process with the same
        // consumer name, or one whose Redis came back, resumes that work at
        // once rather than after the reclaim idle time.
        let mut own_cursor: Option<String> = Some("0".to_owned());
        let mut reader = self.reader.conn();
        let mut conn = self.redis.conn();
        self.liveness.running.store(true, Ordering::Relaxed);

        while !shutdown.is_triggered() {
            self.liveness.beat();
            while tasks.try_join_next().is_some() {}

            // Read only as many entries as there are free worker slots.
            let first = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
                () = tokio::time::sleep(Duration::from_millis(stream::READ_BLOCK_MS)) => continue,
                () = shutdown.wait() => break,
            };
            let mut slots: Vec<OwnedSemaphorePermit> = vec![first];
            while let Ok(permit) = permits.clone().try_acquire_owned() {
                slots.push(permit);
            }

            let read = if let Some(after) = own_cursor.take() {
                match stream::read_own_pending(&mut conn, &self.name, &after, slots.len()).await {
                    Ok(entries) => {
                        if let Some(last) = entries.last() {
                            tracing::info!(count = entries.len(), "resuming own pending messages");
                            own_cursor = Some(last.id.clone());
                        }
                        Ok(entries)
                    }
                    // Redis unreachable: the error path below pauses and
                    // starts over from "0".
                    Err(error)
                        if error.is_io_error()
                            || error.is_connection_dropped()
                            || error.is_timeout() =>
                    {
                        Err(error)
                    }
                    // Anything else is not worth more than a warning: the
                    // reclaim finds these entries later anyway.
                    Err(error) => {
                        tracing::warn!(%error, "reading own pending messages failed");
                        Ok(Vec::new())
                    }
                }
            } else if Instant::now() >= next_claim {
                next_claim = Instant::now() + claim_every;
                let claimed = stream::claim_stale(
                    &mut conn,
                    &self.name,
                    self.claim_idle.as_millis() as u64,
                    &claim_cursor,
                    slots.len(),
                )
                .await;
                self.prune(&mut conn).await;
                claimed.map(|(entries, cursor)| {
                    if !entries.is_empty() {
                        tracing::info!(count = entries.len(), "reclaimed stale messages");
                    }
                    // More stale entries may follow: look again soon.
                    if cursor != "0-0" {
                        next_claim = Instant::now();
                    }
                    claim_cursor = cursor;
                    entries
                })
            } else {
                stream::read_new(&mut reader, &self.name, slots.len()).await
            };
            let entries = match read {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::warn!(%error, "reading the stream failed; retrying");
                    own_cursor = Some("0".to_owned());
                    // A Redis that lost its data (restarted without
                    // persistence) lost the group too: make it again.
                    if error.code() == Some("NOGROUP")
                        && let Err(error) = stream::ensure_group(&mut conn).await
                    {
                        tracing::warn!(%error, "recreating the consumer group failed");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(ERROR_PAUSE) => {}
                        () = shutdown.wait() => {}
                    }
                    continue;
                }
            };
            for entry in entries {
                // A reclaim can hand back an entry this process is still
                // working on (slow PSP); one worker per entry is enough.
                if !in_flight
                    .lock()
                    .expect("in-flight lock")
                    .insert(entry.id.clone())
                {
                    continue;
                }
                let Some(slot) = slots.pop() else {
                    // Cannot happen: COUNT was the number of slots. Leave
                    // the entry pending rather than exceed the limit.
                    in_flight.lock().expect("in-flight lock").remove(&entry.id);
                    continue;
                };
                tasks.spawn(run_one(self.worker.clone(), entry, slot, in_flight.clone()));
            }
        }

        self.liveness.running.store(false, Ordering::Relaxed);
        let pending = tasks.len();
        tracing::info!(
            in_flight = pending,
            timeout_ms = self.drain_timeout.as_millis() as u64,
            "stopped reading; draining"
        );
        let drained = tokio::time::timeout(self.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                unfinished = tasks.len(),
                "drain timed out; unfinished messages stay pending for reclaim"
            );
            tasks.abort_all();
        }
        mover.abort();
        tracing::info!("consumer stopped");
    }

    /// Forgets consumers of exited processes (see
    /// [`stream::prune_departed_consumers`]). They are idle for at least
    /// twice the claim time, and never less than [`PRUNE_MIN_IDLE`].
    async fn prune(&self, conn: &mut redis::aio::ConnectionManager) {
        let idle = (self.claim_idle * 2).max(PRUNE_MIN_IDLE);
        match stream::prune_departed_consumers(conn, &self.name, idle.as_millis() as u64).await {
            Ok(removed) => {
                for name in removed {
                    tracing::info!(consumer = %name, "removed departed consumer from the group");
                }
            }
            Err(error) => tracing::warn!(%error, "listing consumers failed"),
        }
    }

    /// Creates the stream and group, retrying while Redis is unreachable.
    /// Returns false if shutdown came first.
    async fn create_group(&self, shutdown: &Shutdown) -> bool {
        let mut conn = self.redis.conn();
        loop {
            match stream::ensure_group(&mut conn).await {
                Ok(()) => return true,
                Err(error) => tracing::warn!(%error, "cannot create consumer group yet"),
            }
            tokio::select! {
                () = tokio::time::sleep(ERROR_PAUSE) => {}
                () = shutdown.wait() => return false,
            }
        }
    }
}

async fn run_one(
    worker: Arc<Worker>,
    entry: Entry,
    slot: OwnedSemaphorePermit,
    in_flight: Arc<Mutex<HashSet<String>>>,
) {
    let id = entry.id.clone();
    worker.handle(entry).await;
    in_flight.lock().expect("in-flight lock").remove(&id);
    drop(slot);
}

/// Every `poll`, moves retries whose time has come back onto the stream.
async fn move_retries(redis: Redis, poll: Duration, shutdown: Shutdown) {
    let mut conn = redis.conn();
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shutdown.is_triggered() {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.wait() => return,
        }
        loop {
            match stream::move_due_retries(&mut conn, stream::now_ms(), MOVE_BATCH).await {
                Ok(moved) if moved == MOVE_BATCH => continue,
                Ok(moved) => {
                    if moved > 0 {
                        tracing::debug!(moved, "due retries back on the stream");
                    }
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "moving due retries failed");
                    break;
                }
            }
        }
    }
}
