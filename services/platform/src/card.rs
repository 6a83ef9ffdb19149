//! Card-number arithmetic every service needs the same way: core-api
//! validates numbers and refuses them where they do not belong, the PSP
//! sandbox validates them again as a PSP would, and the access log masks
//! anything that looks like one. One definition of "a card number", so
//! what is accepted is exactly what is masked.

use std::ops::{Range, RangeInclusive};

/// The card network, from the number's leading digits (IIN ranges): core-api
/// derives it, the record keeps it, and the connector routes by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CardBrand {
    Visa,
    Mastercard,
    Amex,
    Discover,
    Other,
}

impl CardBrand {
    pub const ALL: [CardBrand; 5] = [
        CardBrand::Visa,
        CardBrand::Mastercard,
        CardBrand::Amex,
        CardBrand::Discover,
        CardBrand::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CardBrand::Visa => "visa",
            CardBrand::Mastercard => "mastercard",
            CardBrand::Amex => "amex",
            CardBrand::Discover => "discover",
            CardBrand::Other => "other",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|brand| brand.as_str() == text)
    }
}

/// How many digits a primary account number has (ISO/IEC 7812).
pub const PAN_LENGTHS: RangeInclusive<usize> = 13..=19;

/// Whether `digits` is a non-empty run of ASCII digits passing the Luhn
/// checksum.
pub fn luhn_valid(digits: &str) -> bool {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let digit = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `digits` is a card number: [`PAN_LENGTHS`] digits passing Luhn,
/// and not all zeros (which passes Luhn but is no account).
pub fn is_card_number(digits: &str) -> bool {
    PAN_LENGTHS.contains(&digits.len()) && luhn_valid(digits) && digits.bytes().any(|b| b != b'0')
}

/// What may stand between the digit groups of a written card number:
/// `4242 4242 4242 4242`, `4242-4242-…`, and in URLs `+`, `%20`, `%2D`.
fn separator_len(rest: &[u8]) -> usize {
    match rest {
        [b' ' | b'-' | b'+', ..] => 1,
        [b'%', b'2', b'0' | b'd' | b'D', ..] => 3,
        _ => 0,
    }
}

/// The byte ranges of everything in `text` that looks like a card number:
/// digit groups, each separated from the next by one separator, of which
/// some consecutive groups hold [`PAN_LENGTHS`] digits that are a
/// [`is_card_number`]. Leftmost, then longest, first.
///
/// A run of groups that touches a letter is not a candidate: hex ids
/// (`tx_0192f0c5…`, UUIDs) have long digit runs often enough that one in a
/// few hundred would pass for a card, while a number someone wrote down is
/// set off by spaces, punctuation or nothing.
pub fn find_card_numbers(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // One run of groups: digits, then (separator, digits)*.
        let mut groups: Vec<Range<usize>> = Vec::new();
        let mut at = i;
        loop {
            let start = at;
            while at < bytes.len() && bytes[at].is_ascii_digit() {
                at += 1;
            }
            groups.push(start..at);
            let sep = separator_len(&bytes[at..]);
            if sep == 0 || !bytes.get(at + sep).is_some_and(u8::is_ascii_digit) {
                break;
            }
            at += sep;
        }
        let end = groups.last().map_or(at, |group| group.end);
        let touches_letter = (i > 0 && bytes[i - 1].is_ascii_alphabetic())
            || bytes.get(end).is_some_and(u8::is_ascii_alphabetic);
        let mut g = if touches_letter { groups.len() } else { 0 };
        while g < groups.len() {
            let mut matched = None;
            let mut digits = String::new();
            for (h, group) in groups.iter().enumerate().skip(g) {
                digits.push_str(&text[group.clone()]);
                if digits.len() > *PAN_LENGTHS.end() {
                    break;
                }
                if is_card_number(&digits) {
                    matched = Some(h);
                }
            }
            match matched {
                Some(h) => {
                    found.push(groups[g].start..groups[h].end);
                    g = h + 1;
                }
                None => g += 1,
            }
        }
        i = at.max(i + 1);
    }
    found
}

/// Whether `text` holds anything that looks like a card number.
pub fn contains_card_number(text: &str) -> bool {
    !find_card_numbers(text).is_empty()
}

/// `text` with everything that looks like a card number replaced by
/// `[card]`; anything else is left as it is.
pub fn mask_card_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for range in find_card_numbers(text) {
        out.push_str(&text[last..range.start]);
        out.push_str("[card]");
        last = range.end;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_pass_and_typos_fail() {
        for number in [
            "4242424242424242",
            "4000000000000002",
            "4000000000000119",
            "378282246310005",
        ] {
            assert!(luhn_valid(number), "{number}");
            assert!(is_card_number(number), "{number}");
        }
        for number in ["4242424242424241", "", "42a2", "1234567812345678"] {
            assert!(!luhn_valid(number), "{number}");
        }
    }

    #[test]
    fn card_numbers_have_13_to_19_digits_and_are_not_zero() {
        // 12 digits passing Luhn: too short to be a card.
        assert!(luhn_valid("424242424242") && !is_card_number("424242424242"));
        assert!(is_card_number("4222222222222"), "13-digit Visa");
        assert!(is_card_number("6011000990139424"));
        assert!(!is_card_number("42424242424242424242"), "20 digits");
        for zeros in ["0000000000000", "0000000000000000", "0000000000000000000"] {
            assert!(luhn_valid(zeros) && !is_card_number(zeros), "{zeros}");
        }
    }

    #[test]
    fn every_written_shape_is_found_and_masked() {
        for (text, masked) in [
            ("4242424242424242", "[card]"),
            ("4242 4242 4242 4242", "[card]"),
            ("4242-4242-4242-4242", "[card]"),
            ("3782 822463 10005", "[card]"),
            (
                "/transactions/4242%204242%204242%204242",
                "/transactions/[card]",
            ),
            ("/t/4242%2D4242%2d4242-4242", "/t/[card]"),
            ("/t/4242+4242+4242+4242?x=1", "/t/[card]?x=1"),
            ("order-4242424242424242", "order-[card]"),
            ("cus_4000000000000002", "cus_[card]"),
            (
                "card 4000 0000 0000 0002 exp 12/30",
                "card [card] exp 12/30",
            ),
            ("x/4000000000000002/y/378282246310005", "x/[card]/y/[card]"),
            ("ref 12 4242 4242 4242 4242", "ref 12 [card]"),
        ] {
            assert_eq!(mask_card_numbers(text), masked, "{text}");
            assert!(contains_card_number(text), "{text}");
        }
        // Not cards: wrong check digit, too short or long, zeros, ids.
        for text in [
            "4242424242424241",
            "424242424242",
            "42424242424242424242",
            "0000 0000 0000 0000",
            "tx_01a2019f44dc71ecb287c3b3734ae187",
            "tx_0192f0c5e4242424242424242b97c4a8",
            "abc4242424242424242",
            "4242424242424242xyz",
            "cus_1",
            "order-42",
            "2026-11-22",
            "/é/12",
            "4242  4242 4242 4242",
        ] {
            assert_eq!(mask_card_numbers(text), text, "{text}");
            assert!(!contains_card_number(text), "{text}");
        }
    }
}
