//! What the API key and link routes share: their state, and the two kinds
//! of caller they accept.

use std::sync::Arc;

use axum::extract::FromRef;
use http::StatusCode;
use platform::ApiError;
use platform::auth::{Caller, CallerVerifier, Principal};
use platform::http::{ErrorCode, ErrorType};
use platform::redis::Redis;

use crate::users::Users;

#[derive(Clone)]
pub struct AccessState {
    pub redis: Redis,
    pub users: Arc<Users>,
    pub callers: CallerVerifier,
}

impl FromRef<AccessState> for CallerVerifier {
    fn from_ref(state: &AccessState) -> Self {
        state.callers.clone()
    }
}

pub fn forbidden(code: ErrorCode, message: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorType::InvalidRequest,
        code,
        message,
    )
}

/// The user behind `caller` if it is a user token of a user who may manage
/// the merchant's API keys; 403 otherwise. An API key cannot manage keys:
/// a leaked key must not be able to mint more.
pub fn key_manager<'a>(state: &AccessState, caller: &'a Caller) -> Result<&'a str, ApiError> {
    let Principal::User(user) = &caller.principal else {
        return Err(forbidden(
            ErrorCode::UserTokenRequired,
            "API keys are managed with a user's token, not with an API key",
        ));
    };
    if !state.users.manages_api_keys(user, &caller.merchant) {
        return Err(forbidden(
            ErrorCode::NotPermitted,
            "this user may not manage the merchant's API keys",
        ));
    }
    Ok(user)
}

/// `caller` if it is one of the merchant's API keys; 403 for a user token:
/// links are granted by the merchant, so no user can grant itself a
/// customer.
pub fn merchant_key(caller: &Caller) -> Result<(), ApiError> {
    match caller.principal {
        Principal::ApiKey(_) => Ok(()),
        Principal::User(_) => Err(forbidden(
            ErrorCode::ApiKeyRequired,
            "users and customers are linked with one of the merchant's API keys, not a user token",
        )),
    }
}
