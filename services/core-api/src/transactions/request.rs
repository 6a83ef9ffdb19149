//! The body of `POST /transactions`, read in two steps: serde checks the
//! shape (unknown fields, missing fields, JSON types of plain strings),
//! then [`CreateTransactionRequest::validate`] parses every value into a
//! [`crate::domain`] type, so each failure gets its own code and param.
//!
//! Numeric and card fields are read as raw JSON values on purpose: a
//! domain parser then answers `invalid_amount` for `"12"` or `-5` alike,
//! and a card number sent as a JSON integer is refused without serde
//! echoing the digits back in its message.

use platform::ApiError;
use platform::http::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{Amount, CardNumber, Currency, CustomerId, Cvc, Expiry, Metadata, Reference};

/// A request to charge a card.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTransactionRequest {
    /// Positive integer, minor units of `currency` (1299 = 12.99 EUR), at
    /// most 10^12.
    #[schema(value_type = u64, minimum = 1, maximum = 1_000_000_000_000_u64, example = 1299)]
    pub amount: serde_json::Value,
    /// Upper-case ISO 4217 code.
    #[schema(example = "EUR")]
    pub currency: String,
    /// 1–64 of `[A-Za-z0-9_.:-]`, not a card number.
    #[serde(default)]
    #[schema(example = "cus_1")]
    pub customer_id: Option<String>,
    /// The merchant's reference, 1–64 of `[A-Za-z0-9_.:-]`, not a card
    /// number.
    #[serde(default)]
    #[schema(example = "order-42")]
    pub reference: Option<String>,
    pub payment_method: PaymentMethodRequest,
    /// At most 20 keys (≤ 40 characters), string values (≤ 500
    /// characters); no card numbers in either.
    #[serde(default)]
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The card to charge.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentMethodRequest {
    /// Must be `card`.
    #[serde(rename = "type")]
    #[schema(example = "card")]
    pub kind: String,
    /// 13–19 digits passing the Luhn check (not all zeros).
    #[schema(value_type = String, example = "4242424242424242")]
    pub number: serde_json::Value,
    /// 1–12.
    #[schema(value_type = u8, minimum = 1, maximum = 12, example = 12)]
    pub expiry_month: serde_json::Value,
    /// Four digits; the month must not be in the past.
    #[schema(value_type = u16, example = 2030)]
    pub expiry_year: serde_json::Value,
    /// 3 or 4 digits.
    #[schema(value_type = String, example = "123")]
    pub cvc: serde_json::Value,
}

impl std::fmt::Debug for PaymentMethodRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PaymentMethodRequest(***)")
    }
}

/// A request whose every value is valid.
#[derive(Debug, Clone)]
pub struct NewTransaction {
    pub amount: Amount,
    pub currency: Currency,
    pub customer_id: Option<CustomerId>,
    pub reference: Option<Reference>,
    pub card: CardNumber,
    pub expiry: Expiry,
    pub cvc: Cvc,
    pub metadata: Metadata,
}

impl CreateTransactionRequest {
    /// Parses field by field, in body order; the first failure answers.
    pub fn validate(self) -> Result<NewTransaction, ApiError> {
        let amount = Amount::parse(&self.amount).map_err(|e| e.at("amount"))?;
        let currency = Currency::parse(&self.currency).map_err(|e| e.at("currency"))?;
        let customer_id = self
            .customer_id
            .as_deref()
            .map(CustomerId::parse)
            .transpose()
            .map_err(|e| e.at("customer_id"))?;
        let reference = self
            .reference
            .as_deref()
            .map(Reference::parse)
            .transpose()
            .map_err(|e| e.at("reference"))?;
        let method = self.payment_method;
        if method.kind != "card" {
            return Err(ApiError::invalid_field(
                ErrorCode::InvalidPaymentMethodType,
                "payment_method.type must be \"card\"",
                "payment_method.type",
            ));
        }
        let card = CardNumber::parse(&method.number).map_err(|e| e.at("payment_method.number"))?;
        let expiry = Expiry::parse(&method.expiry_month, &method.expiry_year)
            .map_err(|(e, field)| e.at(format!("payment_method.{field}")))?;
        let cvc = Cvc::parse(&method.cvc).map_err(|e| e.at("payment_method.cvc"))?;
        let metadata = match &self.metadata {
            Some(raw) => Metadata::parse(raw).map_err(|(e, param)| e.at(param))?,
            None => Metadata::default(),
        };
        Ok(NewTransaction {
            amount,
            currency,
            customer_id,
            reference,
            card,
            expiry,
            cvc,
            metadata,
        })
    }
}

/// Everything that makes two requests "the same body" for idempotency:
/// the parsed values in a fixed order (so key order and whitespace in the
/// client's JSON do not matter). Includes the card, which is why it is only
/// ever fed to a keyed MAC, never stored as is.
#[derive(Serialize)]
struct Canonical<'a> {
    amount: u64,
    currency: &'a str,
    customer_id: Option<&'a str>,
    reference: Option<&'a str>,
    number: &'a str,
    expiry_month: u8,
    expiry_year: u16,
    cvc: &'a str,
    metadata: &'a std::collections::BTreeMap<String, String>,
}

impl NewTransaction {
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&Canonical {
            amount: self.amount.minor_units(),
            currency: self.currency.code(),
            customer_id: self.customer_id.as_ref().map(CustomerId::as_str),
            reference: self.reference.as_ref().map(Reference::as_str),
            number: self.card.expose(),
            expiry_month: self.expiry.month(),
            expiry_year: self.expiry.year(),
            cvc: self.cvc.expose(),
            metadata: self.metadata.as_map(),
        })
        .expect("canonical form serialises")
    }
}
