//! Card data on the queue is sealed (issue 21, point 2): core-api encrypts
//! it for the connector with `CARD_ENCRYPTION_KEY`, so no card number or
//! CVC is ever written to Redis — its append-only file keeps every stream
//! entry, deleted or not, until the next rewrite, and a PCI DSS
//! environment must not keep the CVC at all after authorisation.
//!
//! XChaCha20-Poly1305 (RustCrypto) with a random 192-bit nonce per
//! message, and the transaction id and merchant id as associated data, so
//! a sealed card moved into another transaction's message does not open.
//! The sealed form is text, `v1.<nonce>.<ciphertext>` (base64url), so the
//! message stays JSON.
//!
//! The key is 32 bytes, given as 64 hex digits or as base64. Without
//! `CARD_ENCRYPTION_KEY` a development key applies, published in this
//! repository; like the development `JWT_SECRET`, it is refused when
//! `PLATFORM_ENV` is not `development` ([`refuse_development_key`]).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Deserializer, Serialize};

use crate::queue::CardDetails;

/// The variable holding the key.
pub const KEY_VARIABLE: &str = "CARD_ENCRYPTION_KEY";

/// The development key: these 32 ASCII bytes, so that it is recognisable
/// in any encoding it is written in.
const DEVELOPMENT_KEY: &[u8; 32] = b"dev-only card key: never deploy!";

const FORMAT: &str = "v1";

/// `CARD_ENCRYPTION_KEY`: 32 bytes; never printed.
#[derive(Clone)]
pub struct CardKey {
    bytes: [u8; 32],
}

impl CardKey {
    /// Parses 64 hex digits or base64 (standard or URL-safe, padded or
    /// not) of exactly 32 bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let hex = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
        let bytes = if hex {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex digits"))
                .collect::<Vec<u8>>()
        } else {
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .ok_or_else(|| "must be 32 bytes as 64 hex digits or base64".to_owned())?
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            format!(
                "must be 32 bytes as 64 hex digits or base64 (got {} bytes)",
                bytes.len()
            )
        })?;
        Ok(Self { bytes })
    }

    /// The key that applies when none is configured: development only.
    pub fn development() -> Self {
        Self {
            bytes: *DEVELOPMENT_KEY,
        }
    }

    pub fn is_development(&self) -> bool {
        &self.bytes == DEVELOPMENT_KEY
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.bytes).into())
    }

    /// Seals `card` for the message of `transaction_id` of `merchant_id`.
    pub fn seal(&self, card: &CardDetails, transaction_id: &str, merchant_id: &str) -> SealedCard {
        let plaintext = serde_json::to_vec(card).expect("card details serialise");
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: &plaintext,
                    aad: &associated_data(transaction_id, merchant_id),
                },
            )
            .expect("XChaCha20-Poly1305 encryption of a small message cannot fail");
        SealedCard(format!(
            "{FORMAT}.{}.{}",
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(ciphertext)
        ))
    }

    /// Opens what [`CardKey::seal`] sealed for the same transaction and
    /// merchant with the same key.
    pub fn open(
        &self,
        sealed: &SealedCard,
        transaction_id: &str,
        merchant_id: &str,
    ) -> Result<CardDetails, SealError> {
        let mut parts = sealed.0.split('.');
        let (Some(FORMAT), Some(nonce), Some(ciphertext), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SealError::Malformed);
        };
        let nonce: [u8; 24] = URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()
            .and_then(|nonce| nonce.try_into().ok())
            .ok_or(SealError::Malformed)?;
        let ciphertext = URL_SAFE_NO_PAD
            .decode(ciphertext)
            .map_err(|_| SealError::Malformed)?;
        let plaintext = self
            .cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &associated_data(transaction_id, merchant_id),
                },
            )
            .map_err(|_| SealError::WrongKeyOrTampered)?;
        serde_json::from_slice(&plaintext).map_err(|_| SealError::Malformed)
    }
}

impl std::fmt::Debug for CardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_development() {
            f.write_str("CardKey(development)")
        } else {
            f.write_str("CardKey(***)")
        }
    }
}

impl<'de> Deserialize<'de> for CardKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        CardKey::parse(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl Default for CardKey {
    fn default() -> Self {
        Self::development()
    }
}

/// Length-prefixed, so no two (transaction, merchant) pairs share it.
fn associated_data(transaction_id: &str, merchant_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(transaction_id.len() + merchant_id.len() + 8);
    aad.extend_from_slice(&(transaction_id.len() as u32).to_be_bytes());
    aad.extend_from_slice(transaction_id.as_bytes());
    aad.extend_from_slice(&(merchant_id.len() as u32).to_be_bytes());
    aad.extend_from_slice(merchant_id.as_bytes());
    aad
}

/// Card details as they travel on the queue: sealed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedCard(String);

impl std::fmt::Debug for SealedCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedCard(..)")
    }
}

