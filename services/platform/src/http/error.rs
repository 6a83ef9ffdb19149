//! The one error shape of docs/architecture.md "Errors":
//! `{"error": {"type", "code", "message", "param"?}}` with a stable `code`.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

/// The broad class of an error, for clients that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// The request is wrong; retrying it unchanged will fail again.
    #[serde(rename = "invalid_request_error")]
    InvalidRequest,
    /// Missing, invalid or expired credentials.
    #[serde(rename = "authentication_error")]
    Authentication,
    /// Too many attempts; retry after `Retry-After`.
    #[serde(rename = "rate_limit_error")]
    RateLimit,
    /// An `Idempotency-Key` conflict.
    #[serde(rename = "idempotency_error")]
    Idempotency,
    /// The platform is at fault (a dependency is down); retrying may help.
    #[serde(rename = "api_error")]
    Api,
}

/// Declares [`ErrorCode`]: each variant with its wire code, once.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $code:literal,)*) => {
        /// Every stable `code` the platform answers with, on one enum: the
        /// services construct errors only from it, and the OpenAPI
        /// documents of every service list them from it
        /// ([`ErrorDetail::code`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum ErrorCode {
            $($(#[$doc])* #[serde(rename = $code)] $variant,)*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }
        }
    };
}

error_codes! {
    /// No route has this path.
    RouteNotFound => "route_not_found",
    /// The route does not take this method.
    MethodNotAllowed => "method_not_allowed",
    /// More header fields than a request may have.
    TooManyHeaders => "too_many_headers",
    /// The body is over 64 KiB (also the gateway's answer).
    BodyTooLarge => "body_too_large",
    /// The body cannot be read as its content type.
    MalformedBody => "malformed_body",
    /// A content type the route does not read.
    UnsupportedMediaType => "unsupported_media_type",
    /// The body did not arrive in time.
    RequestTimeout => "request_timeout",
    /// A required field is absent.
    MissingField => "missing_field",
    /// A field the route does not know.
    UnknownField => "unknown_field",
    /// A field of the wrong type, or given twice.
    InvalidField => "invalid_field",
    /// A query parameter is not acceptable.
    InvalidParameter => "invalid_parameter",
    /// A query parameter the route does not know.
    UnknownParameter => "unknown_parameter",
    /// The gateway refused an encoded slash, backslash or NUL in the path.
    InvalidPath => "invalid_path",
    /// Only the dev dashboard on this machine may call this.
    Forbidden => "forbidden",
    /// No `Authorization: Bearer` token.
    MissingToken => "missing_token",
    /// The token's lifetime is over.
    TokenExpired => "token_expired",
    /// The token does not verify.
    TokenInvalid => "token_invalid",
    /// Wrong username or password.
    InvalidCredentials => "invalid_credentials",
    /// An API key that is malformed, unknown or revoked (one answer for all).
    ApiKeyInvalid => "api_key_invalid",
    /// Only one of the merchant's API keys may do this (link users and
    /// customers), not a user token.
    ApiKeyRequired => "api_key_required",
    /// Only a user's token may do this (manage API keys), not an API key.
    UserTokenRequired => "user_token_required",
    /// The user may not do this (manage the merchant's API keys).
    NotPermitted => "not_permitted",
    /// A user's token, and a customer not linked to the user (or none).
    CustomerNotPermitted => "customer_not_permitted",
    /// The merchant has the most live API keys it may have.
    TooManyApiKeys => "too_many_api_keys",
    /// The user is linked to the most customers a user may be.
    TooManyCustomers => "too_many_customers",
    /// An API key name that is empty, too long or has control characters.
    InvalidName => "invalid_name",
    /// No such live API key of this merchant.
    ApiKeyNotFound => "api_key_not_found",
    /// No such user of this merchant.
    UserNotFound => "user_not_found",
    /// Too many failed logins for this username; see `Retry-After`.
    TooManyAttempts => "too_many_attempts",
    /// A `grant_type` other than `password`.
    UnsupportedGrantType => "unsupported_grant_type",
    /// More logins waiting than the service queues; see `Retry-After`.
    ServerBusy => "server_busy",
    /// Not a positive amount in minor units.
    InvalidAmount => "invalid_amount",
    /// Not an ISO 4217 currency code.
    InvalidCurrency => "invalid_currency",
    /// Not 1–64 characters of `[A-Za-z0-9_.:-]`.
    InvalidCustomerId => "invalid_customer_id",
    /// Not 1–64 characters of `[A-Za-z0-9_.:-]`.
    InvalidReference => "invalid_reference",
    /// A payment method other than `card`.
    InvalidPaymentMethodType => "invalid_payment_method_type",
    /// Not a card number (13–19 digits, Luhn).
    InvalidCardNumber => "invalid_card_number",
    /// Not a month 1–12 and a four-digit year.
    InvalidExpiry => "invalid_expiry",
    /// Not a month 1–12.
    InvalidExpiryMonth => "invalid_expiry_month",
    /// The card's expiry month is over.
    CardExpired => "card_expired",
    /// Not 3 or 4 digits.
    InvalidCvc => "invalid_cvc",
    /// Metadata that is not a small object of short strings.
    InvalidMetadata => "invalid_metadata",
    /// A card number where none belongs.
    CardNumberNotAllowed => "card_number_not_allowed",
    /// A malformed or repeated `Idempotency-Key` header.
    InvalidIdempotencyKey => "invalid_idempotency_key",
    /// The same `Idempotency-Key` with another body.
    IdempotencyKeyReused => "idempotency_key_reused",
    /// The first request with this `Idempotency-Key` is still being handled.
    RequestInProgress => "request_in_progress",
    /// The PSP sandbox requires an `Idempotency-Key`.
    IdempotencyKeyMissing => "idempotency_key_missing",
    /// The PSP sandbox refused the `Idempotency-Key`.
    IdempotencyKeyInvalid => "idempotency_key_invalid",
    /// No such object for this merchant.
    NotFound => "not_found",
    /// A webhook endpoint URL whose host this platform does not deliver to.
    UrlNotAllowed => "url_not_allowed",
    /// The merchant has as many webhook endpoints as allowed.
    TooManyEndpoints => "too_many_endpoints",
    /// Not a stream entry id (`<ms>-<seq>`).
    InvalidEntryId => "invalid_entry_id",
    /// No such dead letter.
    DeadLetterNotFound => "dead_letter_not_found",
    /// The dead letter does not hold its message.
    MessageNotKept => "message_not_kept",
    /// The transaction's status is final.
    TransactionFinal => "transaction_final",
    /// The message names a transaction that does not exist.
    UnknownTransaction => "unknown_transaction",
    /// The PSP sandbox decided nothing under this `Idempotency-Key`.
    ChargeNotFound => "charge_not_found",
    /// The PSP sandbox's key was abandoned by a lookup: it never charges.
    IdempotencyKeyAbandoned => "idempotency_key_abandoned",
    /// Only a `succeeded` transaction can be refunded.
    TransactionNotRefundable => "transaction_not_refundable",
    /// The refund would take the transaction's refunds (pending or
    /// succeeded) above its amount.
    RefundExceedsAmount => "refund_exceeds_amount",
    /// The transaction has as many refunds as it may have.
    TooManyRefunds => "too_many_refunds",
    /// The PSP sandbox: the refund would take the charge's refunds above
    /// the charged amount.
    RefundExceedsCharge => "refund_exceeds_charge",
    /// A sandbox fault setting out of range.
    InvalidFaults => "invalid_faults",
    /// The PSP sandbox's retryable failure (503).
    ProcessingError => "processing_error",
    /// A dependency of the service is not ready.
    NotReady => "not_ready",
    /// Redis is unreachable; nothing was written, retry.
    StorageUnavailable => "storage_unavailable",
    /// The gateway found no healthy upstream.
    GatewayError => "gateway_error",
    /// A platform bug; the detail is in the log.
    InternalError => "internal_error",
}

