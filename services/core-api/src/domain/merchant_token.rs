//! Merchant-chosen identifiers: the customer id and the order reference.
//! Both are indexed (listing one customer's transactions, or finding one
//! reference, scans nothing else) and both become part of Redis key names
//! and log fields — hence one narrow shape for both: 1–64 characters of
//! `[A-Za-z0-9_.:-]`, and never a card number (a careless client's PAN
//! would otherwise be stored, indexed and part of key names).

use platform::http::ErrorCode;
use std::marker::PhantomData;

use super::{FieldError, is_token};

/// Which field a [`MerchantToken`] is, for its error code and message.
pub trait TokenField {
    const CODE: ErrorCode;
    const NAME: &'static str;
}

/// A valid value of the field `F`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantToken<F>(String, PhantomData<F>);

impl<F: TokenField> MerchantToken<F> {
    /// A value to store: the shape, and no card number.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let token = Self::parse_lookup(text)?;
        if platform::card::contains_card_number(text) {
            return Err(super::card_number_not_allowed(F::NAME));
        }
        Ok(token)
    }

    /// A value to look up (a list filter): the shape only. Nothing stored
    /// can look like a card number, so such a filter just finds nothing.
    pub fn parse_lookup(text: &str) -> Result<Self, FieldError> {
        if !is_token(text) {
            return Err(FieldError::new(
                F::CODE,
                format!("{} must be 1-64 characters of A-Z a-z 0-9 _ . : -", F::NAME),
            ));
        }
        Ok(Self(text.to_owned(), PhantomData))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The merchant's id for its customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Customer {}
impl TokenField for Customer {
    const CODE: ErrorCode = ErrorCode::InvalidCustomerId;
    const NAME: &'static str = "customer_id";
}

/// The merchant's own reference (order number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderReference {}
impl TokenField for OrderReference {
    const CODE: ErrorCode = ErrorCode::InvalidReference;
    const NAME: &'static str = "reference";
}

pub type CustomerId = MerchantToken<Customer>;
pub type Reference = MerchantToken<OrderReference>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_refused() {
        for pan in [
            "4242424242424242",
            "4242-4242-4242-4242",
            "cus_4000000000000002",
        ] {
            assert_eq!(
                CustomerId::parse(pan).unwrap_err().code,
                ErrorCode::CardNumberNotAllowed,
                "{pan}"
            );
            assert_eq!(
                Reference::parse(pan).unwrap_err().code,
                ErrorCode::CardNumberNotAllowed
            );
        }
        // Numbers that are not cards are fine.
        for fine in ["4242424242424241", "order-20261122-0042", "1234567890"] {
            assert!(Reference::parse(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn shape() {
        assert!(CustomerId::parse("cus_1.a:b-C").is_ok());
        assert!(Reference::parse("order-42:v1").is_ok());
        for bad in ["", "has space", "ü", &"x".repeat(65), "a/b", "a*"] {
            assert_eq!(
                CustomerId::parse(bad).unwrap_err().code,
                ErrorCode::InvalidCustomerId,
                "{bad}"
            );
            assert_eq!(
                Reference::parse(bad).unwrap_err().code,
                ErrorCode::InvalidReference,
                "{bad}"
            );
        }
    }
}
