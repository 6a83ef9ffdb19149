//! `POST /token`: credentials in, a short-lived merchant token out.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use platform::ApiError;
use platform::auth::TokenIssuer;
use platform::http::ErrorCode;
use platform::http::{ErrorBody, ErrorType, JsonOrForm};
use serde::Serialize;
use utoipa::ToSchema;

use crate::credentials::{Credentials, TokenRequest};
use crate::limiter::{self, Attempt, LoginLimiter};
use crate::users::Authenticator;

/// What the route needs.
#[derive(Clone)]
pub struct TokenState {
    pub authenticator: Authenticator,
    pub limiter: LoginLimiter,
    pub issuer: TokenIssuer,
}

/// `Retry-After` of a 503 `server_busy`: a queue of hashes drains in well
/// under a second.
const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// A successful answer (RFC 6749 §5.1).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// HS256 JWT with claims `sub`, `mid`, `iss`, `aud`, `iat`, `exp`, `jti`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires (`AUTH_TOKEN_TTL_SECS`).
    #[schema(example = 30)]
    pub expires_in: u64,
}

/// Exchanges a username and password for an access token.
///
/// Accepts JSON or a form (OAuth2 password grant). Unknown usernames and
/// wrong passwords get the same 401. After 5 failed attempts for one
/// username within 60 s, every attempt for it gets 429 until the window ends.
#[utoipa::path(
    post,
    path = "/token",
    tag = "auth",
    request_body(
        description = "Credentials, as JSON or form fields",
        content(
            (TokenRequest = "application/json"),
            (TokenRequest = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 200, description = "A token; `Cache-Control: no-store`", body = TokenResponse),
        (status = 400, description = "`malformed_body`: not JSON or not a form; \
            `unsupported_grant_type`: grant_type is not `password`", body = ErrorBody,
            example = json!({"error": {"type": "invalid_request_error", "code": "unsupported_grant_type",
                "message": "grant_type must be \"password\" (or left out)", "param": "grant_type"}})),
        (status = 401, description = "`invalid_credentials`: unknown username or wrong password \
            (indistinguishable)", body = ErrorBody,
            example = json!({"error": {"type": "authentication_error", "code": "invalid_credentials",
                "message": "the username or password is wrong"}})),
        (status = 413, description = "`body_too_large`: the body exceeds 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: neither JSON nor a form", body = ErrorBody),
        (status = 422, description = "`missing_field` or `invalid_field` (empty, or a username over \
            64 characters, or a password over 1024 bytes), with `param`", body = ErrorBody,
            example = json!({"error": {"type": "invalid_request_error", "code": "missing_field",
                "message": "password is required", "param": "password"}})),
        (status = 429, description = "`too_many_attempts`: 5 failed logins for this username within \
            60 s (or its slots stayed taken by checks in flight for 5 s)",
            body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until attempts are accepted again")),
            example = json!({"error": {"type": "rate_limit_error", "code": "too_many_attempts",
                "message": "too many failed logins for this username; retry after 42 s"}})),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable; retry later. \
            `server_busy`: every core is hashing and the queue of logins waiting for one is full \
            (`AUTH_LOGIN_QUEUE`); retry after `Retry-After`",
            body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait (server_busy)"))),
    ),
)]
pub async fn issue_token(
    State(state): State<TokenState>,
    body: Result<JsonOrForm<TokenRequest>, ApiError>,
) -> Response {
    let mut response = match login(&state, body).await {
        Ok(token) => (StatusCode::OK, axum::Json(token)).into_response(),
        Err(error) => error.into_response(),
    };
    // Tokens (and answers about credentials) must not be cached anywhere.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn login(
    state: &TokenState,
    body: Result<JsonOrForm<TokenRequest>, ApiError>,
) -> Result<TokenResponse, ApiError> {
    let JsonOrForm(request) = body?;
    let Credentials { username, password } = Credentials::try_from(request)?;

    if let Attempt::Blocked { retry_after } = state.limiter.reserve(&username).await? {
        let secs = limiter::retry_after_secs(retry_after);
        tracing::info!(retry_after_secs = secs, "login refused: too many attempts");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorType::RateLimit,
            ErrorCode::TooManyAttempts,
            format!("too many failed logins for this username; retry after {secs} s"),
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(secs)));
    }

    let Some(admission) = state.authenticator.admit() else {
        // Not a failure of this username: free its slot uncounted.
        if let Err(error) = state.limiter.finish(&username, false).await {
            tracing::warn!(%error, "could not free a login slot");
        }
        tracing::warn!("login refused: every core busy and the hashing queue full");
        return Err(ApiError::service_unavailable(
            ErrorCode::ServerBusy,
            format!("too many logins are being checked; retry after {BUSY_RETRY_AFTER_SECS} s"),
        )
        .with_header(
            header::RETRY_AFTER,
            HeaderValue::from(BUSY_RETRY_AFTER_SECS),
        ));
    };

    // The check and the release of its slot run as their own task, so a
    // client hanging up mid-check cannot leave the slot taken.
    let task_state = state.clone();
    let task_username = username.clone();
    let (outcome, finished) = tokio::spawn(async move {
        let outcome = task_state
            .authenticator
            .authenticate(admission, &task_username, password)
            .await;
        let failed = matches!(outcome, Ok(None));
        let finished = task_state.limiter.finish(&task_username, failed).await;
        (outcome, finished)
    })
    .await
    .map_err(ApiError::internal)?;

    let Some(user) = outcome.map_err(ApiError::internal)? else {
        // An uncounted failure would be a free guess: without Redis, 503.
        finished?;
        // No username in the log: people type passwords into that field.
        tracing::info!("login refused: invalid credentials");
        return Err(ApiError::unauthorized(
            ErrorCode::InvalidCredentials,
            "the username or password is wrong",
        ));
    };
    // The password was right; if Redis went away meanwhile, the slot
    // expires with the window and the user still gets a token.
    if let Err(error) = finished {
        tracing::warn!(%error, "could not free a login slot");
    }
    let (access_token, claims) = state.issuer.issue(&user.username, &user.merchant_id);
    tracing::info!(user = %claims.sub, merchant = %claims.mid, jti = %claims.jti, "token issued");
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: state.issuer.ttl().as_secs(),
    })
}
