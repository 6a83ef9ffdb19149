//! Webhook endpoints and deliveries, as far as core-api (which registers
//! endpoints and asks for redeliveries) and webhook-dispatcher (which
//! delivers) share them: ids, secrets, the Standard Webhooks signature,
//! the endpoint record, and the script that schedules deliveries
//! (docs/architecture.md "Events and webhooks").

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use hmac::{Hmac, Mac};
use redis::aio::ConnectionLike;
use sha2::Sha256;

use crate::event::{EventId, EventType};
use crate::keyspace::{self, endpoint_field as field};

/// `we_` followed by a UUIDv7 in 32 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(String);

pub const ENDPOINT_ID_PREFIX: &str = "we_";

impl EndpointId {
    pub fn generate() -> Self {
        Self(crate::id::generate(ENDPOINT_ID_PREFIX))
    }

    /// Accepts exactly what [`generate`](Self::generate) produces.
    pub fn parse(text: &str) -> Option<Self> {
        crate::id::is_generated(text, ENDPOINT_ID_PREFIX).then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A signing secret, `whsec_` + base64 of 32 random bytes (the Standard
/// Webhooks format). Its `Debug` never shows it, so no log line can.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

pub const SECRET_PREFIX: &str = "whsec_";

impl Secret {
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        Self(format!("{SECRET_PREFIX}{}", BASE64.encode(key)))
    }

    /// A secret in the `whsec_<base64>` form with a key of 16 to 64 bytes.
    pub fn parse(text: &str) -> Option<Self> {
        let key = BASE64.decode(text.strip_prefix(SECRET_PREFIX)?).ok()?;
        (16..=64)
            .contains(&key.len())
            .then(|| Self(text.to_owned()))
    }

    /// The text shown once to the merchant (and stored for signing).
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn key(&self) -> Vec<u8> {
        BASE64
            .decode(&self.0[SECRET_PREFIX.len()..])
            .expect("validated or generated secret")
    }

    /// The Standard Webhooks signature of one message: `v1,` + base64 of
    /// HMAC-SHA256 over `{id}.{timestamp}.{body}` keyed by the secret's
    /// decoded bytes.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key()).expect("any key length");
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }

    /// Whether `header` (space-separated `v1,<sig>` entries) holds this
    /// secret's signature of the message; compared in constant time.
    pub fn verify(&self, header: &str, message_id: &str, timestamp: i64, body: &[u8]) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key()).expect("any key length");
        mac.update(format!("{message_id}.{timestamp}.").as_bytes());
        mac.update(body);
        header
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|sig| BASE64.decode(sig).ok())
            .any(|sig| mac.clone().verify_slice(&sig).is_ok())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Which events an endpoint receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    All,
    Only(Vec<EventType>),
}

impl Subscription {
    pub fn includes(&self, event: EventType) -> bool {
        match self {
            Subscription::All => true,
            Subscription::Only(types) => types.contains(&event),
        }
    }

    /// As the API shows it: `["*"]` or the type names.
    pub fn names(&self) -> Vec<String> {
        match self {
            Subscription::All => vec!["*".to_owned()],
            Subscription::Only(types) => types.iter().map(|t| t.as_str().to_owned()).collect(),
        }
    }

    fn stored(&self) -> String {
        self.names().join(",")
    }

    fn from_stored(text: &str) -> Option<Self> {
        if text == "*" {
            return Some(Subscription::All);
        }
        text.split(',')
            .map(|t| t.parse().ok())
            .collect::<Option<Vec<_>>>()
            .map(Subscription::Only)
    }
}

/// A stored endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: EndpointId,
    pub merchant_id: String,
    pub url: String,
    pub events: Subscription,
    pub description: String,
    pub secret: Secret,
    /// The secret before the last rotation and until when (Unix ms) it is
    /// still sent beside the new one.
    pub previous_secret: Option<(Secret, u64)>,
    pub created_at: String,
}

