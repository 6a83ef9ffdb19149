//! Body and query extractors whose every rejection is an [`ApiError`]:
//! axum's plain-text rejections must never reach a client.
//!
//! | problem | status | code |
//! |---|---|---|
//! | wrong or missing `Content-Type` | 415 | `unsupported_media_type` |
//! | body over [`super::MAX_BODY_BYTES`] | 413 | `body_too_large` |
//! | body not complete within the header-read timeout | 408 | `request_timeout` |
//! | not JSON / not form-encoded / trailing bytes | 400 | `malformed_body` |
//! | a required field is missing | 422 | `missing_field` (+ `param`) |
//! | a field has the wrong type or value | 422 | `invalid_field` (+ `param`) |
//! | an unknown field (where denied) | 422 | `unknown_field` (+ `param`) |
//! | a field given twice | 422 | `invalid_field` (+ `param`: that field) |
//! | a bad query parameter | 400 | `invalid_parameter` (+ `param`) |
//! | a query parameter given twice | 400 | `invalid_parameter` (+ `param`: that one) |

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ApiError, ErrorCode, ErrorType};

/// A JSON body (`application/json` or `application/*+json`).
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

/// A form body (`application/x-www-form-urlencoded`).
#[derive(Debug, Clone)]
pub struct Form<T>(pub T);

/// Either a JSON or a form body, chosen by `Content-Type`: what an OAuth2
/// password grant and `http --form` both send.
#[derive(Debug, Clone)]
pub struct JsonOrForm<T>(pub T);

/// Query-string parameters.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
}

fn body_kind(headers: &http::HeaderMap) -> Option<BodyKind> {
    let value = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    let (top, sub) = essence.split_once('/')?;
    match (top, sub) {
        ("application", "json") => Some(BodyKind::Json),
        ("application", sub) if sub.ends_with("+json") => Some(BodyKind::Json),
        ("application", "x-www-form-urlencoded") => Some(BodyKind::Form),
        _ => None,
    }
}

fn unsupported_media_type(expected: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorType::InvalidRequest,
        ErrorCode::UnsupportedMediaType,
        format!("Content-Type must be {expected}"),
    )
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let timeout = req
        .extensions()
        .get::<super::BodyTimeout>()
        .map_or(crate::connections::DEFAULT_HEADER_TIMEOUT, |t| t.0);
    let read = tokio::time::timeout(timeout, Bytes::from_request(req, state))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorType::InvalidRequest,
                ErrorCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {} s",
                    timeout.as_secs_f64()
                ),
            )
        })?;
    read.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorType::InvalidRequest,
                ErrorCode::BodyTooLarge,
                format!("request body exceeds {} bytes", super::MAX_BODY_BYTES),
            )
        } else {
            ApiError::bad_request(
                ErrorCode::MalformedBody,
                "the request body could not be read",
            )
        }
    })
}

/// Maps a serde error at a path to the 422 of the table above.
fn field_error(path: String, message: String) -> ApiError {
    let backticked = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let join = |field: String| {
        if path.is_empty() || path == "." {
            field
        } else {
            format!("{path}.{field}")
        }
    };
    if let Some(field) = backticked("missing field `") {
        let param = join(field);
        return ApiError::invalid_field(
            ErrorCode::MissingField,
            format!("{param} is required"),
            param,
        );
    }
    if let Some(field) = backticked("duplicate field `") {
        let param = join(field);
        return ApiError::invalid_field(
            ErrorCode::InvalidField,
            format!("{param} is given more than once"),
            param,
        );
    }
    if let Some(field) = backticked("unknown field `") {
        // Here the path already ends at the unknown field.
        let param = if path.is_empty() || path == "." {
            field
        } else {
            path
        };
        return ApiError::invalid_field(
            ErrorCode::UnknownField,
            format!("{param} is not a known field"),
            param,
        );
    }
    // serde_json appends " at line 1 column 7": positions mean nothing to a client.
    let message = match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message,
    };
    let param = if path.is_empty() || path == "." {
        "body".to_owned()
    } else {
        path
    };
    ApiError::invalid_field(
        ErrorCode::InvalidField,
        format!("{param}: {message}"),
        param,
    )
}

