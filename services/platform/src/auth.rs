//! Merchant access tokens: issued by auth-api, verified by core-api, with
//! this one module doing both so the two can never disagree.
//!
//! Tokens are HS256 JWTs. Verification pins the algorithm (no `alg: none`,
//! no algorithm confusion), requires and checks `exp`, `iss` and `aud`, and
//! allows no clock leeway on `exp`: a 30-second token means 30 seconds.
//! A token signed with the right key is still refused when it claims more
//! than the issuer could have issued: a lifetime (`exp - iat`) above
//! [`MAX_TOKEN_LIFETIME`], an `iat` in the future (beyond [`IAT_LEEWAY`]),
//! `exp` not after `iat`, any `crit` header (no extension is understood), or
//! a `sub`/`mid` that is not an [`is_identifier`] — so a leaked or
//! mis-minted secret cannot make a token that lives for years or whose
//! merchant id reaches into another merchant's Redis keys.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, FromRequestParts};
use http::request::Parts;
use http::{HeaderValue, header};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};

use crate::http::{ApiError, ErrorCode};

/// `iss` of every token.
pub const ISSUER: &str = "payment-platform/auth-api";
/// `aud` of every token: the services that accept it.
pub const AUDIENCE: &str = "payment-platform/core-api";
/// The smallest acceptable `JWT_SECRET`, in bytes (HS256's key size).
pub const MIN_SECRET_BYTES: usize = 32;
/// The longest lifetime (`exp - iat`) a token may have: the largest
/// `AUTH_TOKEN_TTL_SECS` auth-api accepts. Tokens cannot be revoked, so a
/// longer-lived one was not issued by auth-api.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// How far ahead of the verifier's clock `iat` may be (clock skew between
/// hosts); anything later was minted for the future.
pub const IAT_LEEWAY: Duration = Duration::from_secs(5);

/// What a merchant id or a user name may be: 1–64 characters of
/// `A-Z a-z 0-9 _ . -`. Both become part of Redis key names
/// (`merchant:{mid}:created_by:{sub}:tx`) and log fields, so no `:`, no
/// spaces, nothing that could make one merchant's key another's. auth-api
/// applies it to the users file and the verifier to every token, so the two
/// can never disagree.
pub fn is_identifier(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `JWT_SECRET`: at least 32 bytes; never printed.
#[derive(Clone)]
pub struct JwtSecret(Vec<u8>);

impl JwtSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, String> {
        let secret = secret.into();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "must be at least {MIN_SECRET_BYTES} bytes (got {})",
                secret.len()
            ));
        }
        Ok(Self(secret))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret(***)")
    }
}

impl<'de> Deserialize<'de> for JwtSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        JwtSecret::new(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// What marks a development secret: process-compose.yaml's `JWT_SECRET`
/// contains it, and any secret that does is refused outside development.
pub const DEVELOPMENT_SECRET_MARKER: &str = "dev-only";

/// Refuses a development `JWT_SECRET` (one containing
/// [`DEVELOPMENT_SECRET_MARKER`], in any case) unless `env` is
/// `development`: a deployment that forgot to set its own secret must not
/// start with one published in the repository, with which anyone can mint
/// tokens for any merchant.
pub fn refuse_development_secret(
    env: &crate::config::PlatformEnv,
    secret: &[u8],
) -> Result<(), crate::ConfigError> {
    let marked = String::from_utf8_lossy(secret)
        .to_ascii_lowercase()
        .contains(DEVELOPMENT_SECRET_MARKER);
    if marked && !env.is_development() {
        return Err(crate::ConfigError {
            variable: "JWT_SECRET".into(),
            problem: format!(
                "is a development secret (it contains \"{DEVELOPMENT_SECRET_MARKER}\") and \
                 PLATFORM_ENV is {}; set a secret of your own",
                env.as_str()
            ),
        });
    }
    Ok(())
}

/// The claims of a merchant token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user who logged in.
    pub sub: String,
    /// The merchant the user acts for.
    pub mid: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    /// Unique token id.
    pub jti: String,
}

/// Signs tokens (auth-api).
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    ttl: Duration,
}

