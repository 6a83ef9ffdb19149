//! A primary account number. It exists in core-api only long enough to be
//! put on the queue for the connector: the record, responses and logs get
//! the brand and last four digits.

use super::FieldError;
pub use platform::card::CardBrand;
use platform::http::ErrorCode;

/// 13–19 digits passing the Luhn check, not all zeros
/// ([`platform::card::is_card_number`]: the same numbers the logs mask).
/// `Debug` and `Display` show only the brand and last four digits.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(String);

impl CardNumber {
    /// Takes a JSON value so that a wrongly typed number (a JSON integer)
    /// is refused without echoing it back in the error message. Digits
    /// only: no spaces or dashes, which clients strip before sending.
    pub fn parse(value: &serde_json::Value) -> Result<Self, FieldError> {
        let invalid =
            |why: &str| FieldError::new(ErrorCode::InvalidCardNumber, format!("card number {why}"));
        let text = value
            .as_str()
            .ok_or_else(|| invalid("must be a string of digits"))?;
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("must contain only digits"));
        }
        if !platform::card::PAN_LENGTHS.contains(&text.len()) {
            return Err(invalid("must have 13 to 19 digits"));
        }
        if !platform::card::luhn_valid(text) {
            return Err(invalid("is not valid (check digit mismatch)"));
        }
        if !platform::card::is_card_number(text) {
            return Err(invalid("is not a card number"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn brand(&self) -> CardBrand {
        let prefix = |n: usize| self.0[..n].parse::<u32>().unwrap_or(0);
        match (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6)) {
            (4, ..) => CardBrand::Visa,
            (_, 34 | 37, ..) => CardBrand::Amex,
            (_, 51..=55, ..) | (_, _, _, 2221..=2720, _) => CardBrand::Mastercard,
            (_, 65, ..) | (_, _, 644..=649, ..) | (_, _, _, 6011, _) | (.., 622126..=622925) => {
                CardBrand::Discover
            }
            _ => CardBrand::Other,
        }
    }

    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    /// The full number, for the charge message only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CardNumber({} **** {})",
            self.brand().as_str(),
            self.last4()
        )
    }
}

impl std::fmt::Display for CardNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} **** {}", self.brand().as_str(), self.last4())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn card(number: &str) -> CardNumber {
        CardNumber::parse(&json!(number)).unwrap()
    }

    #[test]
    fn brands_and_last4() {
        assert_eq!(card("4242424242424242").brand(), CardBrand::Visa);
        assert_eq!(card("5555555555554444").brand(), CardBrand::Mastercard);
        assert_eq!(card("2223003122003222").brand(), CardBrand::Mastercard);
        assert_eq!(card("378282246310005").brand(), CardBrand::Amex);
        assert_eq!(card("6011111111111117").brand(), CardBrand::Discover);
        assert_eq!(card("3566002020360505").brand(), CardBrand::Other);
        assert_eq!(card("4242424242424242").last4(), "4242");
    }

    #[test]
    fn refuses_bad_numbers() {
        for bad in [
            json!("4242424242424241"),
            json!("4242 4242 4242 4242"),
            json!("42424242424"),
            json!("424242424242"),
            json!("0000000000000000"),
            json!("42424242424242424242"),
            json!(4242424242424242u64),
            json!(""),
        ] {
            assert_eq!(
                CardNumber::parse(&bad).unwrap_err().code,
                ErrorCode::InvalidCardNumber,
                "{bad}"
            );
        }
    }

    #[test]
    fn never_prints_the_number() {
        let number = card("4242424242424242");
        for text in [format!("{number:?}"), format!("{number}")] {
            assert!(!text.contains("424242424242"), "{text}");
            assert!(text.contains("4242"));
        }
    }
}