impl Endpoint {
    /// The hash fields of the record.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            (field::ID, self.id.to_string()),
            (field::MERCHANT_ID, self.merchant_id.clone()),
            (field::URL, self.url.clone()),
            (field::EVENTS, self.events.stored()),
            (field::DESCRIPTION, self.description.clone()),
            (field::SECRET, self.secret.expose().to_owned()),
            (field::CREATED_AT, self.created_at.clone()),
        ];
        if let Some((secret, until)) = &self.previous_secret {
            fields.push((field::PREVIOUS_SECRET, secret.expose().to_owned()));
            fields.push((field::PREVIOUS_SECRET_EXPIRES_AT, until.to_string()));
        }
        fields
    }

    /// Reads a record; `None` for an empty (deleted) or damaged one.
    pub fn from_hash(mut hash: HashMap<String, String>) -> Option<Self> {
        let mut take = |name: &str| hash.remove(name);
        let previous = take(field::PREVIOUS_SECRET).and_then(|s| Secret::parse(&s));
        let until = take(field::PREVIOUS_SECRET_EXPIRES_AT).and_then(|u| u.parse().ok());
        Some(Self {
            id: EndpointId::parse(&take(field::ID)?)?,
            merchant_id: take(field::MERCHANT_ID)?,
            url: take(field::URL)?,
            events: Subscription::from_stored(&take(field::EVENTS)?)?,
            description: take(field::DESCRIPTION).unwrap_or_default(),
            secret: Secret::parse(&take(field::SECRET)?)?,
            previous_secret: previous.zip(until),
            created_at: take(field::CREATED_AT)?,
        })
    }

    /// The secrets to sign with at `now_ms`: the current one, and the
    /// previous one during its grace period.
    pub fn signing_secrets(&self, now_ms: u64) -> Vec<&Secret> {
        let mut secrets = vec![&self.secret];
        if let Some((previous, until)) = &self.previous_secret
            && now_ms < *until
        {
            secrets.push(previous);
        }
        secrets
    }
}

/// One endpoint.
pub async fn endpoint<C: ConnectionLike + Send>(
    conn: &mut C,
    id: &EndpointId,
) -> redis::RedisResult<Option<Endpoint>> {
    let hash: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keyspace::webhook_endpoint(id))
        .query_async(conn)
        .await?;
    Ok(Endpoint::from_hash(hash))
}

/// Every endpoint of `merchant`, oldest first, in two round trips.
pub async fn endpoints_of<C: ConnectionLike + Send>(
    conn: &mut C,
    merchant: &str,
) -> redis::RedisResult<Vec<Endpoint>> {
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(keyspace::merchant_webhook_endpoints(merchant))
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await?;
    let ids: Vec<EndpointId> = ids.iter().filter_map(|id| EndpointId::parse(id)).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.cmd("HGETALL").arg(keyspace::webhook_endpoint(id));
    }
    let hashes: Vec<HashMap<String, String>> = pipe.query_async(conn).await?;
    Ok(hashes
        .into_iter()
        .filter_map(Endpoint::from_hash)
        .filter(|e| e.merchant_id == merchant)
        .collect())
}

/// Creates `endpoint`: its record and its place in the merchant's set.
pub async fn create<C: ConnectionLike + Send>(
    conn: &mut C,
    endpoint: &Endpoint,
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .hset_multiple(
            keyspace::webhook_endpoint(&endpoint.id),
            &endpoint.to_fields(),
        )
        .ignore()
        .zadd(
            keyspace::merchant_webhook_endpoints(&endpoint.merchant_id),
            endpoint.id.as_str(),
            0,
        )
        .ignore();
    pipe.query_async(conn).await
}

/// Deletes an endpoint with its waiting deliveries and its log.
pub async fn delete<C: ConnectionLike + Send>(
    conn: &mut C,
    endpoint: &Endpoint,
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .del(&[
            keyspace::webhook_endpoint(&endpoint.id),
            keyspace::endpoint_due(&endpoint.id),
            keyspace::endpoint_tries(&endpoint.id),
            keyspace::endpoint_attempts(&endpoint.id),
        ])
        .ignore()
        .zrem(
            keyspace::merchant_webhook_endpoints(&endpoint.merchant_id),
            endpoint.id.as_str(),
        )
        .ignore()
        .zrem(keyspace::WEBHOOK_DUE, endpoint.id.as_str())
        .ignore();
    pipe.query_async(conn).await
}