// By hand: the derive does not see serde renames that come from a macro,
// and would list the variant names instead of the codes.
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("Stable, machine-readable error code."))
            .enum_values(Some(ErrorCode::ALL.iter().map(|code| code.as_str())))
            .into()
    }
}

impl ToSchema for ErrorCode {}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: ErrorType,
    /// Stable, machine-readable code such as `invalid_credentials`.
    pub code: ErrorCode,
    /// Human-readable explanation; wording may change.
    pub message: String,
    /// The request field at fault, when there is exactly one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
}

/// An error answer: status, body and any extra headers. Boxed so that
/// `Result<T, ApiError>` stays one pointer wide on the happy path.
#[derive(Debug, Clone)]
pub struct ApiError(Box<Parts>);

#[derive(Debug, Clone)]
struct Parts {
    status: StatusCode,
    body: ErrorDetail,
    headers: HeaderMap,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: ErrorType,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Self {
        Self(Box::new(Parts {
            status,
            body: ErrorDetail {
                kind,
                code,
                message: message.into(),
                param: None,
            },
            headers: HeaderMap::new(),
        }))
    }

    /// Names the one field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.0.body.param = Some(param.into());
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.insert(name, value);
        self
    }

    /// 400: the request cannot be read at all.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequest,
            code,
            message,
        )
    }

    /// 422: the request was read but a field is not acceptable.
    pub fn invalid_field(
        code: ErrorCode,
        message: impl Into<String>,
        param: impl Into<String>,
    ) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::InvalidRequest,
            code,
            message,
        )
        .with_param(param)
    }

    /// 401 with the given code.
    pub fn unauthorized(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::Authentication,
            code,
            message,
        )
    }

    /// 404.
    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequest,
            code,
            message,
        )
    }

    /// 503: a dependency is unreachable; the request may be retried.
    pub fn service_unavailable(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Api,
            code,
            message,
        )
    }

    /// 500: a bug. The detail goes to the log, never to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::Api,
            ErrorCode::InternalError,
            "the platform failed to handle this request",
        )
    }

    /// The same error with another status and code (e.g. a body error
    /// re-cast as a query-string error).
    pub fn recast(mut self, status: StatusCode, code: ErrorCode) -> Self {
        self.0.status = status;
        self.0.body.code = code;
        self
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    pub fn code(&self) -> &str {
        self.0.body.code.as_str()
    }

    pub fn error_code(&self) -> ErrorCode {
        self.0.body.code
    }

    pub fn param(&self) -> Option<&str> {
        self.0.body.param.as_deref()
    }

    pub fn message(&self) -> &str {
        &self.0.body.message
    }
}

impl From<redis::RedisError> for ApiError {
    /// Redis unreachable or timing out: the platform is degraded, not the
    /// request wrong, so 503 and a retryable code.
    fn from(error: redis::RedisError) -> Self {
        tracing::warn!(%error, "redis request failed");
        ApiError::service_unavailable(
            ErrorCode::StorageUnavailable,
            "storage is unavailable, retry later",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Parts {
            status,
            body,
            headers,
        } = *self.0;
        let mut response = (status, axum::Json(ErrorBody { error: body })).into_response();
        response.headers_mut().extend(headers);
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.0.status.as_u16(),
            self.0.body.code,
            self.0.body.message
        )
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_snake_case_unique_and_serialises_as_itself() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(
                text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{text}"
            );
            assert_eq!(serde_json::to_value(code).unwrap(), text);
        }
    }
}