/// Why a sealed card did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the sealed card is not in the v1 format")]
    Malformed,
    /// Another key (e.g. a connector and core-api configured differently),
    /// another transaction's card, or altered bytes: indistinguishable.
    #[error("the sealed card does not open with this key for this transaction")]
    WrongKeyOrTampered,
}

/// Refuses the development key (set explicitly or by default) unless
/// `env` is `development`: with it, anyone with this repository can read
/// every card number in the queue, the retry set and the AOF.
pub fn refuse_development_key(
    env: &crate::config::PlatformEnv,
    key: &CardKey,
) -> Result<(), crate::ConfigError> {
    if key.is_development() && !env.is_development() {
        return Err(crate::ConfigError {
            variable: KEY_VARIABLE.into(),
            problem: format!(
                "is the development key (or not set) and PLATFORM_ENV is {}; set 32 random \
                 bytes of your own, as 64 hex digits or base64",
                env.as_str()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PlatformEnv;

    fn card() -> CardDetails {
        CardDetails {
            number: "4242424242424242".into(),
            expiry_month: 12,
            expiry_year: 2030,
            cvc: "987".into(),
        }
    }

    fn own_key() -> CardKey {
        CardKey::parse("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f").unwrap()
    }

    #[test]
    fn sealed_cards_open_only_with_the_key_for_their_transaction() {
        let key = own_key();
        let sealed = key.seal(&card(), "tx_1", "acme");
        let text = serde_json::to_string(&sealed).unwrap();
        for secret in ["4242", "987", "2030", "number", "cvc"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(key.open(&sealed, "tx_1", "acme").unwrap() == card());
        // Fresh nonce each time.
        assert_ne!(key.seal(&card(), "tx_1", "acme"), sealed);
        assert_eq!(
            CardKey::development().open(&sealed, "tx_1", "acme"),
            Err(SealError::WrongKeyOrTampered)
        );
        for (tx, merchant) in [("tx_2", "acme"), ("tx_1", "globex"), ("tx_1a", "cme")] {
            assert_eq!(
                key.open(&sealed, tx, merchant),
                Err(SealError::WrongKeyOrTampered)
            );
        }
        let mut tampered = text.clone();
        let last = tampered.len() - 2;
        let flipped = if &tampered[last..last + 1] == "A" {
            "B"
        } else {
            "A"
        };
        tampered.replace_range(last..last + 1, flipped);
        let tampered: SealedCard = serde_json::from_str(&tampered).unwrap();
        assert!(key.open(&tampered, "tx_1", "acme").is_err());
        for junk in ["", "v1", "v1.AAAA.AAAA", "v2.x.y", "v1.!.!"] {
            let junk = SealedCard(junk.into());
            assert_eq!(key.open(&junk, "tx_1", "acme"), Err(SealError::Malformed));
        }
    }

    #[test]
    fn keys_are_32_bytes_as_hex_or_base64_and_never_print() {
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        let base64 = STANDARD.encode((0u8..32).collect::<Vec<_>>());
        assert_eq!(CardKey::parse(hex).unwrap().bytes, own_key().bytes);
        assert_eq!(CardKey::parse(&base64).unwrap().bytes, own_key().bytes);
        assert_eq!(
            CardKey::parse(base64.trim_end_matches('=')).unwrap().bytes,
            own_key().bytes
        );
        for bad in ["", "short", &hex[..62], &STANDARD.encode([1u8; 31]), "zz"] {
            assert!(CardKey::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", own_key()), "CardKey(***)");
        let dev_hex: String = DEVELOPMENT_KEY.iter().map(|b| format!("{b:02x}")).collect();
        assert!(CardKey::parse(&dev_hex).unwrap().is_development());
    }

    #[test]
    fn the_development_key_is_refused_outside_development() {
        let production = PlatformEnv::new("production").unwrap();
        assert!(refuse_development_key(&PlatformEnv::default(), &CardKey::development()).is_ok());
        assert!(refuse_development_key(&production, &own_key()).is_ok());
        let error = refuse_development_key(&production, &CardKey::default()).unwrap_err();
        assert_eq!(error.variable, "CARD_ENCRYPTION_KEY");
    }
}
