//! The gateway against careless and hostile clients (README
//! "Reliability"): a bad request never takes an upstream out, and the
//! process-control proxy answers only the dashboard, on this machine.

use std::time::Duration;

use e2e::client;
use e2e::client::APPROVED;
use e2e::stack::Stack;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends raw bytes to the gateway and returns what it answered (status
/// line and body), or what was read before the connection closed.
async fn raw(stack: &Stack, request: &[u8]) -> String {
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", stack.port(8000)))
        .await
        .unwrap();
    socket.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The body of a raw HTTP/1.1 answer, de-chunked if it was sent chunked.
fn body_of(answer: &str) -> String {
    let (head, mut body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_owned();
    }
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn chunked_post(
    stack: &Stack,
    path: &str,
    token: &str,
    chunks: &[Vec<u8>],
    terminator: &[u8],
) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        stack.port(8000)
    )
    .into_bytes();
    for chunk in chunks {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(terminator);
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bodies_never_take_an_upstream_out_of_the_gateway() {
    let stack = Stack::boot().await;
    let gateway = stack.gateway();
    let http = client::http_client();
    let token = client::login(&http, &gateway, "alice").await;
    let body = client::payment(APPROVED, "cus_1", "order-bad");

    // Two of each, more than there are core-api replicas: a chunked body
    // over 64 KiB, a malformed chunk size, a body cut off mid-chunk, and
    // the same at /auth/token (one auth-api); with a valid token and
    // without one.
    let big = vec![vec![b' '; 40 * 1024], vec![b' '; 40 * 1024]];
    let anonymous = raw(
        &stack,
        &chunked_post(&stack, "/transactions", "x", &big, b"0\r\n\r\n"),
    )
    .await;
    // Refused by the gateway before any upstream sees it, token or not.
    assert!(anonymous.starts_with("HTTP/1.1 413"), "{anonymous}");
    for path in ["/transactions", "/auth/token"] {
        for _ in 0..2 {
            let answer = raw(
                &stack,
                &chunked_post(&stack, path, &token, &big, b"0\r\n\r\n"),
            )
            .await;
            assert!(
                answer.starts_with("HTTP/1.1 413"),
                "chunked body over 64 KiB at {path}: {answer}"
            );
            let json = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            let error: Value = serde_json::from_str(json).unwrap_or_else(|_| panic!("{answer}"));
            assert_eq!(error["error"]["type"], "invalid_request_error", "{answer}");
            assert_eq!(error["error"]["code"], "body_too_large", "{answer}");

            let malformed =
                chunked_post(&stack, path, &token, &[b"{\"a\":".to_vec()], b"zz\r\n\r\n");
            let answer = raw(&stack, &malformed).await;
            assert!(
                answer.starts_with("HTTP/1.1 4"),
                "malformed chunk at {path}: {answer}"
            );

            let cut = chunked_post(&stack, path, &token, &[b"{\"a\":".to_vec()], b"ff\r\nabc");
            let _ = tokio::time::timeout(Duration::from_secs(2), raw(&stack, &cut)).await;
        }
    }

    // Every upstream is still in: legitimate requests right after, on every
    // replica (round robin), are all served.
    for i in 0..20 {
        let response = client::create(&http, &gateway, &token, &body)
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "payment {i} after the bad bodies");
    }
    let token = client::login(&http, &gateway, "bob").await;
    assert!(!token.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_process_control_proxy_answers_only_the_dashboard_on_this_machine() {
    let stack = Stack::boot().await;
    let port = stack.port(8000);
    let get = |path: &str, headers: &str| {
        format!("GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n").into_bytes()
    };
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    let dashboard = "X-Dashboard: 1\r\n";

    // The dashboard's own call: the real process-compose answers.
    let answer = raw(
        &stack,
        &get("/_pc/processes", &format!("{host}{dashboard}")),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"core-api-0\""), "{answer}");
    let same_origin = format!("{host}{dashboard}Origin: http://127.0.0.1:{port}\r\n");
    let answer = raw(&stack, &get("/_pc/processes", &same_origin)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let call = |method: &str, path: &str, headers: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
    };
    // The queue panel's calls reach core-api: the view, and a requeue of a
    // dead letter that does not exist.
    let answer = raw(&stack, &get("/_admin/queue", &same_origin)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let view: Value =
        serde_json::from_str(&body_of(&answer)).unwrap_or_else(|_| panic!("{answer}"));
    assert_eq!(view["stream"]["name"], "transactions", "{answer}");
    let answer = raw(
        &stack,
        &call("POST", "/_admin/dead/1-0/requeue", &same_origin),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 404") && answer.contains("\"dead_letter_not_found\""),
        "{answer}"
    );
    // A process' log lines (the last 10), as process-compose keeps them.
    let answer = raw(&stack, &get("/_pc/process/logs/redis/0/10", &same_origin)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let logs: Value =
        serde_json::from_str(&body_of(&answer)).unwrap_or_else(|_| panic!("{answer}"));
    let lines = logs["logs"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(!lines.is_empty() && lines.len() <= 10, "{answer}");
    assert!(
        answer.contains("Ready to accept connections"),
        "redis' log: {answer}"
    );
    // Stop and Start reach process-compose (which answers for a process it
    // does not have), with their own methods only.
    for (method, path) in [
        ("PATCH", "/_pc/process/stop/no-such-process"),
        ("POST", "/_pc/process/start/no-such-process"),
    ] {
        let answer = raw(&stack, &call(method, path, &same_origin)).await;
        assert!(
            answer.starts_with("HTTP/1.1 400") && answer.contains("no-such-process"),
            "{method} {path} did not reach process-compose: {answer}"
        );
        assert!(!answer.contains("\"forbidden\""), "{answer}");
    }

    let refused: Vec<(&str, Vec<u8>)> = vec![
        ("without the dashboard header", get("/_pc/processes", &host)),
        (
            "a DNS-rebinding Host",
            get("/_pc/processes", &format!("Host: attacker.example:{port}\r\n{dashboard}")),
        ),
        (
            "a loopback name on another port",
            get("/_pc/processes", &format!("Host: localhost:1\r\n{dashboard}")),
        ),
        (
            "a foreign Origin",
            get(
                "/_pc/processes",
                &format!("{host}{dashboard}Origin: http://attacker.example\r\n"),
            ),
        ),
        ("another letter case", get("/_PC/processes", &format!("{host}{dashboard}"))),
        ("a doubled slash", get("/_pc//processes", &format!("{host}{dashboard}"))),
        ("an extra segment", get("/_pc/processes/x", &format!("{host}{dashboard}"))),
        ("another API", get("/_pc/process/info/redis", &format!("{host}{dashboard}"))),
        (
            "the logs websocket",
            get("/_pc/process/logs/ws?name=redis&offset=0&follow=true", &format!("{host}{dashboard}")),
        ),
        ("logs by POST", call("POST", "/_pc/process/logs/redis/0/10", &format!("{host}{dashboard}"))),
        ("logs with a word for an offset", get("/_pc/process/logs/redis/x/10", &format!("{host}{dashboard}"))),
        ("logs with an extra segment", get("/_pc/process/logs/redis/0/10/x", &format!("{host}{dashboard}"))),
        ("logs without the dashboard header", get("/_pc/process/logs/redis/0/10", &host)),
        (
            "logs for a DNS-rebinding Host",
            get("/_pc/process/logs/redis/0/10", &format!("Host: attacker.example:{port}\r\n{dashboard}")),
        ),
        (
            "logs for a foreign Origin",
            get(
                "/_pc/process/logs/redis/0/10",
                &format!("{host}{dashboard}Origin: http://attacker.example\r\n"),
            ),
        ),
        (
            "a restart by GET",
            get("/_pc/process/restart/redis", &format!("{host}{dashboard}")),
        ),
        (
            "project stop",
            format!("POST /_pc/project/stop HTTP/1.1\r\n{host}{dashboard}Content-Length: 0\r\nConnection: close\r\n\r\n")
                .into_bytes(),
        ),
        (
            "a restart with an encoded slash",
            format!("POST /_pc/process/restart/a%2F..%2Fproject HTTP/1.1\r\n{host}{dashboard}Content-Length: 0\r\nConnection: close\r\n\r\n")
                .into_bytes(),
        ),
        ("a stop by POST", call("POST", "/_pc/process/stop/redis", &format!("{host}{dashboard}"))),
        ("a stop by GET", get("/_pc/process/stop/redis", &format!("{host}{dashboard}"))),
        ("a start by PATCH", call("PATCH", "/_pc/process/start/redis", &format!("{host}{dashboard}"))),
        ("a stop without the dashboard header", call("PATCH", "/_pc/process/stop/redis", &host)),
        (
            "a stop to a DNS-rebinding Host",
            call("PATCH", "/_pc/process/stop/redis", &format!("Host: attacker.example:{port}\r\n{dashboard}")),
        ),
        (
            "a stop from a foreign Origin",
            call("PATCH", "/_pc/process/stop/redis", &format!("{host}{dashboard}Origin: http://attacker.example\r\n")),
        ),
        (
            "a start from a foreign Origin",
            call("POST", "/_pc/process/start/redis", &format!("{host}{dashboard}Origin: http://attacker.example\r\n")),
        ),
        ("stop every process", call("PATCH", "/_pc/processes/stop", &format!("{host}{dashboard}"))),
        ("a stop of a path", call("PATCH", "/_pc/process/stop/redis/x", &format!("{host}{dashboard}"))),
        ("the queue without the dashboard header", get("/_admin/queue", &host)),
        (
            "the queue for a DNS-rebinding Host",
            get("/_admin/queue", &format!("Host: attacker.example:{port}\r\n{dashboard}")),
        ),
        (
            "the queue for a loopback name on another port",
            get("/_admin/queue", &format!("Host: localhost:1\r\n{dashboard}")),
        ),
        (
            "the queue from a foreign Origin",
            get("/_admin/queue", &format!("{host}{dashboard}Origin: http://attacker.example\r\n")),
        ),
        ("the queue in another letter case", get("/_ADMIN/queue", &format!("{host}{dashboard}"))),
        ("the queue with an extra segment", get("/_admin/queue/x", &format!("{host}{dashboard}"))),
        ("the queue by POST", call("POST", "/_admin/queue", &format!("{host}{dashboard}"))),
        ("another admin path", get("/_admin/dead", &format!("{host}{dashboard}"))),
        ("a requeue by GET", get("/_admin/dead/1-0/requeue", &format!("{host}{dashboard}"))),
        ("a requeue of a word", call("POST", "/_admin/dead/abc/requeue", &format!("{host}{dashboard}"))),
        (
            "a requeue with an encoded slash",
            call("POST", "/_admin/dead/1-0%2F..%2Fx/requeue", &format!("{host}{dashboard}")),
        ),
        ("a requeue without the dashboard header", call("POST", "/_admin/dead/1-0/requeue", &host)),
        (
            "a requeue from a foreign Origin",
            call(
                "POST",
                "/_admin/dead/1-0/requeue",
                &format!("{host}{dashboard}Origin: http://attacker.example\r\n"),
            ),
        ),
        (
            "a requeue for a DNS-rebinding Host",
            call("POST", "/_admin/dead/1-0/requeue", &format!("Host: attacker.example:{port}\r\n{dashboard}")),
        ),
        (
            "a restart from a foreign Origin",
            format!("POST /_pc/process/restart/redis HTTP/1.1\r\n{host}{dashboard}Origin: http://attacker.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .into_bytes(),
        ),
    ];
    for (what, request) in refused {
        let answer = raw(&stack, &request).await;
        assert!(
            answer.starts_with("HTTP/1.1 403") || answer.starts_with("HTTP/1.1 400"),
            "{what}: {answer}"
        );
        assert!(
            answer.contains("\"code\":\"forbidden\"") || answer.starts_with("HTTP/1.1 400"),
            "{what}: {answer}"
        );
    }
    // Nothing was restarted or stopped.
    for name in stack.process_names() {
        let state = stack.state(name);
        assert!(state.is_up() && state.restarts == 0, "{state:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_paths_get_a_json_4xx_from_the_gateway_never_a_5xx_or_an_empty_body() {
    let stack = Stack::boot().await;
    let port = stack.port(8000);
    for path in [
        "/auth%2ftoken",
        "/auth%2Ftoken",
        "/_dashboard/app.js%00.html",
        "/_dashboard/%2e%2e/%2e%2e/etc/passwd",
        "/transactions%00",
        "/%00",
    ] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        let answer = raw(&stack, request.as_bytes()).await;
        let status: u16 = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!((400..500).contains(&status), "{path}: {answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{path}: {answer}"
        );
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let error: Value = serde_json::from_str(body)
            .unwrap_or_else(|_| panic!("{path}: not a JSON error: {answer}"));
        assert!(error["error"]["code"].is_string(), "{path}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_cuts_off_a_client_that_never_finishes_its_headers() {
    let stack = Stack::boot().await;
    // Slowloris: a request head that never ends, one byte now and then.
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", stack.port(8000)))
        .await
        .unwrap();
    socket
        .write_all(
            format!(
                "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n",
                stack.port(8000)
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let closed = loop {
        if socket.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break started.elapsed();
        }
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(1), socket.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the gateway kept a never-ending request head open for 20 s"
        );
    };
    eprintln!("slow request head cut off after {closed:?}");
    assert!(
        closed >= Duration::from_secs(9),
        "cut off too early: {closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_get_with_a_body_is_answered_and_takes_no_upstream_out() {
    let stack = Stack::boot().await;
    let port = stack.port(8000);
    // Answered without its body being read (405 at auth-api, 401 at
    // core-api): the gateway has read it already, so no connection fails.
    for path in ["/auth/token", "/transactions", "/auth/token"] {
        let body = r#"{"username":"alice","password":"password"}"#;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = raw(&stack, request.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 4"),
            "GET {path} with a body: {answer}"
        );
    }
    let http = client::http_client();
    let token = client::login(&http, &stack.gateway(), "alice").await;
    assert!(!token.is_empty());
}
