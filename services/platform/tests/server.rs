//! The shared HTTP runtime, booted in-process on port 0 against a real Redis:
//! JSON body rejections, readiness following Redis, and graceful drain.

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use platform::Shutdown;
use platform::health::Readiness;
use platform::http::Json;
use platform::redis::{Redis, RedisUrl};
use platform::server::Server;
use platform::testing::RedisServer;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[allow(dead_code)]
struct Order {
    amount: u64,
    currency: String,
}

async fn create(Json(order): Json<Order>) -> Json<Value> {
    Json(serde_json::json!({"amount": order.amount}))
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(800)).await;
    "done"
}

async fn boot(
    readiness: Readiness,
    drain: Duration,
) -> (
    String,
    Shutdown,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let routes = Router::new()
        .route("/orders", post(create))
        .route("/slow", get(slow));
    let server = Server::bind("test", ([127, 0, 0, 1], 0).into(), routes, readiness, drain)
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    (base, shutdown, task)
}

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("error bodies are JSON");
    (status, body["error"].clone())
}

#[tokio::test]
async fn body_rejections_answer_json_errors() {
    let (base, shutdown, _task) = boot(Readiness::always(), Duration::from_secs(1)).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/orders");
    let send = |content_type: Option<&'static str>, body: Vec<u8>| {
        let mut request = client.post(&url).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };

    // (content type, body, expected status, code, param)
    type Case = (
        Option<&'static str>,
        Vec<u8>,
        u16,
        &'static str,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            Some("text/plain"),
            br#"{"amount":1,"currency":"EUR"}"#.to_vec(),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            None,
            br#"{"amount":1,"currency":"EUR"}"#.to_vec(),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            Some("application/json"),
            b"{\"amount\":".to_vec(),
            400,
            "malformed_body",
            None,
        ),
        (
            Some("application/json"),
            b"\xff\xfe".to_vec(),
            400,
            "malformed_body",
            None,
        ),
        (
            Some("application/json"),
            br#"{"currency":"EUR"}"#.to_vec(),
            422,
            "missing_field",
            Some("amount"),
        ),
        (
            Some("application/json"),
            br#"{"amount":"ten","currency":"EUR"}"#.to_vec(),
            422,
            "invalid_field",
            Some("amount"),
        ),
        (
            Some("application/json"),
            br#"{"amount":-1,"currency":"EUR"}"#.to_vec(),
            422,
            "invalid_field",
            Some("amount"),
        ),
        (
            Some("application/json"),
            vec![b' '; 64 * 1024 + 1],
            413,
            "body_too_large",
            None,
        ),
    ];
    for (content_type, body, status, code, param) in cases {
        let (got_status, error) = error_of(send(content_type, body).await.unwrap()).await;
        assert_eq!(
            (got_status, error["code"].as_str().unwrap()),
            (status, code),
            "{error}"
        );
        assert_eq!(error["param"].as_str(), param, "{error}");
        assert!(
            error["message"].is_string() && error["type"].is_string(),
            "{error}"
        );
    }

    // The happy path still works, with a charset parameter.
    let ok = send(
        Some("application/json; charset=utf-8"),
        br#"{"amount":5,"currency":"EUR"}"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);

    // Unknown routes and methods answer JSON too.
    let (status, error) = error_of(client.get(format!("{base}/nope")).send().await.unwrap()).await;
    assert_eq!(
        (status, error["code"].as_str().unwrap()),
        (404, "route_not_found")
    );
    let (status, error) = error_of(client.delete(&url).send().await.unwrap()).await;
    assert_eq!(
        (status, error["code"].as_str().unwrap()),
        (405, "method_not_allowed")
    );
    shutdown.trigger();
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let (base, shutdown, _task) = boot(Readiness::always(), Duration::from_secs(1)).await;
    let client = reqwest::Client::new();
    let echoed = client
        .get(format!("{base}/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
    // A header that could forge log lines is replaced, not echoed.
    let replaced = client
        .get(format!("{base}/healthz"))
        .header("x-request-id", "a b\"c")
        .send()
        .await
        .unwrap();
    let id = replaced.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    shutdown.trigger();
}

#[tokio::test]
async fn readiness_follows_redis_without_restart() {
    let mut redis = RedisServer::start();
    let handle = Redis::connect(&RedisUrl::parse(&redis.url()).unwrap()).unwrap();
    let (base, shutdown, _task) = boot(Readiness::redis(handle), Duration::from_secs(1)).await;
    let client = reqwest::Client::new();
    let readyz = || async {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };

    assert_eq!(readyz().await, 200);
    redis.stop();
    let (status, error) =
        error_of(client.get(format!("{base}/readyz")).send().await.unwrap()).await;
    assert_eq!(
        (status, error["code"].as_str().unwrap()),
        (503, "not_ready")
    );
    // Liveness is not readiness: the process itself is fine.
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    redis.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while readyz().await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz did not recover after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.trigger();
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let (base, shutdown, task) = boot(Readiness::always(), Duration::from_secs(5)).await;
    let in_flight = tokio::spawn(async move {
        reqwest::get(format!("{base}/slow"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.trigger();
    assert_eq!(in_flight.await.unwrap(), "done");
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn drain_is_bounded_by_the_timeout() {
    let (base, shutdown, task) = boot(Readiness::always(), Duration::from_millis(100)).await;
    let _in_flight = tokio::spawn(async move { reqwest::get(format!("{base}/slow")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    shutdown.trigger();
    task.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "drain waited for the slow request"
    );
}

#[tokio::test]
async fn shutdown_delay_keeps_serving_while_not_ready() {
    let routes = Router::new().route("/slow", get(slow));
    let server = Server::bind(
        "test",
        ([127, 0, 0, 1], 0).into(),
        routes,
        Readiness::always(),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.local_addr());
    let shutdown = Shutdown::with_delay(Duration::from_millis(400));
    let task = tokio::spawn(server.run(shutdown.clone()));
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    shutdown.trigger();
    assert!(shutdown.is_requested() && !shutdown.is_triggered());
    // Requested: not ready, but still accepting new connections.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let (status, error) = error_of(fresh.get(format!("{base}/readyz")).send().await.unwrap()).await;
    assert_eq!(
        (status, error["code"].as_str().unwrap()),
        (503, "not_ready")
    );
    assert_eq!(
        fresh
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // After the delay: stopped, port closed.
    task.await.unwrap().unwrap();
    assert!(shutdown.is_triggered());
    assert!(fresh.get(format!("{base}/healthz")).send().await.is_err());
}