/// Parses JSON, telling syntax errors (400) from data errors (422).
///
/// A good body is parsed once, plainly. Only a bad one is parsed again
/// with `serde_path_to_error`, which tracks the path of every value (a
/// tenth of core-api's work per payment when it ran on every body) so the
/// error can name the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => field_error(path, inner.to_string()),
            _ => ApiError::bad_request(
                ErrorCode::MalformedBody,
                "the request body is not valid JSON",
            ),
        }
    })?;
    deserializer.end().map_err(|_| {
        ApiError::bad_request(
            ErrorCode::MalformedBody,
            "unexpected data after the JSON value",
        )
    })?;
    Ok(value)
}

/// Parses a form body.
pub fn parse_form<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded_parse(bytes));
    serde_path_to_error::deserialize(deserializer)
        .map_err(|error| field_error(error.path().to_string(), error.into_inner().to_string()))
}

fn form_urlencoded_parse(bytes: &[u8]) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(bytes)
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if body_kind(req.headers()) != Some(BodyKind::Json) {
            return Err(unsupported_media_type("application/json"));
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(Json)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if body_kind(req.headers()) != Some(BodyKind::Form) {
            return Err(unsupported_media_type("application/x-www-form-urlencoded"));
        }
        let bytes = read_body(req, state).await?;
        parse_form(&bytes).map(Form)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonOrForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let kind = body_kind(req.headers()).ok_or_else(|| {
            unsupported_media_type("application/json or application/x-www-form-urlencoded")
        })?;
        let bytes = read_body(req, state).await?;
        match kind {
            BodyKind::Json => parse_json(&bytes).map(JsonOrForm),
            BodyKind::Form => parse_form(&bytes).map(JsonOrForm),
        }
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        // `status=a&status=b` is ambiguous: refuse it naming the parameter
        // (serde would only see a duplicate somewhere in "the body").
        let mut seen = std::collections::HashSet::new();
        for (name, _) in form_urlencoded_parse(query.as_bytes()) {
            if !seen.insert(name.clone()) {
                // Echo only a name that looks like one.
                let param = if crate::auth::is_identifier(&name) && name.len() <= 40 {
                    name.into_owned()
                } else {
                    "query".to_owned()
                };
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidParameter,
                    format!("{param} is given more than once"),
                )
                .with_param(param));
            }
        }
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded_parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|error| {
                let api_error =
                    field_error(error.path().to_string(), error.into_inner().to_string());
                let code = match api_error.error_code() {
                    ErrorCode::UnknownField => ErrorCode::UnknownParameter,
                    _ => ErrorCode::InvalidParameter,
                };
                api_error.recast(StatusCode::BAD_REQUEST, code)
            })
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        amount: u64,
        card: Card,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Card {
        number: String,
    }

    #[test]
    fn duplicate_fields_are_named() {
        let error =
            parse_json::<Body>(br#"{"amount":1,"amount":2,"card":{"number":"1"}}"#).unwrap_err();
        assert_eq!(
            (error.status().as_u16(), error.code(), error.param()),
            (422, "invalid_field", Some("amount"))
        );
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Login {
            username: String,
        }
        let error = parse_form::<Login>(b"username=a&username=b").unwrap_err();
        assert_eq!(
            (error.code(), error.param()),
            ("invalid_field", Some("username"))
        );
    }

    #[test]
    fn json_errors_name_the_field() {
        let error = parse_json::<Body>(br#"{"card":{"number":"1"}}"#).unwrap_err();
        assert_eq!(
            (error.status().as_u16(), error.code()),
            (422, "missing_field")
        );
        assert_eq!(error.param(), Some("amount"));

        let error = parse_json::<Body>(br#"{"amount":1,"card":{}}"#).unwrap_err();
        assert_eq!(error.param(), Some("card.number"));

        let error = parse_json::<Body>(br#"{"amount":"x","card":{"number":"1"}}"#).unwrap_err();
        assert_eq!(
            (error.code(), error.param()),
            ("invalid_field", Some("amount"))
        );

        let error = parse_json::<Body>(br#"{"amount":1,"card":{"number":"1"},"x":1}"#).unwrap_err();
        assert_eq!((error.code(), error.param()), ("unknown_field", Some("x")));
    }

    #[test]
    fn syntax_errors_are_400() {
        for body in [
            &b"{"[..],
            b"not json",
            br#"{"amount":1,"card":{"number":"1"}} trailing"#,
            b"",
            b"\xff\xfe",
        ] {
            let error = parse_json::<Body>(body).unwrap_err();
            assert_eq!(
                (error.status().as_u16(), error.code()),
                (400, "malformed_body"),
                "{body:?}"
            );
        }
    }
}
