//! The dev dashboard's admin routes on the real core-api binary and a real
//! Redis: the queue view, and requeue of dead letters only when safe.

mod support;

use platform::keyspace::{DEAD_LETTER_STREAM, GROUP, PAYLOAD_FIELD, RETRY_SET, STREAM};
use serde_json::Value;
use support::*;

async fn admin(app: &App, method: &str, path: &str, dashboard: bool) -> Reply {
    let mut request = app
        .client
        .request(method.parse().unwrap(), format!("{}{path}", app.base));
    if dashboard {
        request = request.header("X-Dashboard", "1");
    }
    Reply::from(request.send().await.unwrap()).await
}

fn dead_letter(app: &App, fields: &[(&str, &str)]) -> String {
    let mut conn = app.redis.connection();
    redis::cmd("XADD")
        .arg(DEAD_LETTER_STREAM)
        .arg("*")
        .arg(fields)
        .query(&mut conn)
        .unwrap()
}

fn letter<'a>(view: &'a Value, id: &str) -> &'a Value {
    view["dead"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == id)
        .unwrap_or_else(|| panic!("dead letter {id} not in {view}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_routes_answer_only_the_dashboard_header() {
    let app = App::start().await;
    for (method, path) in [
        ("GET", "/_admin/queue"),
        ("POST", "/_admin/dead/1-0/requeue"),
    ] {
        let reply = admin(&app, method, path, false).await;
        assert_eq!(reply.error(), (403, "forbidden", None), "{method} {path}");
    }
    let reply = admin(&app, "GET", "/_admin/queue", true).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["stream"]["length"], 0);
    assert_eq!(reply.json["dead"]["length"], 0);
    assert_eq!(reply.json["groups"], Value::Array(vec![]));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_view_shows_the_stream_group_consumers_retries_and_dead_letters() {
    let app = App::start().await;
    let token = app.alice();
    let created = app.create(&token, &valid_body(), None).await;
    assert_eq!(created.status, 202, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    let second = app.create(&token, &valid_body(), None).await;
    assert_eq!(second.status, 202);
    // A connector that read one message and has not acknowledged it yet,
    // and one retry waiting for its time.
    let mut conn = app.redis.connection();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(STREAM)
        .arg(GROUP)
        .arg("0")
        .query(&mut conn)
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg("psp-connector-7")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(STREAM)
        .arg(">")
        .query(&mut conn)
        .unwrap();
    let due_ms: u64 = 4_102_444_800_000; // 2100-01-01
    let _: () = redis::cmd("ZADD")
        .arg(RETRY_SET)
        .arg(due_ms)
        .arg(&id)
        .query(&mut conn)
        .unwrap();
    let dead = dead_letter(
        &app,
        &[
            ("reason", "max_attempts_exceeded"),
            ("error", "psp answered 503"),
            ("entry_id", "1-0"),
            ("dead_at", "2026-01-01T00:00:00.000Z"),
            ("transaction_id", &id),
            ("request_id", "req-1"),
            ("attempts", "5"),
        ],
    );

    let reply = admin(&app, "GET", "/_admin/queue", true).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let view = &reply.json;
    assert_eq!(view["stream"]["length"], 2, "{view}");
    let group = &view["groups"][0];
    assert_eq!(
        (
            &group["name"],
            &group["pending"],
            &group["lag"],
            &group["consumers"]
        ),
        (
            &Value::from(GROUP),
            &Value::from(1),
            &Value::from(1),
            &Value::from(1)
        ),
        "{view}"
    );
    assert_eq!(view["consumers"][0]["name"], "psp-connector-7");
    assert_eq!(view["consumers"][0]["pending"], 1);
    assert_eq!(view["pending"][0]["consumer"], "psp-connector-7");
    assert_eq!(view["pending"][0]["deliveries"], 1);
    assert_eq!(view["retries"]["count"], 1);
    assert_eq!(view["retries"]["next"][0]["transaction_id"], id.as_str());
    assert_eq!(view["retries"]["next"][0]["due_at"], "2100-01-01T00:00:00Z");
    let letter = letter(view, &dead);
    assert_eq!(letter["reason"], "max_attempts_exceeded");
    assert_eq!(letter["transaction_id"], id.as_str());
    assert_eq!(letter["transaction_status"], "pending");
    assert_eq!(letter["attempts"], 5);
    assert_eq!(letter["request_id"], "req-1");
    assert_eq!(letter["message_kept"], false);
    assert_eq!(letter["requeue_refusal"], "message_not_kept");
    // Messages are shown by id only: the card they carry never.
    assert!(!reply.text.contains(CARD), "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn requeue_moves_a_kept_message_back_only_while_its_transaction_is_not_final() {
    let app = App::start().await;
    let token = app.alice();
    let mut conn = app.redis.connection();
    let mut pending = Vec::new();
    for _ in 0..3 {
        let created = app.create(&token, &valid_body(), None).await;
        assert_eq!(created.status, 202, "{}", created.text);
        pending.push(created.json["id"].as_str().unwrap().to_owned());
    }
    // Each transaction's message, as it is on the queue.
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(STREAM)
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    let payload = |id: &str| -> String {
        entries
            .iter()
            .map(|(_, fields)| {
                fields
                    .iter()
                    .find(|(k, _)| k == PAYLOAD_FIELD)
                    .unwrap()
                    .1
                    .clone()
            })
            .find(|p| p.contains(id))
            .unwrap()
    };
    let _: () = redis::cmd("DEL").arg(STREAM).query(&mut conn).unwrap();
    // One of them final, as the connector leaves a failed one.
    let final_id = &pending[1];
    app.make_final(final_id, platform::transaction::Status::Failed)
        .await;

    let not_kept = dead_letter(
        &app,
        &[
            ("reason", "undecodable"),
            ("error", "not JSON"),
            ("entry_id", "1-0"),
        ],
    );
    let kept_pending = dead_letter(
        &app,
        &[
            ("reason", "consumer_error"),
            ("transaction_id", &pending[0]),
            (PAYLOAD_FIELD, &payload(&pending[0])),
        ],
    );
    let kept_final = dead_letter(
        &app,
        &[
            ("reason", "consumer_error"),
            (PAYLOAD_FIELD, &payload(final_id)),
        ],
    );
    let unknown = payload(&pending[2]).replace(&pending[2], "tx_01a2000000007000800000000000000f");
    let kept_unknown = dead_letter(
        &app,
        &[("reason", "consumer_error"), (PAYLOAD_FIELD, &unknown)],
    );
    let kept_poison = dead_letter(
        &app,
        &[("reason", "undecodable"), (PAYLOAD_FIELD, "{not json")],
    );

    let view = admin(&app, "GET", "/_admin/queue", true).await.json;
    for (id, refusal, status) in [
        (&not_kept, Value::from("message_not_kept"), Value::Null),
        (&kept_pending, Value::Null, Value::from("pending")),
        (
            &kept_final,
            Value::from("transaction_final"),
            Value::from("failed"),
        ),
        (
            &kept_unknown,
            Value::from("unknown_transaction"),
            Value::Null,
        ),
        (&kept_poison, Value::Null, Value::Null),
    ] {
        let letter = letter(&view, id);
        assert_eq!(letter["requeue_refusal"], refusal, "{letter}");
        assert_eq!(letter["transaction_status"], status, "{letter}");
    }
    assert_eq!(
        letter(&view, &kept_final)["transaction_id"],
        final_id.as_str(),
        "read from the message"
    );
    assert!(
        !view.to_string().contains(CARD),
        "a card in the view: {view}"
    );

    // Refused: nothing moves.
    for (id, code) in [
        (&not_kept, "message_not_kept"),
        (&kept_final, "transaction_final"),
        (&kept_unknown, "unknown_transaction"),
    ] {
        let reply = admin(&app, "POST", &format!("/_admin/dead/{id}/requeue"), true).await;
        assert_eq!(reply.error(), (409, code, None), "{}", reply.text);
    }
    let status: String = redis::cmd("HGET")
        .arg(format!("tx:{final_id}"))
        .arg("status")
        .query(&mut conn)
        .unwrap();
    assert_eq!(status, "failed", "a final status changed");
    for (path, expected) in [
        (
            "/_admin/dead/abc/requeue",
            (400, "invalid_entry_id", Some("entry_id")),
        ),
        (
            "/_admin/dead/1-2-3/requeue",
            (400, "invalid_entry_id", Some("entry_id")),
        ),
        (
            "/_admin/dead/%2B/requeue",
            (400, "invalid_entry_id", Some("entry_id")),
        ),
        (
            "/_admin/dead/99-0/requeue",
            (404, "dead_letter_not_found", None),
        ),
    ] {
        let reply = admin(&app, "POST", path, true).await;
        assert_eq!(reply.error(), expected, "{path}: {}", reply.text);
    }
    let length: u64 = redis::cmd("XLEN").arg(STREAM).query(&mut conn).unwrap();
    assert_eq!(length, 0, "a refused requeue queued something");

    // Requeued: the pending transaction's message, and the poison one as
    // it is; each once.
    for (id, message, transaction) in [
        (
            &kept_pending,
            payload(&pending[0]),
            Value::from(pending[0].as_str()),
        ),
        (&kept_poison, "{not json".to_owned(), Value::Null),
    ] {
        let reply = admin(&app, "POST", &format!("/_admin/dead/{id}/requeue"), true).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json["requeued"], true);
        assert_eq!(reply.json["dead_letter_id"], id.as_str());
        assert_eq!(reply.json["transaction_id"], transaction);
        let entry = reply.json["entry_id"].as_str().unwrap();
        let queued: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(STREAM)
            .arg(entry)
            .arg(entry)
            .query(&mut conn)
            .unwrap();
        assert_eq!(queued[0].1, vec![(PAYLOAD_FIELD.to_owned(), message)]);
        let again = admin(&app, "POST", &format!("/_admin/dead/{id}/requeue"), true).await;
        assert_eq!(again.error(), (404, "dead_letter_not_found", None));
    }
    let length: u64 = redis::cmd("XLEN").arg(STREAM).query(&mut conn).unwrap();
    assert_eq!(length, 2);
    let left: u64 = redis::cmd("XLEN")
        .arg(DEAD_LETTER_STREAM)
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        left, 3,
        "only the requeued letters left the dead-letter stream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_describes_the_admin_routes() {
    let app = App::start().await;
    let doc = app.get("", "/openapi.json").await.json;
    let queue = &doc["paths"]["/_admin/queue"]["get"];
    let requeue = &doc["paths"]["/_admin/dead/{entry_id}/requeue"]["post"];
    for status in ["200", "403", "503"] {
        assert!(
            queue["responses"][status].is_object(),
            "queue lacks {status}"
        );
    }
    for status in ["200", "400", "403", "404", "409", "503"] {
        assert!(
            requeue["responses"][status].is_object(),
            "requeue lacks {status}"
        );
    }
    assert!(doc["components"]["schemas"]["QueueView"].is_object());
}