impl TokenIssuer {
    pub fn new(secret: &JwtSecret, ttl: Duration) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A signed token for `user` acting for `merchant`, and its claims.
    /// Both must be [`is_identifier`]s (auth-api checks its users file at
    /// start), or no verifier accepts the token.
    pub fn issue(&self, user: &str, merchant: &str) -> (String, Claims) {
        debug_assert!(is_identifier(user) && is_identifier(merchant));
        let iat = now_secs();
        let claims = Claims {
            sub: user.to_owned(),
            mid: merchant.to_owned(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat,
            exp: iat + self.ttl.as_secs(),
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .expect("HS256 signing with an in-memory key cannot fail");
        (token, claims)
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is invalid")]
    Invalid,
}

/// How many verified tokens a [`TokenVerifier`] remembers. A client reuses
/// its token for every request of its 30 seconds, so this is the number of
/// clients whose requests skip the signature check; about 0.5 KB each.
pub const VERIFIED_TOKENS_CAPACITY: usize = 4096;

/// Whether a token whose `exp` is `exp` has expired at `now` (both Unix
/// seconds). No leeway: the token is good through its `exp` second, as
/// jsonwebtoken's own check with leeway 0 would have it. The one rule for
/// fresh and remembered tokens alike.
fn has_expired(exp: u64, now: u64) -> bool {
    exp < now
}

/// Checks tokens (core-api, and auth-api's own tests).
///
/// It remembers the claims of tokens it has verified, keyed by the exact
/// token text, so a token presented again costs a map lookup instead of an
/// HMAC and two base64 and JSON decodes (a quarter of core-api's work per
/// payment before). That is safe because a token cannot change or be
/// revoked once issued: the same text with the same key verifies the same
/// way until it expires, and expiry is checked on every use. Only tokens
/// that passed every check are remembered; a refused one, or a text that
/// differs in one byte, is verified in full.
#[derive(Clone)]
pub struct TokenVerifier {
    // Shared: the extractor clones the verifier out of the app state on
    // every request, `Validation` holds hash sets and the remembered tokens
    // serve every clone.
    inner: std::sync::Arc<VerifierInner>,
}

struct VerifierInner {
    key: DecodingKey,
    validation: Validation,
    verified: quick_cache::sync::Cache<String, std::sync::Arc<Claims>>,
}

impl TokenVerifier {
    pub fn new(secret: &JwtSecret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        // `exp` is required here and checked by [`has_expired`], the same
        // rule for a remembered token as for a fresh one.
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "iat"]);
        Self {
            inner: std::sync::Arc::new(VerifierInner {
                key: DecodingKey::from_secret(secret.as_bytes()),
                validation,
                verified: quick_cache::sync::Cache::new(VERIFIED_TOKENS_CAPACITY),
            }),
        }
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let now = now_secs();
        if let Some(claims) = self.inner.verified.get(token) {
            if has_expired(claims.exp, now) {
                self.inner.verified.remove(token);
                return Err(TokenError::Expired);
            }
            return Ok(Claims::clone(&claims));
        }
        let claims = self.verify_in_full(token, now)?;
        self.inner
            .verified
            .insert(token.to_owned(), std::sync::Arc::new(claims.clone()));
        Ok(claims)
    }

    /// How many verified tokens are remembered now (at most
    /// [`VERIFIED_TOKENS_CAPACITY`]).
    pub fn remembered(&self) -> usize {
        self.inner.verified.len()
    }

    fn verify_in_full(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.inner.key, &self.inner.validation)
            .map_err(|_| TokenError::Invalid)?;
        // Right after the signature, as jsonwebtoken's own check was: a
        // genuine token past its `exp` is told apart as expired, so its
        // client knows to log in again.
        if has_expired(data.claims.exp, now) {
            return Err(TokenError::Expired);
        }
        // RFC 7515 §4.1.11: a `crit` extension the verifier does not
        // understand must fail verification, and this one understands none.
        if data.header.crit.is_some() {
            return Err(TokenError::Invalid);
        }
        let claims = data.claims;
        let issuable = claims.iat <= now.saturating_add(IAT_LEEWAY.as_secs())
            && claims.exp > claims.iat
            && claims.exp - claims.iat <= MAX_TOKEN_LIFETIME.as_secs()
            && is_identifier(&claims.sub)
            && is_identifier(&claims.mid);
        if !issuable {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }
}

/// Who is calling: a user (a token from a password login) or one of the
/// merchant's API keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user, who acts only for the customers linked to them
    /// ([`crate::access::links`]).
    User(String),
    /// An API key (its id, `key_…`), which acts for the whole merchant.
    ApiKey(String),
}

/// The authenticated caller of a request: extracting it verifies the
/// `Authorization: Bearer` credential (a token, or an API key `sk_test_…`),
/// answering 401 otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub merchant: String,
    pub principal: Principal,
}

impl Caller {
    /// What a transaction's `created_by` records: the user name, or the
    /// API key's id.
    pub fn actor(&self) -> &str {
        match &self.principal {
            Principal::User(name) | Principal::ApiKey(name) => name,
        }
    }

