//! `POST/GET /api_keys`, `DELETE /api_keys/{id}`: the merchant's API keys
//! (platform::access::api_key for their format and verification).
//!
//! Stored per key: `api_key:{sha256}` → `{id, merchant}` (what a verifier
//! reads) and one field of `merchant:{m}:api_keys` → the key's name,
//! creation time, last four characters and hash (what the list shows and
//! revocation needs). Never the secret.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use platform::ApiError;
use platform::access::api_key::{self, KeyHash};
use platform::auth::Caller;
use platform::http::{ErrorBody, ErrorCode, Json};
use platform::keyspace;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::{AccessState, key_manager};

/// Live keys per merchant at most; the list reads them all.
pub const MAX_KEYS_PER_MERCHANT: usize = 100;
/// The longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Writes both records of a new key unless the merchant has too many.
/// KEYS: merchant's keys, hash record. ARGV: id, listing JSON, merchant,
/// max, then the hash record's field names for the id and the merchant.
const CREATE_SCRIPT: &str = r#"
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return 'too_many' end
redis.call('HSET', KEYS[2], ARGV[5], ARGV[1], ARGV[6], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 'ok'
"#;

/// Deletes both records of a key if its listing is still the one read.
/// KEYS: merchant's keys, hash record. ARGV: id, listing JSON.
const REVOKE_SCRIPT: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"#;

static CREATE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(CREATE_SCRIPT));
static REVOKE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(REVOKE_SCRIPT));

/// The body of `POST /api_keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// What the key is for, 1–100 characters, no control characters.
    #[schema(example = "checkout server")]
    pub name: String,
}

/// A new key, with its secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[schema(example = "key_019ad5b0c3a97e21b2a9c0d4e5f60718")]
    pub id: String,
    pub name: String,
    /// The secret. Store it now: only its SHA-256 is kept.
    #[schema(example = "sk_test_…")]
    pub key: String,
    pub created_at: String,
    /// The key's last four characters, to recognise it in lists.
    pub last4: String,
}

/// A key as lists show it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub last4: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    /// Newest first.
    pub data: Vec<ApiKeyView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedApiKey {
    pub id: String,
    #[schema(example = true)]
    pub deleted: bool,
}

/// What `merchant:{m}:api_keys` holds per key.
#[derive(Debug, Serialize, Deserialize)]
struct Listing {
    name: String,
    created_at: String,
    last4: String,
    /// SHA-256 of the key, hex: the record revocation deletes.
    hash: String,
}

fn key_not_found() -> ApiError {
    ApiError::not_found(ErrorCode::ApiKeyNotFound, "no such API key")
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Creates an API key of the caller's merchant. Needs a user token of a
/// user who manages the merchant's API keys (`manages_api_keys` in the
/// users file). The secret is in this answer only.
#[utoipa::path(
    post,
    path = "/api_keys",
    tag = "api_keys",
    request_body = CreateApiKeyRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The key, with its secret (shown once); `Cache-Control: no-store`", body = CreatedApiKey),
        (status = 400, description = "`malformed_body`: not JSON", body = ErrorBody),
        (status = 401, description = "`missing_token`, `token_invalid`, `token_expired` or `api_key_invalid`", body = ErrorBody),
        (status = 403, description = "`user_token_required` (an API key cannot create keys) or `not_permitted` (the user does not manage API keys)", body = ErrorBody),
        (status = 409, description = "`too_many_api_keys`: the merchant has 100 live keys; revoke one", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not application/json", body = ErrorBody),
        (status = 422, description = "`missing_field`, `unknown_field`, `invalid_field`, or `invalid_name` (empty, over 100 characters, or control characters)", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable; nothing was created", body = ErrorBody),
    )
)]
pub async fn create_api_key(
    State(state): State<AccessState>,
    caller: Caller,
    Json(request): Json<CreateApiKeyRequest>,
) -> Result<Response, ApiError> {
    let user = key_manager(&state, &caller)?;
    let name = request.name;
    let chars = name.chars().count();
    if !(1..=MAX_NAME_CHARS).contains(&chars) || name.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            ErrorCode::InvalidName,
            format!("name must be 1-{MAX_NAME_CHARS} characters without control characters"),
            "name",
        ));
    }
    let new = api_key::generate();
    let id = api_key::new_id();
    let created_at = platform::transaction::now_rfc3339();
    let listing = Listing {
        name: name.clone(),
        created_at: created_at.clone(),
        last4: new.last4.clone(),
        hash: new.hash.to_hex(),
    };
    let listing = serde_json::to_string(&listing).map_err(ApiError::internal)?;
    let outcome: String = CREATE
        .key(keyspace::merchant_api_keys(&caller.merchant))
        .key(keyspace::api_key_by_hash(&new.hash))
        .arg(&id)
        .arg(&listing)
        .arg(&caller.merchant)
        .arg(MAX_KEYS_PER_MERCHANT)
        .arg(keyspace::api_key_field::ID)
        .arg(keyspace::api_key_field::MERCHANT)
        .invoke_async(&mut state.redis.conn())
        .await?;
    if outcome != "ok" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            platform::http::ErrorType::InvalidRequest,
            ErrorCode::TooManyApiKeys,
            format!("the merchant has {MAX_KEYS_PER_MERCHANT} live API keys; revoke one first"),
        ));
    }
    // The id only: the secret never reaches a log.
    tracing::info!(api_key_id = %id, merchant = %caller.merchant, user, "API key created");
    let created = CreatedApiKey {
        id,
        name,
        key: new.secret,
        created_at,
        last4: new.last4,
    };
    Ok(no_store(
        (StatusCode::CREATED, axum::Json(created)).into_response(),
    ))
}

