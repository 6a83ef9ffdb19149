//! The small HTTP driver for what wrk cannot express: an exact number of
//! transactions written through the real API (the preload), and an
//! open-loop rate with the time from each POST to its final status. Tokens
//! come from auth-api through the gateway and are renewed before their 30 s
//! expire.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use platform::keyspace::{self, field};
use platform::transaction::{Status, TransactionId};
use tokio::sync::Mutex;

/// Renew a token once it is this old (auth-api issues 30 s tokens).
const TOKEN_RENEW_AFTER: Duration = Duration::from_secs(20);

/// A transaction body with the always-approved test card.
pub fn body(customer: &str) -> String {
    format!(
        r#"{{"amount":1299,"currency":"EUR","customer_id":"{customer}","reference":"order-42","payment_method":{{"type":"card","number":"4242424242424242","expiry_month":12,"expiry_year":2030,"cvc":"123"}},"metadata":{{"any":"string values"}}}}"#
    )
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// Tokens of one dev user, logged in through the gateway.
pub struct Tokens {
    client: reqwest::Client,
    gateway: String,
    username: String,
    current: Mutex<Option<(String, Instant)>>,
}

impl Tokens {
    pub fn new(client: &reqwest::Client, gateway: &str, username: &str) -> Arc<Tokens> {
        Arc::new(Tokens {
            client: client.clone(),
            gateway: gateway.to_owned(),
            username: username.to_owned(),
            current: Mutex::new(None),
        })
    }

    /// A token valid for at least another 10 s.
    pub async fn get(&self) -> anyhow::Result<String> {
        let mut current = self.current.lock().await;
        if let Some((token, issued)) = &*current
            && issued.elapsed() < TOKEN_RENEW_AFTER
        {
            return Ok(token.clone());
        }
        let issued = Instant::now();
        let response = self
            .client
            .post(format!("{}/auth/token", self.gateway))
            .form(&[
                ("username", self.username.as_str()),
                ("password", "password"),
            ])
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("login of {} answered {}", self.username, response.status());
        }
        let json: serde_json::Value = response.json().await?;
        let token = json["access_token"]
            .as_str()
            .context("no access_token")?
            .to_owned();
        *current = Some((token.clone(), issued));
        Ok(token)
    }
}

/// POSTs `count` transactions for `customer`, `concurrency` at a time,
/// spread round robin over `targets` (core-api base URLs), each with its own
/// Idempotency-Key. A request that fails is retried with the same key (so
/// it is written once); the call fails if one still fails after 5 tries.
pub async fn post_many(
    client: &reqwest::Client,
    targets: &[String],
    tokens: &Arc<Tokens>,
    customer: &str,
    count: usize,
    concurrency: usize,
    run_id: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(body(customer));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, targets, tokens, next, body) = (
            client.clone(),
            targets.to_vec(),
            tokens.clone(),
            next.clone(),
            body.clone(),
        );
        let run_id = run_id.to_owned();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                let url = format!("{}/transactions", targets[i % targets.len()]);
                let key = format!("{run_id}-{i}");
                post_with_retries(&client, &url, &tokens, &key, &body).await?;
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(started.elapsed())
}

