//! The PSP client against a real HTTP server that answers a charge with a
//! redirect: the card must never be re-sent to where the redirect points.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::post;
use platform::crypto::CardKey;
use platform::queue::{CardDetails, ChargeMessage};
use psp_connector::PspUrl;
use psp_connector::psp::{ChargeOutcome, PspClient};
use psp_sandbox::cards::APPROVED;

#[tokio::test]
async fn a_redirected_charge_is_rejected_and_not_followed() {
    let followed = Arc::new(AtomicUsize::new(0));
    let counter = followed.clone();
    let app = Router::new()
        .route(
            "/charges",
            post(|| async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, "/elsewhere")],
                )
            }),
        )
        .route(
            "/elsewhere",
            post(move || async move {
                counter.fetch_add(1, Ordering::SeqCst);
                axum::Json(serde_json::json!({"status": "succeeded"}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let url = PspUrl::parse(&format!("http://{addr}")).unwrap();
    let client = PspClient::new(&url, Duration::from_secs(2)).unwrap();
    let card = CardDetails {
        number: APPROVED.into(),
        expiry_month: 12,
        expiry_year: 2030,
        cvc: "123".into(),
    };
    let message = ChargeMessage {
        transaction_id: "txn_redirect".into(),
        request_id: "req-redirect".into(),
        merchant_id: "acme".into(),
        amount: 1299,
        currency: "EUR".into(),
        card: CardKey::development().seal(&card, "txn_redirect", "acme"),
        first_attempt_ms: None,
    };
    let outcome = client
        .charge(&message, &card, &message.transaction_id)
        .await;
    assert!(
        matches!(&outcome, ChargeOutcome::Rejected(reason) if reason.starts_with("http 307")),
        "{outcome:?}"
    );
    assert_eq!(
        followed.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
}
