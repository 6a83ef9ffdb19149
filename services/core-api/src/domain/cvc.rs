//! The card verification code. It travels to the PSP on the queue and is
//! never stored, returned or logged.

use super::FieldError;
use platform::http::ErrorCode;

/// 3 or 4 digits. `Debug` does not show them.
#[derive(Clone, PartialEq, Eq)]
pub struct Cvc(String);

impl Cvc {
    /// Takes a JSON value so that a wrongly typed CVC is refused without
    /// echoing it back in the error message.
    pub fn parse(value: &serde_json::Value) -> Result<Self, FieldError> {
        match value.as_str() {
            Some(text)
                if (3..=4).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(Self(text.to_owned()))
            }
            _ => Err(FieldError::new(
                ErrorCode::InvalidCvc,
                "cvc must be a string of 3 or 4 digits",
            )),
        }
    }

    /// The digits, for the charge message only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Cvc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cvc(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shape_and_secrecy() {
        let cvc = Cvc::parse(&json!("987")).unwrap();
        assert!(!format!("{cvc:?}").contains("987"));
        assert!(Cvc::parse(&json!("1234")).is_ok());
        for bad in [
            json!("12"),
            json!("12345"),
            json!("12a"),
            json!(123),
            json!(null),
        ] {
            assert_eq!(
                Cvc::parse(&bad).unwrap_err().code,
                ErrorCode::InvalidCvc,
                "{bad}"
            );
        }
    }
}
