//! `GET /users/{username}/customers`, `PUT` and `DELETE
//! /users/{username}/customers/{customer_id}`: which customers a user may
//! act for (platform::access::links).
//!
//! Here rather than in core-api because auth-api knows the users: it
//! refuses an unknown user, and a user of another merchant, instead of
//! writing a link nobody can use. Only an API key may call these routes,
//! so no user can grant itself a customer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use http::StatusCode;
use platform::ApiError;
use platform::access::links::{self, MAX_CUSTOMERS_PER_USER};
use platform::auth::Caller;
use platform::http::{ErrorBody, ErrorCode, ErrorType, Json};
use platform::keyspace;
use platform::redis::Redis;
use serde::Serialize;
use utoipa::ToSchema;

use crate::access::{AccessState, merchant_key};
use crate::users::Users;

/// Adds a link unless the user already has the most allowed.
/// KEYS: the user's set. ARGV: customer, max.
const LINK_SCRIPT: &str = r#"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"#;

/// Writes a user's links from the users file, once.
/// KEYS: seeded marker, the user's set. ARGV: the customers.
const SEED_SCRIPT: &str = r#"
if not redis.call('SET', KEYS[1], '1', 'NX') then return 0 end
redis.call('SADD', KEYS[2], unpack(ARGV))
return 1
"#;

static LINK: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(LINK_SCRIPT));
static SEED: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(SEED_SCRIPT));

/// A user's customers.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserCustomers {
    #[schema(example = "alice")]
    pub username: String,
    /// Sorted.
    #[schema(example = json!(["cus_1", "cus_2"]))]
    pub customers: Vec<String>,
}

fn user_not_found() -> ApiError {
    ApiError::not_found(ErrorCode::UserNotFound, "no such user of this merchant")
}

/// The username, checked to be a user of the caller's merchant (404
/// otherwise, also for another merchant's user, so users cannot be probed
/// across merchants).
fn user_of<'a>(users: &Users, caller: &Caller, username: &'a str) -> Result<&'a str, ApiError> {
    merchant_key(caller)?;
    match users.merchant_of(username) {
        Some(merchant) if merchant == caller.merchant => Ok(username),
        _ => Err(user_not_found()),
    }
}

fn customer(text: &str) -> Result<&str, ApiError> {
    if links::is_customer_id(text) {
        Ok(text)
    } else {
        Err(ApiError::invalid_field(
            ErrorCode::InvalidCustomerId,
            "customer_id must be 1-64 characters of A-Z a-z 0-9 _ . : - and not a card number",
            "customer_id",
        ))
    }
}

async fn answer(
    state: &AccessState,
    merchant: &str,
    username: &str,
) -> Result<Json<UserCustomers>, ApiError> {
    let customers = links::customers_of(&mut state.redis.conn(), merchant, username).await?;
    Ok(Json(UserCustomers {
        username: username.to_owned(),
        customers,
    }))
}

