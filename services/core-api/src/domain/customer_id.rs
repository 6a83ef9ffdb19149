//! The merchant's id for its customer; indexed, so listing one customer's
//! transactions does not scan the others'.

use super::{FieldError, is_token};

/// 1–64 characters of `[A-Za-z0-9_.:-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerId(String);

impl CustomerId {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        if is_token(text) {
            Ok(Self(text.to_owned()))
        } else {
            Err(FieldError::new(
                "invalid_customer_id",
                "customer_id must be 1-64 characters of A-Z a-z 0-9 _ . : -",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        assert!(CustomerId::parse("cus_1.a:b-C").is_ok());
        for bad in ["", "has space", "ü", &"x".repeat(65), "a/b", "a*"] {
            assert!(CustomerId::parse(bad).is_err(), "{bad}");
        }
    }
}
