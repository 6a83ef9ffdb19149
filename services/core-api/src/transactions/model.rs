//! The transaction as clients see it (README walkthrough, `/openapi.json`), and its mapping to and
//! from the `tx:{id}` hash of [`platform::transaction`].

use std::collections::{BTreeMap, HashMap};

use platform::ApiError;
use platform::keyspace::field;
use platform::transaction::{Attempt, Status};
use serde::Serialize;
use utoipa::ToSchema;

/// A transaction. Holds no card number or CVC: only brand and last four.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Transaction {
    /// `tx_` + UUIDv7 (32 hex digits); sorts by creation time.
    #[schema(example = "tx_019aa2d6c3b07b3e9a1c2d3e4f506172")]
    pub id: String,
    pub status: Status,
    /// Minor units of `currency`.
    #[schema(example = 1299)]
    pub amount: u64,
    /// ISO 4217 code.
    #[schema(example = "EUR")]
    pub currency: String,
    pub customer_id: Option<String>,
    pub reference: Option<String>,
    pub merchant_id: String,
    /// The user whose token created the transaction.
    pub created_by: String,
    pub payment_method: PaymentMethod,
    /// Why the PSP declined the card (status `declined` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    /// Why charging failed (status `failed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Charge calls made at PSPs so far (a number, as it always was; the
    /// calls themselves are in `attempt_log`).
    pub attempts: u32,
    /// Every PSP call whose outcome is known, oldest first: which PSP, what
    /// it answered, how long it took. A call cut short by a crash is counted
    /// in `attempts` but has no entry.
    pub attempt_log: Vec<Attempt>,
    /// The PSP that charged (status `succeeded` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "psp-a")]
    pub psp: Option<String>,
    /// That PSP's id of the charge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psp_reference: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Minor units refunded so far (succeeded refunds only).
    pub refunded_amount: u64,
    /// The transaction's refunds, oldest first: in `GET /transactions/{id}`
    /// and the creation answer (lists leave it out; see
    /// `GET /transactions/{id}/refunds`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunds: Option<Vec<crate::refunds::Refund>>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

/// The card as far as it is kept: never the number or CVC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PaymentMethod {
    /// Always `card`.
    #[serde(rename = "type")]
    #[schema(example = "card")]
    pub kind: String,
    /// `visa`, `mastercard`, `amex`, `discover` or `other`.
    #[schema(example = "visa")]
    pub brand: String,
    #[schema(example = "4242")]
    pub last4: String,
}

impl Transaction {
    /// The hash fields of a new record ([`platform::keyspace::field`]);
    /// optional fields are left out rather than stored empty.
    pub fn to_hash_fields(&self, request_id: &str) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            (field::ID, self.id.clone()),
            (field::MERCHANT_ID, self.merchant_id.clone()),
            (field::STATUS, self.status.as_str().to_owned()),
            (field::AMOUNT, self.amount.to_string()),
            (field::CURRENCY, self.currency.clone()),
            (field::CREATED_BY, self.created_by.clone()),
            (field::BRAND, self.payment_method.brand.clone()),
            (field::LAST4, self.payment_method.last4.clone()),
            (
                field::METADATA,
                serde_json::to_string(&self.metadata).expect("string map serialises"),
            ),
            (field::ATTEMPTS, self.attempts.to_string()),
            (field::REQUEST_ID, request_id.to_owned()),
            (field::CREATED_AT, self.created_at.clone()),
            (field::UPDATED_AT, self.updated_at.clone()),
        ];
        if let Some(customer) = &self.customer_id {
            fields.push((field::CUSTOMER_ID, customer.clone()));
        }
        if let Some(reference) = &self.reference {
            fields.push((field::REFERENCE, reference.clone()));
        }
        fields
    }

    /// Reads a record hash. A hash that does not decode is a platform bug
    /// (only core-api and the connector's CAS write it), hence a 500.
    pub fn from_hash(mut hash: HashMap<String, String>) -> Result<Self, ApiError> {
        let mut take = |field: &str| hash.remove(field).filter(|value| !value.is_empty());
        let required = |value: Option<String>, field: &str| {
            value.ok_or_else(|| ApiError::internal(format!("transaction record lacks {field}")))
        };
        let id = required(take(field::ID), field::ID)?;
        let corrupt = |field: &str| ApiError::internal(format!("transaction {id}: bad {field}"));
        let status = required(take(field::STATUS), field::STATUS)?
            .parse::<Status>()
            .map_err(|_| corrupt(field::STATUS))?;
        let amount = required(take(field::AMOUNT), field::AMOUNT)?
            .parse()
            .map_err(|_| corrupt(field::AMOUNT))?;
        let attempts = take(field::ATTEMPTS)
            .map(|a| a.parse())
            .transpose()
            .map_err(|_| corrupt(field::ATTEMPTS))?
            .unwrap_or(0);
        let attempt_log = take(field::ATTEMPT_LOG)
            .map(|log| serde_json::from_str(&log))
            .transpose()
            .map_err(|_| corrupt(field::ATTEMPT_LOG))?
            .unwrap_or_default();
        let refunded_amount = take(field::REFUNDED_AMOUNT)
            .map(|a| a.parse())
            .transpose()
            .map_err(|_| corrupt(field::REFUNDED_AMOUNT))?
            .unwrap_or(0);
        let metadata = take(field::METADATA)
            .map(|m| serde_json::from_str(&m))
            .transpose()
            .map_err(|_| corrupt(field::METADATA))?
            .unwrap_or_default();
        Ok(Self {
            status,
            amount,
            currency: required(take(field::CURRENCY), field::CURRENCY)?,
            customer_id: take(field::CUSTOMER_ID),
            reference: take(field::REFERENCE),
            merchant_id: required(take(field::MERCHANT_ID), field::MERCHANT_ID)?,
            created_by: required(take(field::CREATED_BY), field::CREATED_BY)?,
            payment_method: PaymentMethod {
                kind: "card".to_owned(),
                brand: take(field::BRAND).unwrap_or_else(|| "other".to_owned()),
                last4: take(field::LAST4).unwrap_or_default(),
            },
            decline_code: take(field::DECLINE_CODE),
            failure_reason: take(field::FAILURE_REASON),
            attempts,
            attempt_log,
            psp: take(field::PSP),
            psp_reference: take(field::PSP_REFERENCE),
            metadata,
            refunded_amount,
            refunds: None,
            created_at: required(take(field::CREATED_AT), field::CREATED_AT)?,
            updated_at: required(take(field::UPDATED_AT), field::UPDATED_AT)?,
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_round_trip() {
        let tx = Transaction {
            id: "tx_019aa2d6c3b07b3e9a1c2d3e4f506172".into(),
            status: Status::Pending,
            amount: 1299,
            currency: "EUR".into(),
            customer_id: Some("cus_1".into()),
            reference: None,
            merchant_id: "acme".into(),
            created_by: "alice".into(),
            payment_method: PaymentMethod {
                kind: "card".into(),
                brand: "visa".into(),
                last4: "4242".into(),
            },
            decline_code: None,
            failure_reason: None,
            attempts: 0,
            attempt_log: Vec::new(),
            psp: None,
            psp_reference: None,
            metadata: [("k".to_owned(), "v".to_owned())].into(),
            refunded_amount: 0,
            refunds: None,
            created_at: "2026-11-22T10:00:00.000Z".into(),
            updated_at: "2026-11-22T10:00:00.000Z".into(),
        };
        let hash = tx
            .to_hash_fields("req-1")
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(Transaction::from_hash(hash).unwrap(), tx);
    }
}