/// The customers a user of the caller's merchant may act for.
#[utoipa::path(
    get,
    path = "/users/{username}/customers",
    tag = "links",
    params(("username" = String, Path, description = "A user of the API key's merchant")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's customers", body = UserCustomers),
        (status = 400, description = "`invalid_path`: the gateway refuses a path holding an encoded slash, backslash or NUL", body = ErrorBody),
        (status = 401, description = "`missing_token`, `token_invalid`, `token_expired` or `api_key_invalid`", body = ErrorBody),
        (status = 403, description = "`api_key_required`: a user token cannot read or change links", body = ErrorBody),
        (status = 404, description = "`user_not_found`: no such user of this merchant", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    )
)]
pub async fn list_customers(
    State(state): State<AccessState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<UserCustomers>, ApiError> {
    let Ok(Path(username)) = path else {
        merchant_key(&caller)?;
        return Err(user_not_found());
    };
    let username = user_of(&state.users, &caller, &username)?;
    answer(&state, &caller.merchant, username).await
}

fn link_path(
    caller: &Caller,
    users: &Users,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), ApiError> {
    let Ok(Path((username, customer_id))) = path else {
        merchant_key(caller)?;
        return Err(user_not_found());
    };
    user_of(users, caller, &username)?;
    customer(&customer_id)?;
    Ok((username, customer_id))
}

/// Links a user to a customer (idempotent): the user's tokens may then
/// create, read and list the customer's transactions.
#[utoipa::path(
    put,
    path = "/users/{username}/customers/{customer_id}",
    tag = "links",
    params(
        ("username" = String, Path, description = "A user of the API key's merchant"),
        ("customer_id" = String, Path, description = "1–64 of `[A-Za-z0-9_.:-]`, not a card number"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Linked; the user's customers", body = UserCustomers),
        (status = 400, description = "`invalid_path`: the gateway refuses a path holding an encoded slash, backslash or NUL", body = ErrorBody),
        (status = 401, description = "`missing_token`, `token_invalid`, `token_expired` or `api_key_invalid`", body = ErrorBody),
        (status = 403, description = "`api_key_required`: a user token cannot change links", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`too_many_customers`: the user has 100 customers", body = ErrorBody),
        (status = 422, description = "`invalid_customer_id`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    )
)]
pub async fn link_customer(
    State(state): State<AccessState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<UserCustomers>, ApiError> {
    let (username, customer_id) = link_path(&caller, &state.users, path)?;
    let linked: i64 = LINK
        .key(keyspace::user_customers(&caller.merchant, &username))
        .arg(&customer_id)
        .arg(MAX_CUSTOMERS_PER_USER)
        .invoke_async(&mut state.redis.conn())
        .await?;
    if linked == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorType::InvalidRequest,
            ErrorCode::TooManyCustomers,
            format!("a user may be linked to at most {MAX_CUSTOMERS_PER_USER} customers"),
        ));
    }
    tracing::info!(merchant = %caller.merchant, user = %username, customer_id = %customer_id, by = %caller.actor(), "customer linked");
    answer(&state, &caller.merchant, &username).await
}

/// Unlinks a user from a customer (idempotent), effective with the user's
/// next request.
#[utoipa::path(
    delete,
    path = "/users/{username}/customers/{customer_id}",
    tag = "links",
    params(
        ("username" = String, Path, description = "A user of the API key's merchant"),
        ("customer_id" = String, Path, description = "The customer to unlink"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Unlinked; the user's remaining customers", body = UserCustomers),
        (status = 400, description = "`invalid_path`: the gateway refuses a path holding an encoded slash, backslash or NUL", body = ErrorBody),
        (status = 401, description = "`missing_token`, `token_invalid`, `token_expired` or `api_key_invalid`", body = ErrorBody),
        (status = 403, description = "`api_key_required`", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 422, description = "`invalid_customer_id`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    )
)]
pub async fn unlink_customer(
    State(state): State<AccessState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<UserCustomers>, ApiError> {
    let (username, customer_id) = link_path(&caller, &state.users, path)?;
    redis::cmd("SREM")
        .arg(keyspace::user_customers(&caller.merchant, &username))
        .arg(&customer_id)
        .query_async::<i64>(&mut state.redis.conn())
        .await?;
    tracing::info!(merchant = %caller.merchant, user = %username, customer_id = %customer_id, by = %caller.actor(), "customer unlinked");
    answer(&state, &caller.merchant, &username).await
}

/// Writes the users file's links of every user not seen before, retrying
/// until Redis answers; `seeded` turns true when done (auth-api is not
/// ready before, so no token is used before its user's links exist).
pub async fn seed(redis: Redis, users: Arc<Users>, seeded: Arc<AtomicBool>) {
    loop {
        match seed_once(&redis, &users).await {
            Ok(()) => {
                seeded.store(true, Ordering::Release);
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "could not seed user links yet; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

async fn seed_once(redis: &Redis, users: &Users) -> redis::RedisResult<()> {
    let mut conn = redis.conn();
    for (merchant, user, customers) in users.seed_links() {
        let mut invocation = SEED.key(keyspace::user_links_seeded(merchant, user));
        invocation.key(keyspace::user_customers(merchant, user));
        for customer in customers {
            invocation.arg(customer);
        }
        let written: i64 = invocation.invoke_async(&mut conn).await?;
        if written == 1 {
            tracing::info!(
                merchant,
                user,
                customers = customers.len(),
                "user links seeded"
            );
        }
    }
    Ok(())
}
