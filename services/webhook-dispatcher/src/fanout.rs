//! The fan-out loop: each new event becomes one scheduled delivery per
//! endpoint of its merchant subscribed to its type.
//!
//! The stream entry is acknowledged and deleted only after the deliveries
//! are scheduled; an entry a crashed dispatcher read and did not finish is
//! read again (its own pending entries at start, anyone's after
//! `WEBHOOK_CLAIM_IDLE_MS`). Scheduling is idempotent (a delivery already
//! waiting keeps its state), so a repeated fan-out does no harm; one after
//! the delivery completed sends it once more, which at-least-once allows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::Shutdown;
use platform::event::{EventId, EventType};
use platform::keyspace::{EVENT_GROUP, EVENT_STREAM, event_field};
use platform::redis::Redis;
use platform::webhook::{self, Endpoint, EndpointId, Schedule, Secret, Subscription};
use redis::aio::ConnectionLike;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};

use crate::Liveness;

/// How long one read waits for a new entry.
const READ_BLOCK_MS: u64 = 1_000;
const BATCH: usize = 100;
const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// The development receiver and the merchants whose endpoint it is.
#[derive(Debug, Clone)]
pub struct DevSink {
    pub url: String,
    pub secret: Secret,
    pub merchants: Vec<String>,
}

pub struct Fanout {
    pub name: String,
    /// Only for the blocking XREADGROUP.
    pub reader: Redis,
    pub redis: Redis,
    pub claim_idle: Duration,
    /// Woken after scheduling, so deliveries start at once.
    pub wake: Arc<tokio::sync::Notify>,
    pub liveness: Arc<Liveness>,
    pub dev_sink: Option<DevSink>,
}

/// One event entry of the stream.
struct Entry {
    entry_id: String,
    event: Option<(EventId, String, EventType)>,
}

impl From<StreamId> for Entry {
    fn from(entry: StreamId) -> Self {
        let text = |name: &str| entry.get::<String>(name);
        let event = (|| {
            Some((
                EventId::parse(&text(event_field::ID)?)?,
                text(event_field::MERCHANT_ID)?,
                text(event_field::TYPE)?.parse().ok()?,
            ))
        })();
        Self {
            entry_id: entry.id,
            event,
        }
    }
}

