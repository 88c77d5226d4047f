//! Retry hints: the layer's own rejections say whether a retry can succeed,
//! in `Stripe-Should-Retry` and `x-should-retry`; the service's answers and
//! replays carry no hint of the layer's.

use axum::Router;
use axum::routing::post;
use http::StatusCode;

use crate::common::{
    Answer, Fault, FaultyStore, first_run_blocks, orders_app, post_json, request, send,
};
use tower_idempotency::{IdempotencyLayer, MemoryStore};

#[track_caller]
fn assert_hint(answer: &Answer, expected: Option<&str>) {
    for name in ["stripe-should-retry", "x-should-retry"] {
        let hint = answer.headers.get(name).map(|v| v.to_str().unwrap());
        assert_eq!(hint, expected, "{name} on {answer:?}");
    }
}

#[tokio::test]
async fn rejections_no_retry_can_fix_say_false() {
    let layer = || IdempotencyLayer::new(MemoryStore::new());
    let (app, _) = orders_app(layer().request_body_limit(8).response_record_limit(4));

    let missing = {
        let (app, _) = orders_app(layer().require_key(true));
        send(&app, request("POST", "/orders", None, "tea")).await
    };
    missing.assert_problem(400, "idempotency_key_missing");
    assert_hint(&missing, Some("false"));

    let long = "k".repeat(257);
    for bad in [&b""[..], b"\"open", b"caf\xc3\xa9", long.as_bytes()] {
        let mut invalid = request("POST", "/orders", None, "tea");
        invalid.headers_mut().insert(
            "idempotency-key",
            http::HeaderValue::from_bytes(bad).unwrap(),
        );
        let invalid = send(&app, invalid).await;
        invalid.assert_problem(400, "idempotency_key_invalid");
        assert_hint(&invalid, Some("false"));
    }

    let too_large = send(&app, post_json("k-large", "a body over eight bytes")).await;
    too_large.assert_problem(413, "idempotency_request_too_large");
    assert_hint(&too_large, Some("false"));

    // A response over the recording limit leaves a tombstone.
    let first = send(&app, post_json("k-tomb", "tea")).await;
    assert_eq!(first.status, 201);
    assert_hint(&first, None);
    let not_replayable = send(&app, post_json("k-tomb", "tea")).await;
    not_replayable.assert_problem(409, "idempotency_response_not_replayable");
    assert_hint(&not_replayable, Some("false"));

    let (app, _) = orders_app(layer());
    send(&app, post_json("k-mismatch", "tea")).await;
    let mismatch = send(&app, post_json("k-mismatch", "coffee")).await;
    mismatch.assert_problem(409, "idempotency_key_payload_mismatch");
    assert_hint(&mismatch, Some("false"));
}

#[tokio::test]
async fn rejections_a_retry_can_fix_say_true() {
    let (app, _, gate) = first_run_blocks(
        IdempotencyLayer::new(MemoryStore::new()),
        StatusCode::CREATED,
    );
    let owner = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k1", "tea")).await }
    });
    gate.started.notified().await;
    let in_progress = send(&app, post_json("k1", "tea")).await;
    in_progress.assert_problem(409, "idempotency_key_in_progress");
    assert_hint(&in_progress, Some("true"));
    assert!(in_progress.headers.contains_key("retry-after"));
    gate.finish.notify_one();
    owner.await.unwrap();

    let store = FaultyStore::default();
    store.set(Fault::Fail);
    let (app, _) = orders_app(IdempotencyLayer::new(store));
    let unavailable = send(&app, post_json("k1", "tea")).await;
    unavailable.assert_problem(503, "idempotency_store_unavailable");
    assert_hint(&unavailable, Some("true"));
}

#[tokio::test]
async fn service_answers_and_replays_carry_no_hint() {
    let (app, _) = orders_app(IdempotencyLayer::new(MemoryStore::new()));
    let created = send(&app, post_json("k1", "tea")).await;
    assert_eq!(created.status, 201);
    assert_hint(&created, None);
    let replay = send(&app, post_json("k1", "tea")).await;
    assert!(replay.is_replay());
    assert_hint(&replay, None);

    // The service's own 409 and 503 are its own to describe.
    let failing = Router::new()
        .route(
            "/orders",
            post(|| async { (StatusCode::SERVICE_UNAVAILABLE, "busy") }),
        )
        .layer(IdempotencyLayer::new(MemoryStore::new()));
    let busy = send(&failing, post_json("k2", "tea")).await;
    assert_eq!(busy.status, 503);
    assert_hint(&busy, None);
}

#[tokio::test]
async fn hints_can_be_turned_off() {
    let (app, _) = orders_app(IdempotencyLayer::new(MemoryStore::new()).retry_hints(false));
    send(&app, post_json("k1", "tea")).await;
    let mismatch = send(&app, post_json("k1", "coffee")).await;
    mismatch.assert_problem(409, "idempotency_key_payload_mismatch");
    assert_hint(&mismatch, None);
}

#[tokio::test]
async fn a_mismatch_names_the_fingerprinted_headers() {
    let layer = IdempotencyLayer::new(MemoryStore::new())
        .fingerprint_header(http::HeaderName::from_static("x-currency"));
    let (app, _) = orders_app(layer);
    let with_currency = |currency: &'static str| {
        let mut request = post_json("k1", "tea");
        request
            .headers_mut()
            .insert("x-currency", currency.parse().unwrap());
        request
    };
    assert_eq!(send(&app, with_currency("eur")).await.status, 201);
    let mismatch = send(&app, with_currency("usd")).await;
    mismatch.assert_problem(409, "idempotency_key_payload_mismatch");
    let doc: serde_json::Value = serde_json::from_slice(&mismatch.body).unwrap();
    let detail = doc["detail"].as_str().unwrap();
    assert!(detail.contains("header x-currency"), "{detail}");
}