async fn listings(state: &AccessState, merchant: &str) -> Result<Vec<(String, Listing)>, ApiError> {
    let raw: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(keyspace::merchant_api_keys(merchant))
        .query_async(&mut state.redis.conn())
        .await?;
    let mut listings = Vec::with_capacity(raw.len());
    for (id, json) in raw {
        let listing: Listing = serde_json::from_str(&json).map_err(ApiError::internal)?;
        listings.push((id, listing));
    }
    listings.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(listings)
}

/// The merchant's live API keys, newest first, without their secrets.
#[utoipa::path(
    get,
    path = "/api_keys",
    tag = "api_keys",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The live keys", body = ApiKeyList),
        (status = 401, description = "`missing_token`, `token_invalid`, `token_expired` or `api_key_invalid`", body = ErrorBody),
        (status = 403, description = "`user_token_required` or `not_permitted`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    )
)]
pub async fn list_api_keys(
    State(state): State<AccessState>,
    caller: Caller,
) -> Result<Json<ApiKeyList>, ApiError> {
    key_manager(&state, &caller)?;
    let data = listings(&state, &caller.merchant)
        .await?
        .into_iter()
        .map(|(id, l)| ApiKeyView {
            id,
            name: l.name,
            created_at: l.created_at,
            last4: l.last4,
        })
        .collect();
    Ok(Json(ApiKeyList { data }))
}

/// Revokes a key at once: it is refused on every core-api replica within
/// 500 ms. Another merchant's key, or an unknown id, answers 404.
#[utoipa::path(
    delete,
    path = "/api_keys/{id}",
    tag = "api_keys",
    params(("id" = String, Path, description = "The key's id (`key_…`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked", body = RevokedApiKey),
        (status = 400, description = "`invalid_path`: the gateway refuses a path holding an encoded slash, backslash or NUL", body = ErrorBody),
        (status = 401, description = "`missing_token`, `token_invalid`, `token_expired` or `api_key_invalid`", body = ErrorBody),
        (status = 403, description = "`user_token_required` or `not_permitted`", body = ErrorBody),
        (status = 404, description = "`api_key_not_found`: no such live key of this merchant", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    )
)]
pub async fn revoke_api_key(
    State(state): State<AccessState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<RevokedApiKey>, ApiError> {
    let user = key_manager(&state, &caller)?;
    let Ok(Path(id)) = id else {
        return Err(key_not_found());
    };
    if !api_key::is_key_id(&id) {
        return Err(key_not_found());
    }
    let merchant_keys = keyspace::merchant_api_keys(&caller.merchant);
    let json: Option<String> = redis::cmd("HGET")
        .arg(&merchant_keys)
        .arg(&id)
        .query_async(&mut state.redis.conn())
        .await?;
    let Some(json) = json else {
        return Err(key_not_found());
    };
    let listing: Listing = serde_json::from_str(&json).map_err(ApiError::internal)?;
    let hash =
        KeyHash::from_hex(&listing.hash).ok_or_else(|| ApiError::internal("bad key hash"))?;
    let revoked: i64 = REVOKE
        .key(&merchant_keys)
        .key(keyspace::api_key_by_hash(&hash))
        .arg(&id)
        .arg(&json)
        .invoke_async(&mut state.redis.conn())
        .await?;
    if revoked == 0 {
        // Revoked by a concurrent request.
        return Err(key_not_found());
    }
    tracing::info!(api_key_id = %id, merchant = %caller.merchant, user, "API key revoked");
    Ok(Json(RevokedApiKey { id, deleted: true }))
}