/// One POST until it is accepted (202), up to 5 tries with the same key.
async fn post_with_retries(
    client: &reqwest::Client,
    url: &str,
    tokens: &Tokens,
    key: &str,
    body: &str,
) -> anyhow::Result<()> {
    let mut tries = 0;
    loop {
        tries += 1;
        let token = tokens.get().await?;
        let result = client
            .post(url)
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        match result {
            Ok(response) if response.status().as_u16() == 202 => return Ok(()),
            Ok(response) if tries >= 5 => bail!("POST {url} answered {}", response.status()),
            Err(error) if tries >= 5 => bail!("POST {url}: {error}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// One transaction of the open-loop run.
pub struct Sent {
    /// When it was due to be sent (ns since the Unix epoch).
    pub due_unix_ns: i128,
    /// From the `Location` of a 202; none when the POST failed.
    pub id: Option<TransactionId>,
    /// Why the POST failed: `http <status>`, `timeout`, `connect` or
    /// `request` (none when it was accepted).
    pub failure: Option<String>,
}

/// POSTs at a fixed `rate` per second for `duration` through `gateway`,
/// whatever the answers take (open loop: a slow answer does not delay the
/// next request). Returns each transaction with the time it was due.
pub async fn open_loop(
    client: &reqwest::Client,
    gateway: &str,
    tokens: &Arc<Tokens>,
    customer: &str,
    rate: f64,
    duration: Duration,
    run_id: &str,
) -> anyhow::Result<Vec<Sent>> {
    let body = Arc::new(body(customer));
    let url = Arc::new(format!("{gateway}/transactions"));
    let count = (rate * duration.as_secs_f64()).round() as usize;
    let start_instant = tokio::time::Instant::now();
    let start_unix_ns = unix_ns(SystemTime::now());
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let offset = Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(start_instant + offset).await;
        let token = tokens.get().await?;
        let (client, body, url) = (client.clone(), body.clone(), url.clone());
        let key = format!("{run_id}-{i}");
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url.as_str())
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .header("Content-Type", "application/json")
                .body(body.as_str().to_owned())
                .send()
                .await;
            let (id, failure) = match response {
                Ok(response) => {
                    let status = response.status();
                    match accepted_id(response) {
                        Some(id) => (Some(id), None),
                        None => (None, Some(format!("http {}", status.as_u16()))),
                    }
                }
                Err(e) if e.is_timeout() => (None, Some("timeout".to_owned())),
                Err(e) if e.is_connect() => (None, Some("connect".to_owned())),
                Err(_) => (None, Some("request".to_owned())),
            };
            Sent {
                due_unix_ns: start_unix_ns + offset.as_nanos() as i128,
                id,
                failure,
            }
        }));
    }
    let mut sent = Vec::with_capacity(count);
    for task in tasks {
        sent.push(task.await?);
    }
    Ok(sent)
}

/// The id in the `Location` of a 202.
fn accepted_id(response: reqwest::Response) -> Option<TransactionId> {
    if response.status().as_u16() != 202 {
        return None;
    }
    let location = response.headers().get("location")?.to_str().ok()?;
    TransactionId::parse(location.strip_prefix("/transactions/")?).ok()
}

pub fn unix_ns(time: SystemTime) -> i128 {
    time.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as i128
}

/// A transaction's record once final: its status, when core-api created
/// it and when the connector finished it (ns since the epoch; the record
/// keeps milliseconds).
pub struct Final {
    pub status: String,
    pub created_unix_ns: i128,
    pub updated_unix_ns: i128,
}

fn parse_rfc3339_ns(text: Option<String>) -> anyhow::Result<i128> {
    let text = text.context("record without a timestamp")?;
    let at = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)?;
    Ok(at.unix_timestamp_nanos())
}

/// A record's status, `created_at` and `updated_at`, as stored.
type StoredState = (Option<String>, Option<String>, Option<String>);

/// The stored state of each of `ids`, in pipelined batches.
async fn read_states(
    redis: &mut redis::aio::MultiplexedConnection,
    ids: &[TransactionId],
) -> anyhow::Result<Vec<StoredState>> {
    let mut states = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("HMGET")
                .arg(keyspace::record(id))
                .arg(field::STATUS)
                .arg(field::CREATED_AT)
                .arg(field::UPDATED_AT);
        }
        let rows: Vec<StoredState> = pipe.query_async(redis).await?;
        states.extend(rows);
    }
    Ok(states)
}

fn is_final(state: &StoredState) -> bool {
    state
        .0
        .as_deref()
        .and_then(|status| status.parse::<Status>().ok())
        .is_some_and(Status::is_final)
}

/// Waits until every transaction in `ids` is final and returns their
/// records' status and timestamps.
pub async fn final_states(
    redis: &mut redis::aio::MultiplexedConnection,
    ids: &[TransactionId],
    timeout: Duration,
) -> anyhow::Result<Vec<Final>> {
    let deadline = Instant::now() + timeout;
    loop {
        let states = read_states(redis, ids).await?;
        let open = states.iter().filter(|state| !is_final(state)).count();
        if open == 0 {
            return states
                .into_iter()
                .map(|(status, created, updated)| {
                    Ok(Final {
                        status: status.unwrap_or_default(),
                        created_unix_ns: parse_rfc3339_ns(created)?,
                        updated_unix_ns: parse_rfc3339_ns(updated)?,
                    })
                })
                .collect();
        }
        if Instant::now() > deadline {
            bail!(
                "{open} of {} transactions not final after {timeout:?}",
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