/// Creates the development sink's endpoint for `endpoint.merchant_id` once:
/// not when one was created before, even if the merchant deleted it.
/// Returns whether it created it.
pub async fn create_once<C: ConnectionLike + Send>(
    conn: &mut C,
    endpoint: &Endpoint,
) -> redis::RedisResult<bool> {
    // KEYS: the marker hash, the endpoint, the merchant's set. ARGV:
    // merchant, endpoint id, then the endpoint's field/value pairs.
    static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('ZADD', KEYS[3], 0, ARGV[2])
return 1
"#,
        )
    });
    let mut invocation = SCRIPT.key(keyspace::WEBHOOK_DEV_SINK);
    invocation
        .key(keyspace::webhook_endpoint(&endpoint.id))
        .key(keyspace::merchant_webhook_endpoints(&endpoint.merchant_id))
        .arg(&endpoint.merchant_id)
        .arg(endpoint.id.as_str());
    for (name, value) in endpoint.to_fields() {
        invocation.arg(name).arg(value);
    }
    let created: i64 = invocation.invoke_async(conn).await?;
    Ok(created == 1)
}

/// How [`schedule`] treats a delivery that is already waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Fan-out of a new event: a delivery already waiting (a fan-out
    /// repeated after a crash) keeps its due time and attempt count.
    New,
    /// A redelivery asked for by the merchant: due now, attempts from 1.
    Again,
}

/// Schedules the delivery of `event` to each of `endpoints` at `due_ms`,
/// in one step.
///
/// KEYS: [`keyspace::WEBHOOK_DUE`], then per endpoint its due set and its
/// tries hash. ARGV: event id, due ms, `nx` or `reset`, the endpoint ids.
pub async fn schedule<C: ConnectionLike + Send>(
    conn: &mut C,
    event: &EventId,
    endpoints: &[EndpointId],
    due_ms: u64,
    mode: Schedule,
) -> redis::RedisResult<()> {
    static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r#"
for i = 4, #ARGV do
  local due_set, tries = KEYS[2 * (i - 3)], KEYS[2 * (i - 3) + 1]
  if ARGV[3] == 'reset' then
    redis.call('ZADD', due_set, ARGV[2], ARGV[1])
    redis.call('HDEL', tries, ARGV[1])
  else
    redis.call('ZADD', due_set, 'NX', ARGV[2], ARGV[1])
  end
  local first = redis.call('ZRANGE', due_set, 0, 0, 'WITHSCORES')
  redis.call('ZADD', KEYS[1], 'LT', first[2], ARGV[i])
end
return 1
"#,
        )
    });
    if endpoints.is_empty() {
        return Ok(());
    }
    let mut invocation = SCRIPT.key(keyspace::WEBHOOK_DUE);
    for endpoint in endpoints {
        invocation
            .key(keyspace::endpoint_due(endpoint))
            .key(keyspace::endpoint_tries(endpoint));
    }
    invocation.arg(event.as_str()).arg(due_ms).arg(match mode {
        Schedule::New => "nx",
        Schedule::Again => "reset",
    });
    for endpoint in endpoints {
        invocation.arg(endpoint.as_str());
    }
    let _: i64 = invocation.invoke_async(conn).await?;
    Ok(())
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signature = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(secret.verify(
            &format!("v1,bogus {signature}"),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body
        ));
        assert!(!secret.verify(&signature, "msg_other", 1614265330, body));
    }

    #[test]
    fn secrets_are_fresh_and_never_debug_printed() {
        let (a, b) = (Secret::generate(), Secret::generate());
        assert_ne!(a, b);
        assert_eq!(Secret::parse(a.expose()), Some(a.clone()));
        assert!(!format!("{a:?}").contains(a.expose()));
        assert_eq!(Secret::parse("whsec_short"), None);
    }

    #[test]
    fn endpoint_round_trips_through_its_hash() {
        let endpoint = Endpoint {
            id: EndpointId::generate(),
            merchant_id: "acme".into(),
            url: "http://127.0.0.1:9/hooks".into(),
            events: Subscription::Only(vec![EventType::TransactionSucceeded]),
            description: "orders".into(),
            secret: Secret::generate(),
            previous_secret: Some((Secret::generate(), 42)),
            created_at: "2026-11-22T10:00:00.000Z".into(),
        };
        let hash = endpoint
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(Endpoint::from_hash(hash), Some(endpoint.clone()));
        assert_eq!(endpoint.signing_secrets(41).len(), 2);
        assert_eq!(endpoint.signing_secrets(42).len(), 1);
    }
}
