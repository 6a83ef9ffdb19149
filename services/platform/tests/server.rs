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

/// Issue 21, point 3: the shared server's header-read and idle timeouts
/// and its connection cap, seen from raw TCP clients.
mod connection_limits {
    use std::time::{Duration, Instant};

    use platform::connections::HttpLimits;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn boot_limited(limits: HttpLimits) -> (String, std::net::SocketAddr, Shutdown) {
        let routes = Router::new()
            .route("/orders", post(create))
            .route("/slow", get(slow));
        let server = Server::bind(
            "test",
            ([127, 0, 0, 1], 0).into(),
            routes,
            Readiness::always(),
            Duration::from_secs(1),
        )
        .await
        .unwrap()
        .with_limits(limits);
        let addr = server.local_addr();
        let shutdown = Shutdown::new();
        tokio::spawn(server.run(shutdown.clone()));
        (format!("http://{addr}"), addr, shutdown)
    }

    /// Reads until the server closes the connection; how long that took
    /// from `since`, and everything read. Fails after `limit`.
    async fn until_closed(
        stream: &mut TcpStream,
        since: Instant,
        limit: Duration,
    ) -> (Duration, String) {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let left = limit.saturating_sub(since.elapsed());
            match tokio::time::timeout(left, stream.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    return (since.elapsed(), String::from_utf8_lossy(&seen).into_owned());
                }
                Ok(Ok(n)) => seen.extend_from_slice(&buffer[..n]),
                Err(_) => panic!(
                    "still open after {limit:?}; read {:?}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
    }

    const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";

    #[tokio::test]
    async fn slow_and_idle_connections_are_closed_after_their_timeouts() {
        let limits = HttpLimits {
            header_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_millis(1500),
            max_connections: None,
        };
        let (_, addr, shutdown) = boot_limited(limits).await;

        // Slowloris: a header every 200 ms never finishes the head; the
        // header timeout counts from the first byte, not the last.
        let mut slowloris = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        slowloris
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
            .await
            .unwrap();
        let (mut reader, mut writer) = slowloris.into_split();
        let drip = tokio::spawn(async move {
            for i in 0..50 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if writer
                    .write_all(format!("X-Drip-{i}: 1\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let mut buffer = [0u8; 1024];
        let closed =
            match tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => started.elapsed(),
                Ok(Ok(_)) => panic!("no answer is due to an unfinished head"),
                Err(_) => panic!("slowloris connection still open after 5 s"),
            };
        drip.abort();
        assert!(
            closed >= Duration::from_millis(450) && closed < Duration::from_millis(1400),
            "slowloris closed after {closed:?}"
        );

        // Keep-alive after one request: closed after the idle timeout.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(HEALTHZ).await.unwrap();
        let mut answer = vec![0u8; 1024];
        let n = idle.read(&mut answer).await.unwrap();
        assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
        let (closed, _) = until_closed(&mut idle, Instant::now(), Duration::from_secs(5)).await;
        assert!(
            closed >= Duration::from_millis(1400) && closed < Duration::from_millis(2500),
            "idle keep-alive closed after {closed:?}"
        );

        // Connected, nothing sent: the idle timeout too.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let (closed, read) =
            until_closed(&mut silent, Instant::now(), Duration::from_secs(5)).await;
        assert!(read.is_empty(), "{read}");
        assert!(
            closed >= Duration::from_millis(1400) && closed < Duration::from_millis(2500),
            "silent connection closed after {closed:?}"
        );

        // A request being handled is not cut by either timeout.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (_, read) = until_closed(&mut slow, Instant::now(), Duration::from_secs(5)).await;
        assert!(
            read.starts_with("HTTP/1.1 200") && read.ends_with("done"),
            "{read}"
        );

        // A body dripped past the header timeout: 408, JSON.
        let mut dripped = TcpStream::connect(addr).await.unwrap();
        dripped
            .write_all(
                b"POST /orders HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                  Content-Length: 40\r\n\r\n{\"amount\":",
            )
            .await
            .unwrap();
        let (_, read) = until_closed(&mut dripped, Instant::now(), Duration::from_secs(5)).await;
        assert!(read.starts_with("HTTP/1.1 408"), "{read}");
        assert!(read.contains("\"code\":\"request_timeout\""), "{read}");
        shutdown.trigger();
    }

    #[tokio::test]
    async fn at_the_connection_cap_the_longest_idle_connections_make_room() {
        let limits = HttpLimits {
            max_connections: Some(10),
            ..HttpLimits::default()
        };
        let (base, addr, shutdown) = boot_limited(limits).await;

        // Ten kept-alive after a request, then ten that send nothing.
        let mut held = Vec::new();
        for _ in 0..10 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(HEALTHZ).await.unwrap();
            let mut answer = vec![0u8; 1024];
            assert!(stream.read(&mut answer).await.unwrap() > 0);
            held.push(stream);
        }
        for _ in 0..10 {
            held.push(TcpStream::connect(addr).await.unwrap());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A new client still gets in.
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let started = Instant::now();
        let status = fresh
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("/readyz answers over the cap")
            .status();
        assert_eq!(status, 200);
        assert!(started.elapsed() < Duration::from_secs(1));
        // The oldest idle ones were closed to make room: at most ten of the
        // twenty (plus the probe's) are open.
        let mut closed = 0;
        for stream in &mut held {
            let mut byte = [0u8; 1];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await
            {
                closed += 1;
            }
        }
        assert!(closed >= 11, "only {closed} of 20 idle connections closed");
        drop(held);

        // Connections in the middle of a request are never evicted: with
        // all ten busy, a newcomer is closed at once instead.
        let mut busy = Vec::new();
        for _ in 0..10 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            busy.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut newcomer = TcpStream::connect(addr).await.unwrap();
        let _ = newcomer.write_all(HEALTHZ).await;
        let (_, read) =
            until_closed(&mut newcomer, Instant::now(), Duration::from_millis(500)).await;
        assert!(read.is_empty(), "refused without an answer: {read}");
        for mut stream in busy {
            let (_, read) = until_closed(&mut stream, Instant::now(), Duration::from_secs(5)).await;
            assert!(read.ends_with("done"), "{read}");
        }
        // Once they are done there is room again.
        let status = fresh
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        shutdown.trigger();
    }

    #[tokio::test]
    async fn too_many_headers_is_a_json_431() {
        let (base, _, shutdown) = boot_limited(HttpLimits::default()).await;
        let client = reqwest::Client::new();
        let mut request = client.get(format!("{base}/healthz"));
        for i in 0..120 {
            request = request.header(format!("x-extra-{i}"), "1");
        }
        let (status, error) = error_of(request.send().await.unwrap()).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (431, Some("too_many_headers"))
        );
        shutdown.trigger();
    }
}
