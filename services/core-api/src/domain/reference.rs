//! The merchant's own reference (order number); indexed, so looking one
//! up does not scan the merchant's other transactions.

use super::{FieldError, is_token};

/// 1–64 characters of `[A-Za-z0-9_.:-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference(String);

impl Reference {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        if is_token(text) {
            Ok(Self(text.to_owned()))
        } else {
            Err(FieldError::new(
                "invalid_reference",
                "reference must be 1-64 characters of A-Z a-z 0-9 _ . : -",
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
        assert!(Reference::parse("order-42:v1").is_ok());
        for bad in ["", "has space", "ü", &"x".repeat(65), "a/b", "a*"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
