//! Black-box tests of `examples/orders.rs`: the built example runs as a
//! process and is driven over real HTTP (the memory store; the tests with
//! Redis and PostgreSQL are in the `stores` binary).

use std::time::Duration;

use tokio::process::Command;

use crate::common::example::{create, example, http, start};
use crate::common::wire::Reply;

#[tokio::test]
async fn replay_mismatch_scope_and_failure_over_http() {
    let server = start(&[]).await;
    let first = create(&server, "k1", &[], "/orders", r#"{"sku":"tea"}"#).await;
    assert_eq!(first.status, 201);
    assert_eq!(
        first.json(),
        serde_json::json!({"id": 1, "order": {"sku": "tea"}})
    );
    assert_eq!(first.header("location"), Some("/orders/1"));

    let replay = create(&server, "k1", &[], "/orders", r#"{"sku":"tea"}"#).await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.body, first.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));

    let mismatch = create(&server, "k1", &[], "/orders", r#"{"sku":"coffee"}"#).await;
    assert_eq!(mismatch.status, 409);
    assert_eq!(mismatch.json()["code"], "idempotency_key_payload_mismatch");

    // Another API key is another scope: the same key creates its own order.
    let other = create(
        &server,
        "k1",
        &[("x-api-key", "b")],
        "/orders",
        r#"{"sku":"tea"}"#,
    )
    .await;
    assert_eq!(other.json()["id"], 2);

    // A failure is not recorded and creates nothing; the retry succeeds.
    let failed = create(&server, "k2", &[], "/orders?fail=true", "{}").await;
    assert_eq!(failed.status, 500);
    let retried = create(&server, "k2", &[], "/orders", "{}").await;
    assert_eq!(retried.status, 201);
    assert_eq!(retried.json()["id"], 3);

    let list = http(&server, "GET", "/orders", &[], "").await;
    assert_eq!(list.json().as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_concurrent_duplicate_gets_in_progress_and_one_order_is_made() {
    let server = start(&[]).await;
    let slow = create(&server, "k1", &[], "/orders?delay_ms=2000", r#"{"n":1}"#);
    let duplicate = async {
        // Sent while the first is inside its 2 s delay.
        tokio::time::sleep(Duration::from_millis(200)).await;
        create(&server, "k1", &[], "/orders?delay_ms=2000", r#"{"n":1}"#).await
    };
    let (slow, duplicate) = tokio::join!(slow, duplicate);
    assert_eq!(slow.status, 201);
    assert_eq!(duplicate.status, 409);
    assert_eq!(duplicate.json()["code"], "idempotency_key_in_progress");
    assert!(duplicate.header("retry-after").is_some());
    let list = http(&server, "GET", "/orders", &[], "").await;
    assert_eq!(list.json().as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn ttl_secs_configures_the_record_lifetime() {
    let server = start(&[("TTL_SECS", "1")]).await;
    assert_eq!(
        create(&server, "k1", &[], "/orders", "{}").await.status,
        201
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let after = create(&server, "k1", &[], "/orders", "{}").await;
    assert_eq!(after.header("idempotent-replayed"), None);
    assert_eq!(after.json()["id"], 2);
}

#[tokio::test]
async fn a_client_that_hangs_up_gets_the_finished_order_on_retry() {
    let server = start(&[]).await;
    let hung_up = tokio::time::timeout(
        Duration::from_millis(300),
        create(
            &server,
            "k1",
            &[],
            "/orders?delay_ms=800",
            r#"{"sku":"gpu-hours"}"#,
        ),
    )
    .await;
    assert!(
        hung_up.is_err(),
        "the client gave up and closed its connection"
    );
    // The server keeps working on it; a retry once it is done replays it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let retry = create(
        &server,
        "k1",
        &[],
        "/orders?delay_ms=800",
        r#"{"sku":"gpu-hours"}"#,
    )
    .await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.json()["id"], 1);
    let list = http(&server, "GET", "/orders", &[], "").await;
    assert_eq!(list.json().as_array().unwrap().len(), 1);
}

/// `examples/client_retry.rs` against this server: the slow call's attempts
/// (timed out, in progress, replayed) share one key, and the four calls make
/// two orders.
#[cfg(feature = "client")]
#[tokio::test]
async fn the_client_retry_example_makes_one_order_per_action() {
    let server = start(&[]).await;
    let output = Command::new(example("client_retry"))
        .env("ORDERS_URL", format!("http://{}", server.addr))
        .output()
        .await
        .expect("the client_retry example is built by `cargo test --all-features`");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}");
    let slow_call: Vec<&str> = stdout
        .lines()
        .skip_while(|line| !line.starts_with("1."))
        .skip(1)
        .take_while(|line| !line.starts_with("2."))
        .collect();
    assert_eq!(
        slow_call.len(),
        4,
        "three attempts and the result: {stdout}"
    );
    assert!(
        slow_call[0].ends_with("error: request timed out"),
        "{stdout}"
    );
    assert!(
        slow_call[1].ends_with("409 Conflict, retry-after: 1"),
        "{stdout}"
    );
    assert!(slow_call[2].ends_with("201 Created"), "{stdout}");
    assert!(slow_call[3].contains("201 Created (replayed)"), "{stdout}");
    let key_of = |line: &str| {
        line.split(", key ")
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .to_owned()
    };
    let key = key_of(slow_call[0]);
    assert!(
        slow_call[..3].iter().all(|line| key_of(line) == key),
        "{stdout}"
    );
    assert!(
        stdout.contains("idempotency_key_payload_mismatch"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("orders made: 2 (for 4 calls, of which 2 new actions)\n"),
        "{stdout}"
    );
    let list = http(&server, "GET", "/orders", &[], "").await;
    assert_eq!(list.json().as_array().unwrap().len(), 2);
}

/// Load with exact accounting: clients fire a mix of fresh keys, exact
/// retries, concurrent duplicates, mismatches and injected failures at the
/// example server over real HTTP for a bounded time. At the end: orders made
/// (executions) == distinct keys that succeeded, every replay is
/// byte-identical to its original, and the only 5xx are the injected ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_load_accounts_exactly() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    const CLIENTS: usize = 6;
    let server = Arc::new(start(&[]).await);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    // key -> the body of its original 201.
    let originals: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let injected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (server, originals, injected) =
                (server.clone(), originals.clone(), injected.clone());
            tokio::spawn(async move {
                // Keys this client made: (key, path, body), to retry exactly.
                let mut mine: Vec<(String, &str, String)> = Vec::new();
                let mut n = 0usize;
                let record = |key: &str, reply: &Reply| {
                    assert_eq!(reply.status, 201, "{reply:?}");
                    let replayed = reply.header("idempotent-replayed") == Some("true");
                    let mut originals = originals.lock().unwrap();
                    match originals.get(key) {
                        Some(original) => {
                            assert!(replayed, "a second original for {key}");
                            assert_eq!(&reply.body, original, "replay differs for {key}");
                        }
                        None => {
                            assert!(!replayed, "a replay with no original for {key}");
                            originals.insert(key.to_owned(), reply.body.clone());
                        }
                    }
                };
                while std::time::Instant::now() < deadline {
                    n += 1;
                    let key = format!("c{client}-{n}");
                    let body = format!(r#"{{"client":{client},"n":{n}}}"#);
                    match n % 5 {
                        // A fresh key.
                        0 | 1 => {
                            let reply = create(&server, &key, &[], "/orders", &body).await;
                            record(&key, &reply);
                            mine.push((key, "/orders", body));
                        }
                        // An exact retry of an earlier success: the replay.
                        2 if !mine.is_empty() => {
                            let (key, path, body) = &mine[n % mine.len()];
                            let reply = create(&server, key, &[], path, body).await;
                            record(key, &reply);
                        }
                        // A mismatch: an earlier key with another body.
                        3 if !mine.is_empty() => {
                            let (key, _, _) = &mine[n % mine.len()];
                            let reply =
                                create(&server, key, &[], "/orders", "{\"other\":true}").await;
                            assert_eq!(reply.status, 409, "{reply:?}");
                            assert_eq!(reply.json()["code"], "idempotency_key_payload_mismatch");
                        }
                        // Concurrent duplicates of a new key, then an injected failure.
                        _ => {
                            let path = "/orders?delay_ms=50";
                            let (a, b, c) = tokio::join!(
                                create(&server, &key, &[], path, &body),
                                create(&server, &key, &[], path, &body),
                                create(&server, &key, &[], path, &body),
                            );
                            for reply in [&a, &b, &c] {
                                match reply.status {
                                    201 => record(&key, reply),
                                    409 => assert_eq!(
                                        reply.json()["code"],
                                        "idempotency_key_in_progress"
                                    ),
                                    other => panic!("unexpected {other}: {reply:?}"),
                                }
                            }
                            if originals.lock().unwrap().contains_key(&key) {
                                mine.push((key.clone(), path, body.clone()));
                            }
                            let failing = format!("{key}-fail");
                            let reply =
                                create(&server, &failing, &[], "/orders?fail=true", &body).await;
                            assert_eq!(reply.status, 500, "the injected failure");
                            injected.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let reply = create(&server, &failing, &[], "/orders", &body).await;
                            record(&failing, &reply);
                            mine.push((failing, "/orders", body));
                        }
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let orders = http(&server, "GET", "/orders", &[], "").await.json();
    let executions = orders.as_array().unwrap().len();
    let succeeded = originals.lock().unwrap().len();
    eprintln!(
        "load: {succeeded} keys succeeded, {executions} orders made, {} failures injected",
        injected.load(std::sync::atomic::Ordering::SeqCst)
    );
    assert!(succeeded > 50, "the load ran: {succeeded}");
    assert_eq!(
        executions, succeeded,
        "executions == distinct successful keys"
    );
}

/// The order comes back as the very JSON sent: floats with all their digits
/// (parsed into an `f64` and written again, about one in twelve random
/// floats came back with other last digits), integers past 64 bits, keys and
/// strings with escapes, in the order sent.
#[tokio::test]
async fn the_order_is_echoed_exactly_as_sent() {
    let server = start(&[]).await;
    // A small deterministic generator of 64-bit patterns (xorshift).
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut orders = vec![
        r#"{"price":0.45881053112672876}"#.to_owned(),
        r#"{"big":123456789012345678901234567890,"tiny":5e-324,"neg":-0.0}"#.to_owned(),
        r#"{"z":1,"a":"\u00e9\n\"q\"","m":[1.0,1e2,{"k":null}]}"#.to_owned(),
    ];
    for _ in 0..60 {
        // Uniform in [0, 1) with all 53 bits of precision, printed with 17
        // significant digits: more than an f64 round trip keeps.
        let float = (next() >> 11) as f64 / (1u64 << 53) as f64;
        orders.push(format!(r#"{{"sku":"tea","price":{float:.17}}}"#));
    }
    for (index, order) in orders.iter().enumerate() {
        let key = format!("exact-{index}");
        let reply = create(&server, &key, &[], "/orders", order).await;
        assert_eq!(reply.status, 201, "{order}: {}", reply.body);
        let expected = format!(r#"{{"id":{},"order":{order}}}"#, index + 1);
        assert_eq!(reply.body, expected, "the order came back changed");
        let replay = create(&server, &key, &[], "/orders", order).await;
        assert_eq!(replay.body, expected, "the replay changed it");
    }
    let list = http(&server, "GET", "/orders", &[], "").await;
    assert!(list.body.contains(&orders[0]), "{}", list.body);
}
