//! Fingerprint options and profiles: JSON-canonical bodies, fingerprinted
//! headers, and the IETF profile's 422.

use crate::common::{orders_app, post_json, send};
use axum::body::Body;
use http::Request;
use tower_idempotency::{IdempotencyLayer, MemoryStore, Profile};

const ORDER: &str = r#"{"sku":"tea","qty":2,"gift":{"wrap":true,"note":"hi"}}"#;
const REORDERED: &str =
    "{ \"qty\": 2,\n \"gift\": {\"note\": \"hi\", \"wrap\": true}, \"sku\": \"tea\" }";

#[tokio::test]
async fn reordered_json_replays_in_canonical_mode() {
    let (app, runs) = orders_app(IdempotencyLayer::new(MemoryStore::new()).canonical_json(true));
    let first = send(&app, post_json("k1", ORDER)).await;
    let retry = send(&app, post_json("k1", REORDERED)).await;
    assert!(retry.is_replay());
    assert_eq!(retry.body, first.body);
    // A changed value is still a mismatch.
    send(
        &app,
        post_json(
            "k1",
            r#"{"sku":"tea","qty":3,"gift":{"wrap":true,"note":"hi"}}"#,
        ),
    )
    .await
    .assert_problem(409, "idempotency_key_payload_mismatch");
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn reordered_json_mismatches_in_raw_mode() {
    let (app, runs) = orders_app(IdempotencyLayer::new(MemoryStore::new()));
    send(&app, post_json("k1", ORDER)).await;
    send(&app, post_json("k1", REORDERED))
        .await
        .assert_problem(409, "idempotency_key_payload_mismatch");
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_compared_as_bytes_in_canonical_mode() {
    let (app, runs) = orders_app(IdempotencyLayer::new(MemoryStore::new()).canonical_json(true));
    send(&app, post_json("k1", "a=1&b=2")).await;
    assert!(send(&app, post_json("k1", "a=1&b=2")).await.is_replay());
    send(&app, post_json("k1", "b=2&a=1"))
        .await
        .assert_problem(409, "idempotency_key_payload_mismatch");
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn fingerprinted_headers_make_a_mismatch() {
    let layer = IdempotencyLayer::new(MemoryStore::new())
        .fingerprint_header(http::HeaderName::from_static("x-currency"));
    let (app, runs) = orders_app(layer);
    let with = |currency: &str| {
        Request::post("/orders")
            .header("idempotency-key", "k1")
            .header("x-currency", currency)
            .body(Body::from("{}"))
            .unwrap()
    };
    send(&app, with("eur")).await;
    assert!(send(&app, with("eur")).await.is_replay());
    send(&app, with("usd"))
        .await
        .assert_problem(409, "idempotency_key_payload_mismatch");
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn the_ietf_profile_answers_422_to_a_mismatch() {
    let (app, _) = orders_app(IdempotencyLayer::new(MemoryStore::new()).profile(Profile::Ietf));
    send(&app, post_json("k1", "a")).await;
    send(&app, post_json("k1", "b"))
        .await
        .assert_problem(422, "idempotency_key_payload_mismatch");
    // Everything else as by default.
    assert!(send(&app, post_json("k1", "a")).await.is_replay());
    send(&app, post_json("", "a"))
        .await
        .assert_problem(400, "idempotency_key_invalid");
}
