//! Types that can only hold valid values: the request is parsed into them at
//! the edge, so nothing past the handler can see an invalid amount, an
//! unknown currency or a card number that fails Luhn.
//!
//! Every parse failure is a [`FieldError`]: a stable `code` plus the request
//! field (`param`) at fault, which the handler turns into a 422.

mod amount;
mod card_number;
mod currency;
mod cvc;
mod expiry;
mod idempotency_key;
mod merchant_token;
mod metadata;

pub use amount::Amount;
pub use card_number::{CardBrand, CardNumber};
pub use currency::Currency;
pub use cvc::Cvc;
pub use expiry::Expiry;
pub use idempotency_key::IdempotencyKey;
pub use merchant_token::{CustomerId, Reference};
pub use metadata::Metadata;

use platform::ApiError;
use platform::http::ErrorCode;

/// Why a value was refused: a stable code and a human explanation. The
/// caller knows which request field it parsed, so it supplies the `param`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub code: ErrorCode,
    pub message: String,
}

impl FieldError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The 422 answer naming `param`.
    pub fn at(self, param: impl Into<String>) -> ApiError {
        ApiError::invalid_field(self.code, self.message, param)
    }
}

/// The shape of merchant-chosen ids (customer ids, references): see
/// [`platform::access::is_merchant_token`], shared with auth-api's links.
pub(crate) fn is_token(text: &str) -> bool {
    platform::access::is_merchant_token(text)
}

/// The refusal of a card number where none belongs (customer ids,
/// references, metadata): it would be stored in the clear, indexed and
/// logged. The message never quotes the value.
pub(crate) fn card_number_not_allowed(field: &str) -> FieldError {
    FieldError::new(
        ErrorCode::CardNumberNotAllowed,
        format!("{field} looks like a card number; card numbers go only in payment_method.number"),
    )
}
