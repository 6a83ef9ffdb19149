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

/// Where the next read comes from: this consumer's own unacknowledged
/// entries first (and again after every Redis error), a reclaim of stale
/// entries every half claim-idle time, otherwise new entries.
struct Cursors {
    /// After which id to read own pending entries; `None` once all are read.
    own: Option<String>,
    /// The XAUTOCLAIM cursor (`0-0` to start over).
    claim: String,
    next_claim: Instant,
    claim_every: Duration,
}

impl Cursors {
    fn new(claim_idle: Duration) -> Self {
        Cursors {
            // A restarted process with the same consumer name, or one whose
            // Redis came back, resumes its own work at once rather than
            // after the reclaim idle time.
            own: Some("0".to_owned()),
            claim: "0-0".to_owned(),
            next_claim: Instant::now(),
            claim_every: (claim_idle / 2).max(Duration::from_millis(50)),
        }
    }

    /// After a Redis error: resume own pending entries from the start.
    fn restart(&mut self) {
        self.own = Some("0".to_owned());
    }
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
        let mut cursors = Cursors::new(self.claim_idle);
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
            match self
                .read(&mut cursors, &mut conn, &mut reader, slots.len())
                .await
            {
                Ok(entries) => {
                    for entry in entries {
                        self.dispatch(entry, &mut slots, &in_flight, &mut tasks);
                    }
                }
                Err(error) => {
                    cursors.restart();
                    self.recover(&mut conn, &error).await;
                    tokio::select! {
                        () = tokio::time::sleep(ERROR_PAUSE) => {}
                        () = shutdown.wait() => {}
                    }
                }
            }
        }

        self.liveness.running.store(false, Ordering::Relaxed);
        self.drain(tasks).await;
        mover.abort();
        tracing::info!("consumer stopped");
    }

    /// Up to `count` entries, from where [`Cursors`] says.
    async fn read(
        &self,
        cursors: &mut Cursors,
        conn: &mut redis::aio::ConnectionManager,
        reader: &mut redis::aio::ConnectionManager,
        count: usize,
    ) -> redis::RedisResult<Vec<Entry>> {
        if let Some(after) = cursors.own.take() {
            return match stream::read_own_pending(conn, &self.name, &after, count).await {
                Ok(entries) => {
                    if let Some(last) = entries.last() {
                        tracing::info!(count = entries.len(), "resuming own pending messages");
                        cursors.own = Some(last.id.clone());
                    }
                    Ok(entries)
                }
                // Redis unreachable: the caller pauses and starts over.
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
            };
        }
        if Instant::now() < cursors.next_claim {
            return stream::read_new(reader, &self.name, count).await;
        }
        cursors.next_claim = Instant::now() + cursors.claim_every;
        let idle_ms = self.claim_idle.as_millis() as u64;
        let claimed = stream::claim_stale(conn, &self.name, idle_ms, &cursors.claim, count).await;
        self.prune(conn).await;
        let (entries, cursor) = claimed?;
        if !entries.is_empty() {
            tracing::info!(count = entries.len(), "reclaimed stale messages");
        }
        // More stale entries may follow: look again soon.
        if cursor != "0-0" {
            cursors.next_claim = Instant::now();
        }
        cursors.claim = cursor;
        Ok(entries)
    }

    /// Hands `entry` to a worker on one of `slots`, unless it is already
    /// being worked on here: a reclaim can hand back an entry this process
    /// is still charging (slow PSP), and one worker per entry is enough.
    fn dispatch(
        &self,
        entry: Entry,
        slots: &mut Vec<OwnedSemaphorePermit>,
        in_flight: &Arc<Mutex<HashSet<String>>>,
        tasks: &mut JoinSet<()>,
    ) {
        if !in_flight
            .lock()
            .expect("in-flight lock")
            .insert(entry.id.clone())
        {
            return;
        }
        let Some(slot) = slots.pop() else {
            // Cannot happen: COUNT was the number of slots. Leave the entry
            // pending rather than exceed the limit.
            in_flight.lock().expect("in-flight lock").remove(&entry.id);
            return;
        };
        tasks.spawn(run_one(self.worker.clone(), entry, slot, in_flight.clone()));
    }

    /// After a failed read: a Redis that lost its data (restarted without
    /// persistence) lost the group too, so make it again.
    async fn recover(&self, conn: &mut redis::aio::ConnectionManager, error: &redis::RedisError) {
        tracing::warn!(%error, "reading the stream failed; retrying");
        if error.code() == Some("NOGROUP")
            && let Err(error) = stream::ensure_group(conn).await
        {
            tracing::warn!(%error, "recreating the consumer group failed");
        }
    }

    /// Waits up to the drain timeout for the workers in flight; what does
    /// not finish stays pending for a reclaim.
    async fn drain(&self, mut tasks: JoinSet<()>) {
        tracing::info!(
            in_flight = tasks.len(),
            timeout_ms = self.drain_timeout.as_millis() as u64,
            "stopped reading; draining"
        );
        drain_within(&mut tasks, self.drain_timeout, "messages").await;
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

/// Waits up to `timeout` for `tasks` to finish, then aborts the rest: what
/// they held (`what`, for the log) stays pending for a reclaim.
pub(crate) async fn drain_within(tasks: &mut JoinSet<()>, timeout: Duration, what: &str) {
    let drained = tokio::time::timeout(timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            unfinished = tasks.len(),
            "drain timed out; unfinished {what} stay pending for reclaim"
        );
        tasks.abort_all();
    }
}
