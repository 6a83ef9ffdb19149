//! Merchant API keys, Stripe-style `sk_test_…`: the format, the hash they
//! are stored under, and how a service recognises one.
//!
//! A key is `sk_test_` followed by 32 random bytes from the operating
//! system, base64url without padding (43 characters). Only its SHA-256 is
//! stored: a 256-bit random secret cannot be guessed or brute-forced from
//! its hash, so a slow password hash (argon2) would add cost to every
//! verification and no protection. The secret is shown once, at creation,
//! and never stored or logged.
//!
//! [`ApiKeyVerifier`] looks a key up by its hash and caches what it found
//! in the process for [`CACHE_TTL`] (500 ms). Revocation deletes the hash's
//! record, so every replica refuses a revoked key at most 500 ms (plus one
//! Redis read) later. A TTL rather than a pub/sub invalidation: it needs no
//! subscriber connection that could miss a message while reconnecting, and
//! the bound holds whatever happens; its cost is one Redis read per key per
//! half second per replica. Unknown and revoked keys are not cached: both
//! take the same path (one read that finds nothing) and get the same 401.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use sha2::{Digest, Sha256};

use crate::redis::Redis;

/// What every key starts with (this platform has test mode only).
pub const PREFIX: &str = "sk_test_";
/// Random bytes in a key's secret.
pub const SECRET_BYTES: usize = 32;
/// Length of the base64url text of the secret.
const SECRET_CHARS: usize = 43;
/// How long a verifier trusts what it read about a key; the bound on how
/// late a revocation reaches every replica.
pub const CACHE_TTL: Duration = Duration::from_millis(500);
/// Keys remembered per process at most (a few hundred bytes each).
pub const CACHE_CAPACITY: usize = 10_000;
/// What a key id starts with; user names may not (see auth-api's users
/// file), so `created_by` says which of the two created a transaction.
pub const ID_PREFIX: &str = "key_";

/// SHA-256 of a key's full text: what the key is stored under.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The hash written by [`KeyHash::to_hex`].
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(bytes))
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({})", self.to_hex())
    }
}

/// A key just generated: the secret (to show once), its hash (to store)
/// and its last four characters (to show in lists).
pub struct NewApiKey {
    pub secret: String,
    pub hash: KeyHash,
    pub last4: String,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewApiKey(***)")
    }
}

/// A fresh key from the operating system's random source.
pub fn generate() -> NewApiKey {
    let mut bytes = [0u8; SECRET_BYTES];
    OsRng.fill_bytes(&mut bytes);
    let secret = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let last4 = secret[secret.len() - 4..].to_owned();
    NewApiKey {
        hash: KeyHash::of(&secret),
        secret,
        last4,
    }
}

/// A new key id: `key_` and a UUIDv7, so ids sort by creation.
pub fn new_id() -> String {
    crate::id::generate(ID_PREFIX)
}

/// Whether `text` has the shape of a key id.
pub fn is_key_id(text: &str) -> bool {
    text.strip_prefix(ID_PREFIX).is_some_and(|rest| {
        rest.len() == 32
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Whether `text` is meant as an API key (as opposed to a JWT): what
/// decides which check a bearer credential gets, and so which 401 code a
/// bad one gets. Any letter case: `SK_TEST_…` is a mangled key, not a token.
pub fn looks_like_api_key(text: &str) -> bool {
    text.get(..3)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("sk_"))
}

/// The hash of `text` if it has exactly a key's form; `None` otherwise,
/// without touching Redis.
pub fn parse(text: &str) -> Option<KeyHash> {
    let secret = text.strip_prefix(PREFIX)?;
    let well_formed = secret.len() == SECRET_CHARS
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| KeyHash::of(text))
}

/// Who a live key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyOwner {
    /// The key's id (`key_…`), what `created_by` records.
    pub id: String,
    pub merchant: String,
}

/// Why a key was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// Malformed, unknown or revoked: one answer for all three.
    #[error("the API key is invalid")]
    Invalid,
    #[error("storage unavailable: {0}")]
    Storage(#[from] redis::RedisError),
}

/// Recognises API keys (see the module doc for the cache); cheap to clone.
#[derive(Clone)]
pub struct ApiKeyVerifier {
    redis: Redis,
    cache: Arc<Mutex<HashMap<KeyHash, (ApiKeyOwner, Instant)>>>,
    ttl: Duration,
}

impl ApiKeyVerifier {
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            cache: Arc::default(),
            ttl: CACHE_TTL,
        }
    }

    pub async fn verify(&self, presented: &str) -> Result<ApiKeyOwner, ApiKeyError> {
        let hash = parse(presented).ok_or(ApiKeyError::Invalid)?;
        let now = Instant::now();
        if let Some((owner, read_at)) = self.lock().get(&hash)
            && now.duration_since(*read_at) < self.ttl
        {
            return Ok(owner.clone());
        }
        let (id, merchant): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(crate::keyspace::api_key_by_hash(&hash))
            .arg(crate::keyspace::api_key_field::ID)
            .arg(crate::keyspace::api_key_field::MERCHANT)
            .query_async(&mut self.redis.conn())
            .await?;
        let owner = match (id, merchant) {
            (Some(id), Some(merchant))
                if is_key_id(&id) && crate::auth::is_identifier(&merchant) =>
            {
                ApiKeyOwner { id, merchant }
            }
            _ => {
                // Revoked since it was cached (or never existed).
                self.lock().remove(&hash);
                return Err(ApiKeyError::Invalid);
            }
        };
        let mut cache = self.lock();
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, (_, read_at)| now.duration_since(*read_at) < self.ttl);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(hash, (owner.clone(), now));
        Ok(owner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyHash, (ApiKeyOwner, Instant)>> {
        // The map holds no invariant a panicking holder could break.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), PREFIX.len() + SECRET_CHARS);
        assert_eq!(parse(&a.secret), Some(a.hash));
        assert!(a.secret.ends_with(&a.last4));
        assert_eq!(KeyHash::from_hex(&a.hash.to_hex()), Some(a.hash));
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let key = generate().secret;
        for bad in [
            &key[..key.len() - 1],
            &format!("{key}A"),
            &key.replace(PREFIX, "sk_live_"),
            "sk_test_",
            &format!("{}!", &key[..key.len() - 1]),
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn key_ids() {
        assert!(is_key_id(&new_id()));
        assert!(!is_key_id("key_"));
        assert!(!is_key_id("alice"));
        assert!(!is_key_id(&format!("{}X", &new_id()[..35])));
    }
}
