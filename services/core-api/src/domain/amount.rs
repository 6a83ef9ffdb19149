//! A charge amount in minor units (cents for EUR, yen for JPY).

use super::FieldError;
use platform::http::ErrorCode;

/// A positive integer number of minor units, at most [`Amount::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(u64);

impl Amount {
    /// 10^12 minor units (ten billion in a two-decimal currency): far above
    /// any real card payment, far below where JSON numbers lose precision
    /// (2^53), so every client reads the value back exactly.
    pub const MAX: u64 = 1_000_000_000_000;

    /// Accepts only a JSON integer in 1..=MAX: not a string, not `12.5`, not
    /// `12.0`, not a negative number.
    pub fn parse(value: &serde_json::Value) -> Result<Self, FieldError> {
        let invalid = || {
            FieldError::new(
                ErrorCode::InvalidAmount,
                format!(
                    "amount must be a positive integer number of minor units, at most {}",
                    Self::MAX
                ),
            )
        };
        let amount = value.as_u64().ok_or_else(invalid)?;
        if amount == 0 || amount > Self::MAX {
            return Err(invalid());
        }
        Ok(Self(amount))
    }

    pub fn minor_units(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_positive_integers_up_to_the_bound() {
        assert_eq!(Amount::parse(&json!(1)).unwrap().minor_units(), 1);
        assert!(Amount::parse(&json!(Amount::MAX)).is_ok());
    }

    #[test]
    fn refuses_everything_else() {
        for value in [
            json!(0),
            json!(-1),
            json!(1.5),
            json!(10.0),
            json!("100"),
            json!(null),
            json!(Amount::MAX + 1),
        ] {
            assert_eq!(
                Amount::parse(&value).unwrap_err().code,
                ErrorCode::InvalidAmount,
                "{value}"
            );
        }
    }
}
