//! The client's `Idempotency-Key` header: it names a Redis key, so it is
//! bounded and printable.

use super::FieldError;
use platform::http::ErrorCode;

/// 1–255 printable ASCII characters (space to `~`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(bytes: &[u8]) -> Result<Self, FieldError> {
        if (1..=Self::MAX_LEN).contains(&bytes.len())
            && bytes.iter().all(|b| (0x20..=0x7e).contains(b))
        {
            // All bytes are ASCII, so this cannot fail.
            Ok(Self(String::from_utf8_lossy(bytes).into_owned()))
        } else {
            Err(FieldError::new(
                ErrorCode::InvalidIdempotencyKey,
                "Idempotency-Key must be 1-255 printable ASCII characters",
            ))
        }
    }

    /// The request's key, if it sent one. Two `Idempotency-Key` headers
    /// are refused: which one would the client mean?
    pub fn from_headers(headers: &http::HeaderMap) -> Result<Option<Self>, FieldError> {
        let mut values = headers.get_all("idempotency-key").iter();
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(FieldError::new(
                ErrorCode::InvalidIdempotencyKey,
                "send one Idempotency-Key header, not several",
            ));
        }
        Self::parse(first.as_bytes()).map(Some)
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
        assert!(IdempotencyKey::parse(b"order 42 / try 1").is_ok());
        assert!(IdempotencyKey::parse(&[b'k'; 255]).is_ok());
        for bad in [&b""[..], &[b'k'; 256], b"tab\there", "é".as_bytes()] {
            assert!(IdempotencyKey::parse(bad).is_err());
        }
    }
}