impl Fanout {
    pub async fn run(self, shutdown: Shutdown) {
        let mut own_pending = true;
        let mut last_claim = Instant::now();
        let mut dev_sink_done = self.dev_sink.is_none();
        while !shutdown.is_requested() {
            self.liveness.fanout_beat();
            if !dev_sink_done {
                match self.create_dev_sink_endpoints().await {
                    Ok(()) => dev_sink_done = true,
                    Err(error) => {
                        tracing::warn!(%error, "could not create the dev sink's endpoints");
                        pause(&shutdown).await;
                        continue;
                    }
                }
            }
            let read = if own_pending {
                self.read(ReadKind::OwnPending).await
            } else if last_claim.elapsed() >= self.claim_idle / 2 {
                last_claim = Instant::now();
                self.read(ReadKind::Stale).await
            } else {
                tokio::select! {
                    read = self.read(ReadKind::New) => read,
                    () = shutdown.requested() => break,
                }
            };
            let entries = match read {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::warn!(%error, "reading the events stream failed");
                    own_pending = true;
                    pause(&shutdown).await;
                    continue;
                }
            };
            if own_pending && entries.len() < BATCH {
                own_pending = false;
            }
            for entry in entries {
                if let Err(error) = self.fan_out(&entry).await {
                    tracing::warn!(%error, entry = %entry.entry_id, "fan-out failed; will retry");
                    own_pending = true;
                    pause(&shutdown).await;
                    break;
                }
            }
        }
    }

    async fn read(&self, kind: ReadKind) -> redis::RedisResult<Vec<Entry>> {
        let mut conn = self.redis.conn();
        // At start and after every error: the stream or group may be new.
        if kind == ReadKind::OwnPending {
            ensure_group(&mut conn).await?;
        }
        match kind {
            ReadKind::OwnPending | ReadKind::New => {
                let mut cmd = redis::cmd("XREADGROUP");
                cmd.arg("GROUP")
                    .arg(EVENT_GROUP)
                    .arg(&self.name)
                    .arg("COUNT")
                    .arg(BATCH);
                if kind == ReadKind::New {
                    cmd.arg("BLOCK").arg(READ_BLOCK_MS);
                }
                cmd.arg("STREAMS")
                    .arg(EVENT_STREAM)
                    .arg(if kind == ReadKind::New { ">" } else { "0" });
                let reply: Option<StreamReadReply> = if kind == ReadKind::New {
                    cmd.query_async(&mut self.reader.conn()).await?
                } else {
                    cmd.query_async(&mut conn).await?
                };
                Ok(reply
                    .into_iter()
                    .flat_map(|r| r.keys)
                    .flat_map(|k| k.ids)
                    .map(Entry::from)
                    .collect())
            }
            ReadKind::Stale => {
                let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                    .arg(EVENT_STREAM)
                    .arg(EVENT_GROUP)
                    .arg(&self.name)
                    .arg(self.claim_idle.as_millis() as u64)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(BATCH)
                    .query_async(&mut conn)
                    .await?;
                Ok(reply.claimed.into_iter().map(Entry::from).collect())
            }
        }
    }

    /// Schedules the entry's deliveries, then acknowledges and deletes it.
    /// An entry that does not decode (written by no code of ours) is
    /// dropped with a warning: there is nothing to deliver.
    async fn fan_out(&self, entry: &Entry) -> redis::RedisResult<()> {
        let mut conn = self.redis.conn();
        match &entry.event {
            Some((event_id, merchant, event_type)) => {
                let endpoints: Vec<EndpointId> = webhook::endpoints_of(&mut conn, merchant)
                    .await?
                    .into_iter()
                    .filter(|e| e.events.includes(*event_type))
                    .map(|e| e.id)
                    .collect();
                webhook::schedule(
                    &mut conn,
                    event_id,
                    &endpoints,
                    webhook::now_ms(),
                    Schedule::New,
                )
                .await?;
                if !endpoints.is_empty() {
                    self.wake.notify_one();
                }
            }
            None => tracing::warn!(entry = %entry.entry_id, "undecodable events entry dropped"),
        }
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XACK")
            .arg(EVENT_STREAM)
            .arg(EVENT_GROUP)
            .arg(&entry.entry_id)
            .ignore()
            .cmd("XDEL")
            .arg(EVENT_STREAM)
            .arg(&entry.entry_id)
            .ignore();
        pipe.query_async(&mut conn).await
    }

    /// Gives each dev merchant its endpoint at the sink, once ever.
    async fn create_dev_sink_endpoints(&self) -> redis::RedisResult<()> {
        let Some(sink) = &self.dev_sink else {
            return Ok(());
        };
        let mut conn = self.redis.conn();
        for merchant in &sink.merchants {
            let endpoint = Endpoint {
                id: EndpointId::generate(),
                merchant_id: merchant.clone(),
                url: sink.url.clone(),
                events: Subscription::All,
                description: "webhook-sink (development receiver)".to_owned(),
                secret: sink.secret.clone(),
                previous_secret: None,
                created_at: platform::transaction::now_rfc3339(),
            };
            if webhook::create_once(&mut conn, &endpoint).await? {
                tracing::info!(%merchant, endpoint = %endpoint.id, "dev sink endpoint created");
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadKind {
    OwnPending,
    Stale,
    New,
}

/// Creates the stream and the group if missing (`BUSYGROUP`: another
/// replica won the race, which is success).
async fn ensure_group<C: ConnectionLike + Send>(conn: &mut C) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(EVENT_STREAM)
        .arg(EVENT_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

async fn pause(shutdown: &Shutdown) {
    tokio::select! {
        () = tokio::time::sleep(ERROR_PAUSE) => {}
        () = shutdown.requested() => {}
    }
}
