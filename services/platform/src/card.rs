//! Card-number arithmetic every service needs the same way: core-api
//! validates numbers, the PSP sandbox validates them again as a PSP would,
//! and the access log masks anything that looks like one.

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
        }
        for number in ["4242424242424241", "", "42a2", "1234567812345678"] {
            assert!(!luhn_valid(number), "{number}");
        }
    }
}
