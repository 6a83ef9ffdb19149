//! Free-form merchant data stored with the transaction, bounded so that a
//! record stays small.

use platform::http::ErrorCode;
use std::collections::BTreeMap;

use super::FieldError;

/// At most 20 keys of 1–40 characters, each value a string of at most 500
/// characters. Kept sorted so that its JSON form is canonical.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    pub const MAX_KEYS: usize = 20;
    pub const MAX_KEY_CHARS: usize = 40;
    pub const MAX_VALUE_CHARS: usize = 500;

    /// Errors carry the param at fault (`metadata` or `metadata.<key>`).
    pub fn parse(
        raw: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, (FieldError, String)> {
        let invalid = |message: String, param: String| {
            (FieldError::new(ErrorCode::InvalidMetadata, message), param)
        };
        if raw.len() > Self::MAX_KEYS {
            return Err(invalid(
                format!("metadata may have at most {} keys", Self::MAX_KEYS),
                "metadata".to_owned(),
            ));
        }
        let mut map = BTreeMap::new();
        for (key, value) in raw {
            let chars = key.chars().count();
            if chars == 0 || chars > Self::MAX_KEY_CHARS || key.chars().any(char::is_control) {
                return Err(invalid(
                    format!(
                        "metadata keys must be 1-{} printable characters",
                        Self::MAX_KEY_CHARS
                    ),
                    "metadata".to_owned(),
                ));
            }
            if platform::card::contains_card_number(key) {
                return Err((
                    super::card_number_not_allowed("a metadata key"),
                    "metadata".to_owned(),
                ));
            }
            let param = format!("metadata.{key}");
            let value = value.as_str().ok_or_else(|| {
                invalid("metadata values must be strings".to_owned(), param.clone())
            })?;
            if value.chars().count() > Self::MAX_VALUE_CHARS {
                return Err(invalid(
                    format!(
                        "metadata values may have at most {} characters",
                        Self::MAX_VALUE_CHARS
                    ),
                    param,
                ));
            }
            if platform::card::contains_card_number(value) {
                return Err((super::card_number_not_allowed(&param), param));
            }
            map.insert(key.clone(), value.to_owned());
        }
        Ok(Self(map))
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("a string map always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<Metadata, (&'static str, String)> {
        Metadata::parse(value.as_object().unwrap()).map_err(|(e, p)| (e.code.as_str(), p))
    }

    #[test]
    fn bounds() {
        assert!(parse(json!({"a": "b"})).is_ok());
        let many: serde_json::Map<_, _> = (0..21).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert_eq!(
            parse(many.into()).unwrap_err(),
            ("invalid_metadata", "metadata".into())
        );
        assert_eq!(
            parse(json!({"n": 1})).unwrap_err(),
            ("invalid_metadata", "metadata.n".into())
        );
        assert_eq!(
            parse(json!({"v": "x".repeat(501)})).unwrap_err(),
            ("invalid_metadata", "metadata.v".into())
        );
        assert!(parse(json!({"x".repeat(41): "v"})).is_err());
        assert!(parse(json!({"": "v"})).is_err());
        assert_eq!(
            parse(json!({"note": "paid with 4242 4242 4242 4242"})).unwrap_err(),
            ("card_number_not_allowed", "metadata.note".into())
        );
        assert_eq!(
            parse(json!({"4242424242424242": "v"})).unwrap_err(),
            ("card_number_not_allowed", "metadata".into())
        );
        assert!(parse(json!({"order": "2026-11-22 order 42, 3 items"})).is_ok());
    }
}
