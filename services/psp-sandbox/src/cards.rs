//! What the sandbox decides for a card: the test cards (README, after the walkthrough), and
//! approval for every other well-formed card.

/// The sandbox's decision for one charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approved,
    Declined(&'static str),
    /// A retryable processing error (503); nothing is charged.
    ProcessingError,
}

/// Approved.
pub const APPROVED: &str = "4242424242424242";
/// Declined `card_declined`.
pub const DECLINED: &str = "4000000000000002";
/// Declined `insufficient_funds`.
pub const INSUFFICIENT_FUNDS: &str = "4000000000009995";
/// Declined `expired_card`.
pub const EXPIRED_CARD: &str = "4000000000000069";
/// Answered 503 every time: retried by the connector, then failed.
pub const PROCESSING_ERROR: &str = "4000000000000119";

/// Test cards with a fixed outcome; any other valid card is approved. The
/// one list: the e2e suite, the dashboard's card picker and the README are
/// checked against it.
pub const TEST_CARDS: &[(&str, Decision)] = &[
    (APPROVED, Decision::Approved),
    (DECLINED, Decision::Declined("card_declined")),
    (INSUFFICIENT_FUNDS, Decision::Declined("insufficient_funds")),
    (EXPIRED_CARD, Decision::Declined("expired_card")),
    (PROCESSING_ERROR, Decision::ProcessingError),
];

/// The decision for a card whose number already passed [`is_valid_number`].
/// A card whose expiry month is over is declined `expired_card`, as a real
/// issuer would.
pub fn decide(number: &str, expired: bool) -> Decision {
    let fixed = TEST_CARDS
        .iter()
        .find(|(card, _)| *card == number)
        .map(|(_, decision)| *decision);
    match fixed {
        Some(decision) => decision,
        None if expired => Decision::Declined("expired_card"),
        None => Decision::Approved,
    }
}

/// 13–19 digits passing the Luhn check, not all zeros (the platform's one
/// definition, [`platform::card::is_card_number`]).
pub fn is_valid_number(number: &str) -> bool {
    platform::card::is_card_number(number)
}

/// The card network, from the leading digits (for the charge object).
pub fn brand(number: &str) -> &'static str {
    let prefix2: u32 = number.get(..2).and_then(|p| p.parse().ok()).unwrap_or(0);
    let prefix4: u32 = number.get(..4).and_then(|p| p.parse().ok()).unwrap_or(0);
    match number.as_bytes().first() {
        Some(b'4') => "visa",
        _ if (51..=55).contains(&prefix2) || (2221..=2720).contains(&prefix4) => "mastercard",
        _ if prefix2 == 34 || prefix2 == 37 => "amex",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_are_valid_and_decided_as_documented() {
        for (card, expected) in TEST_CARDS {
            assert!(is_valid_number(card), "{card}");
            assert_eq!(decide(card, false), *expected);
        }
        assert_eq!(decide("5555555555554444", false), Decision::Approved);
        assert_eq!(
            decide("5555555555554444", true),
            Decision::Declined("expired_card")
        );
    }

    #[test]
    fn luhn() {
        assert!(is_valid_number("4242424242424242"));
        assert!(!is_valid_number("4242424242424241"));
        assert!(!is_valid_number("42424242424a4242"));
        assert!(!is_valid_number("42"));
        assert!(!is_valid_number("0000000000000000"));
        assert!(!is_valid_number("424242424242"), "12 digits");
    }

    #[test]
    fn brands() {
        assert_eq!(brand("4242424242424242"), "visa");
        assert_eq!(brand("5555555555554444"), "mastercard");
        assert_eq!(brand("378282246310005"), "amex");
    }
}
