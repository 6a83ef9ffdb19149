//! `GET /transactions`: cursor pagination over many transactions, every
//! filter alone and combined, time bounds, and bad parameters.

mod support;

use std::collections::HashSet;

use serde_json::{Value, json};
use support::{App, valid_body};

/// (id, customer, reference, user) of a created transaction.
type Created = (String, String, String, String);

fn body(customer: &str, reference: &str) -> Value {
    let mut body = valid_body();
    body["customer_id"] = json!(customer);
    body["reference"] = json!(reference);
    body
}

/// Follows `next_cursor` to the end; returns the ids in order.
async fn all_pages(app: &App, token: &str, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/transactions?{query}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&starting_after={cursor}"));
        }
        let page = app.get(token, &path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        let data = page.json["data"].as_array().unwrap();
        ids.extend(data.iter().map(|tx| tx["id"].as_str().unwrap().to_owned()));
        if page.json["has_more"] == json!(true) {
            let next = page.json["next_cursor"].as_str().unwrap().to_owned();
            assert_eq!(Some(next.as_str()), ids.last().map(String::as_str));
            cursor = Some(next);
        } else {
            assert_eq!(page.json["next_cursor"], Value::Null);
            return ids;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pagination_and_filters_over_250_transactions() {
    let app = App::start().await;
    let alice = app.alice();
    let carol = app.token("carol", "acme");
    let customers = ["cus_0", "cus_1", "cus_2", "cus_3", "cus_4"];
    app.link("acme", "alice", &customers);
    app.link("acme", "carol", &customers);
    app.link("globex", "bob", &["cus_0"]);
    // 250 transactions: 5 customers, references unique per 50, two users.
    let mut created: Vec<Created> = Vec::new();
    for i in 0..250usize {
        let customer = format!("cus_{}", i % 5);
        let reference = format!("order-{}", i % 50);
        let (token, user) = if i.is_multiple_of(2) {
            (&alice, "alice")
        } else {
            (&carol, "carol")
        };
        let reply = app.create(token, &body(&customer, &reference), None).await;
        assert_eq!(reply.status, 202, "{}", reply.text);
        created.push((
            reply.json["id"].as_str().unwrap().to_owned(),
            customer,
            reference,
            user.to_owned(),
        ));
    }
    // One from globex that must never show up.
    app.create(&app.bob(), &body("cus_0", "order-0"), None)
        .await;
    // Some statuses move on, through the connector's compare-and-set.
    for (id, ..) in created.iter().step_by(3) {
        app.make_final(id, platform::transaction::Status::Succeeded)
            .await;
    }
    let newest_first: Vec<String> = created.iter().rev().map(|c| c.0.clone()).collect();

    // Every one exactly once, newest first, at several page sizes.
    for limit in ["", "limit=1", "limit=7", "limit=100"] {
        let ids = all_pages(&app, &alice, limit).await;
        assert_eq!(ids, newest_first, "limit {limit:?}");
    }
    let first = app.get(&alice, "/transactions").await;
    assert_eq!(
        first.json["data"].as_array().unwrap().len(),
        20,
        "default limit"
    );

    let expect = |keep: &dyn Fn(&Created, usize) -> bool| -> Vec<String> {
        created
            .iter()
            .enumerate()
            .rev()
            .filter(|(i, c)| keep(c, *i))
            .map(|(_, c)| c.0.clone())
            .collect()
    };
    let succeeded = |i: usize| i.is_multiple_of(3);
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("customer_id=cus_3&limit=9", expect(&|c, _| c.1 == "cus_3")),
        (
            "reference=order-7&limit=2",
            expect(&|c, _| c.2 == "order-7"),
        ),
        ("created_by=carol&limit=30", expect(&|c, _| c.3 == "carol")),
        ("status=succeeded&limit=25", expect(&|_, i| succeeded(i))),
        ("status=pending&limit=25", expect(&|_, i| !succeeded(i))),
        (
            "customer_id=cus_1&status=succeeded&created_by=alice&limit=4",
            expect(&|c, i| c.1 == "cus_1" && succeeded(i) && c.3 == "alice"),
        ),
        (
            "reference=order-10&customer_id=cus_0",
            expect(&|c, _| c.2 == "order-10" && c.1 == "cus_0"),
        ),
        ("customer_id=nobody", vec![]),
        ("status=declined", vec![]),
    ];
    for (query, expected) in cases {
        let ids = all_pages(&app, &alice, query).await;
        assert_eq!(ids, expected, "{query}");
    }

    // Time bounds: `from` inclusive, `to` exclusive, on creation time.
    let millis = |id: &str| {
        platform::transaction::TransactionId::parse(id)
            .unwrap()
            .unix_millis()
    };
    let pivot = millis(&created[125].0);
    let rfc3339 = |ms: u64| {
        let time =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
        time.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let since = all_pages(&app, &alice, &format!("from={}&limit=50", rfc3339(pivot))).await;
    assert_eq!(since, expect(&|c, _| millis(&c.0) >= pivot));
    let before = all_pages(&app, &alice, &format!("to={}&limit=50", rfc3339(pivot))).await;
    assert_eq!(before, expect(&|c, _| millis(&c.0) < pivot));
    let window = all_pages(
        &app,
        &alice,
        &format!(
            "from={}&to={}&customer_id=cus_2",
            rfc3339(pivot - 5),
            rfc3339(pivot + 5)
        ),
    )
    .await;
    assert_eq!(
        window,
        expect(&|c, _| (pivot - 5..pivot + 5).contains(&millis(&c.0)) && c.1 == "cus_2")
    );
    let unique: HashSet<_> = since.iter().chain(before.iter()).collect();
    assert_eq!(unique.len(), 250);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_parameters_are_400_naming_the_parameter() {
    let app = App::start().await;
    let token = app.alice();
    for (query, code, param) in [
        ("limit=0", "invalid_parameter", "limit"),
        ("limit=101", "invalid_parameter", "limit"),
        ("limit=ten", "invalid_parameter", "limit"),
        ("status=done", "invalid_parameter", "status"),
        ("from=yesterday", "invalid_parameter", "from"),
        ("to=2026-13-01T00:00:00Z", "invalid_parameter", "to"),
        (
            "starting_after=tx_123",
            "invalid_parameter",
            "starting_after",
        ),
        ("customer_id=a%20b", "invalid_parameter", "customer_id"),
        ("reference=", "invalid_parameter", "reference"),
        ("created_by=a%2Fb", "invalid_parameter", "created_by"),
        ("colour=red", "unknown_parameter", "colour"),
    ] {
        let reply = app.get(&token, &format!("/transactions?{query}")).await;
        assert_eq!(
            reply.error(),
            (400, code, Some(param)),
            "{query}: {}",
            reply.text
        );
    }
    // An offset with '+' sent unencoded still parses.
    let reply = app
        .get(&token, "/transactions?from=2026-01-01T00:00:00+01:00")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}
