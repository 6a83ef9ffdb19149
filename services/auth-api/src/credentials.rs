//! What a login request carries, parsed at the edge: a normalised
//! [`Username`] and a [`Password`] that never prints.
//!
//! Usernames are compared after trimming surrounding whitespace and
//! lower-casing (Unicode), so `" Alice "` logs in as `alice` and counts
//! against the same brute-force limit. They are 1–64 characters.

use platform::ApiError;
use platform::http::ErrorCode;
use serde::Deserialize;
use utoipa::ToSchema;

/// The longest username accepted, in characters (after trimming).
pub const MAX_USERNAME_CHARS: usize = 64;
/// The longest password accepted, in bytes: far beyond any real password,
/// short enough that nobody makes the server hash megabytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The body of `POST /token`, as JSON or form fields (OAuth2's password
/// grant). Unknown fields such as `scope` or `client_id` are ignored.
#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    /// Optional; when present it must be `password`.
    #[schema(example = "password")]
    pub grant_type: Option<String>,
    #[schema(example = "alice", max_length = 64)]
    pub username: String,
    #[schema(example = "password", format = Password, max_length = 1024)]
    pub password: String,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// A checked login attempt.
#[derive(Debug)]
pub struct Credentials {
    pub username: Username,
    pub password: Password,
}

impl TryFrom<TokenRequest> for Credentials {
    type Error = ApiError;

    fn try_from(request: TokenRequest) -> Result<Self, ApiError> {
        if let Some(grant) = &request.grant_type
            && grant != "password"
        {
            return Err(ApiError::bad_request(
                ErrorCode::UnsupportedGrantType,
                "grant_type must be \"password\" (or left out)",
            )
            .with_param("grant_type"));
        }
        Ok(Self {
            username: Username::parse(&request.username)?,
            password: Password::parse(request.password)?,
        })
    }
}

/// A username, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let normalised = raw.trim().to_lowercase();
        if normalised.is_empty() {
            return Err(ApiError::invalid_field(
                ErrorCode::InvalidField,
                "username must not be empty",
                "username",
            ));
        }
        if normalised.chars().count() > MAX_USERNAME_CHARS {
            return Err(ApiError::invalid_field(
                ErrorCode::InvalidField,
                format!("username must be at most {MAX_USERNAME_CHARS} characters"),
                "username",
            ));
        }
        if normalised.chars().any(char::is_control) {
            return Err(ApiError::invalid_field(
                ErrorCode::InvalidField,
                "username must not contain control characters",
                "username",
            ));
        }
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as sent; shown as `***` by `Debug`.
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Self, ApiError> {
        if raw.is_empty() {
            return Err(ApiError::invalid_field(
                ErrorCode::InvalidField,
                "password must not be empty",
                "password",
            ));
        }
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(ApiError::invalid_field(
                ErrorCode::InvalidField,
                format!("password must be at most {MAX_PASSWORD_BYTES} bytes"),
                "password",
            ));
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_normalised() {
        assert_eq!(Username::parse("  Alice\t").unwrap().as_str(), "alice");
        assert_eq!(
            Username::parse(&"é".repeat(64))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            64
        );
        for bad in ["", "   ", &"a".repeat(65), "al\u{0}ice"] {
            let error = Username::parse(bad).unwrap_err();
            assert_eq!(
                (error.status().as_u16(), error.param()),
                (422, Some("username"))
            );
        }
    }

    #[test]
    fn passwords_never_print() {
        let password = Password::parse("hunter2".to_owned()).unwrap();
        assert!(!format!("{password:?}").contains("hunter2"));
    }
}