    /// The user, when the caller is one (not an API key).
    pub fn user(&self) -> Option<&str> {
        match &self.principal {
            Principal::User(name) => Some(name),
            Principal::ApiKey(_) => None,
        }
    }
}

/// What [`Caller`] needs from the app state: the token verifier and, in a
/// service with Redis, the API key verifier (without it every API key is
/// refused as invalid).
#[derive(Clone)]
pub struct CallerVerifier {
    pub tokens: TokenVerifier,
    pub api_keys: Option<crate::access::api_key::ApiKeyVerifier>,
}

impl From<TokenVerifier> for CallerVerifier {
    fn from(tokens: TokenVerifier) -> Self {
        Self {
            tokens,
            api_keys: None,
        }
    }
}

fn challenge(error: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "Bearer realm=\"payment-platform\", error=\"{error}\""
    ))
    .expect("static header text")
}

fn invalid_api_key() -> ApiError {
    ApiError::unauthorized(
        crate::http::ErrorCode::ApiKeyInvalid,
        "the API key is invalid or revoked",
    )
    .with_header(header::WWW_AUTHENTICATE, challenge("invalid_token"))
}

impl<S> FromRequestParts<S> for Caller
where
    CallerVerifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty());
        let Some(token) = token else {
            return Err(ApiError::unauthorized(
                ErrorCode::MissingToken,
                "an Authorization: Bearer token is required",
            )
            .with_header(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"payment-platform\""),
            ));
        };
        let verifier = CallerVerifier::from_ref(state);
        if crate::access::api_key::looks_like_api_key(token) {
            let Some(api_keys) = &verifier.api_keys else {
                return Err(invalid_api_key());
            };
            return match api_keys.verify(token).await {
                Ok(owner) => Ok(Caller {
                    merchant: owner.merchant,
                    principal: Principal::ApiKey(owner.id),
                }),
                Err(crate::access::api_key::ApiKeyError::Invalid) => Err(invalid_api_key()),
                Err(crate::access::api_key::ApiKeyError::Storage(error)) => Err(error.into()),
            };
        }
        match verifier.tokens.verify(token) {
            Ok(claims) => Ok(Caller {
                merchant: claims.mid,
                principal: Principal::User(claims.sub),
            }),
            Err(TokenError::Expired) => Err(ApiError::unauthorized(
                ErrorCode::TokenExpired,
                "the token has expired; request a new one",
            )
            .with_header(header::WWW_AUTHENTICATE, challenge("invalid_token"))),
            Err(TokenError::Invalid) => Err(ApiError::unauthorized(
                ErrorCode::TokenInvalid,
                "the token is invalid",
            )
            .with_header(header::WWW_AUTHENTICATE, challenge("invalid_token"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_secrets_are_refused_outside_development() {
        use crate::config::PlatformEnv;
        let dev = b"dev-only-jwt-secret-do-not-use-in-production-0123456789";
        let own = b"9f2c1e7a5b3d4c6e8f0a1b2c3d4e5f60718293a4";
        let production = PlatformEnv::new("production").unwrap();
        let staging = PlatformEnv::new("staging").unwrap();
        assert!(refuse_development_secret(&PlatformEnv::default(), dev).is_ok());
        assert!(refuse_development_secret(&production, own).is_ok());
        for env in [&production, &staging] {
            let error = refuse_development_secret(env, dev).unwrap_err();
            assert_eq!(error.variable, "JWT_SECRET");
            assert!(
                !error.problem.contains("0123456789"),
                "never echo the secret"
            );
        }
        assert!(
            refuse_development_secret(&production, b"my-DEV-ONLY-secret-0123456789abcdef").is_err()
        );
    }

    fn secret() -> JwtSecret {
        JwtSecret::new("0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(JwtSecret::new("short").is_err());
    }

    #[test]
    fn issued_token_verifies() {
        let issuer = TokenIssuer::new(&secret(), Duration::from_secs(30));
        let (token, claims) = issuer.issue("alice", "acme");
        assert_eq!(claims.exp - claims.iat, 30);
        let verified = TokenVerifier::new(&secret()).verify(&token).unwrap();
        assert_eq!(verified, claims);
    }

    #[test]
    fn other_secret_is_refused() {
        let other = JwtSecret::new("another-secret-another-secret-xx").unwrap();
        let (token, _) = TokenIssuer::new(&other, Duration::from_secs(30)).issue("alice", "acme");
        assert_eq!(
            TokenVerifier::new(&secret()).verify(&token),
            Err(TokenError::Invalid)
        );
    }
}
