//! A card's expiry month and year. Checked against the clock at parse time:
//! a card is valid through the last day of its expiry month.

use super::FieldError;
use platform::http::ErrorCode;

/// A month/year that is not in the past (and not absurdly far ahead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    month: u8,
    year: u16,
}

/// Cards are issued for a few years; more than this many ahead is a typo.
const MAX_YEARS_AHEAD: u16 = 20;

impl Expiry {
    /// Parses against today's UTC date. Errors carry which field is at
    /// fault: `(error, "expiry_month" | "expiry_year")`.
    pub fn parse(
        month: &serde_json::Value,
        year: &serde_json::Value,
    ) -> Result<Self, (FieldError, &'static str)> {
        let today = time::OffsetDateTime::now_utc();
        Self::parse_at(month, year, today.year(), u8::from(today.month()))
    }

    fn parse_at(
        month: &serde_json::Value,
        year: &serde_json::Value,
        this_year: i32,
        this_month: u8,
    ) -> Result<Self, (FieldError, &'static str)> {
        let month = month
            .as_u64()
            .filter(|m| (1..=12).contains(m))
            .ok_or_else(|| {
                (
                    FieldError::new(
                        ErrorCode::InvalidExpiry,
                        "expiry_month must be an integer from 1 to 12",
                    ),
                    "expiry_month",
                )
            })? as u8;
        let this_year = u16::try_from(this_year).unwrap_or(u16::MAX);
        let year = year
            .as_u64()
            .filter(|y| (1000..=9999).contains(y))
            .ok_or_else(|| {
                (
                    FieldError::new(
                        ErrorCode::InvalidExpiry,
                        "expiry_year must be a four-digit year",
                    ),
                    "expiry_year",
                )
            })? as u16;
        if year < this_year {
            return Err((
                FieldError::new(ErrorCode::CardExpired, "the card has expired"),
                "expiry_year",
            ));
        }
        if year == this_year && month < this_month {
            return Err((
                FieldError::new(ErrorCode::CardExpired, "the card has expired"),
                "expiry_month",
            ));
        }
        if year > this_year.saturating_add(MAX_YEARS_AHEAD) {
            return Err((
                FieldError::new(
                    ErrorCode::InvalidExpiry,
                    format!("expiry_year is more than {MAX_YEARS_AHEAD} years ahead"),
                ),
                "expiry_year",
            ));
        }
        Ok(Self { month, year })
    }

    pub fn month(self) -> u8 {
        self.month
    }

    pub fn year(self) -> u16 {
        self.year
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(
        month: serde_json::Value,
        year: serde_json::Value,
    ) -> Result<Expiry, (&'static str, &'static str)> {
        Expiry::parse_at(&month, &year, 2026, 11).map_err(|(e, p)| (e.code.as_str(), p))
    }

    #[test]
    fn this_month_is_still_valid() {
        assert!(at(json!(11), json!(2026)).is_ok());
        assert!(at(json!(1), json!(2046)).is_ok());
    }

    #[test]
    fn past_and_malformed() {
        assert_eq!(
            at(json!(10), json!(2026)),
            Err(("card_expired", "expiry_month"))
        );
        assert_eq!(
            at(json!(12), json!(2025)),
            Err(("card_expired", "expiry_year"))
        );
        assert_eq!(
            at(json!(13), json!(2030)),
            Err(("invalid_expiry", "expiry_month"))
        );
        assert_eq!(
            at(json!(0), json!(2030)),
            Err(("invalid_expiry", "expiry_month"))
        );
        assert_eq!(
            at(json!("12"), json!(2030)),
            Err(("invalid_expiry", "expiry_month"))
        );
        assert_eq!(
            at(json!(12), json!(30)),
            Err(("invalid_expiry", "expiry_year"))
        );
        assert_eq!(
            at(json!(12), json!(2047)),
            Err(("invalid_expiry", "expiry_year"))
        );
    }
}
