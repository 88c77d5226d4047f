//! Which requests the layer touches, and the key rules.

use crate::common::{orders_app, post_json, request, send};
use axum::body::Body;
use http::{Request, StatusCode};
use tower_idempotency::{IdempotencyLayer, MemoryStore};

fn app() -> (axum::Router, crate::common::Runs) {
    orders_app(IdempotencyLayer::new(MemoryStore::new()))
}

#[tokio::test]
async fn invalid_keys_get_400_and_nothing_runs_or_is_stored() {
    let store = std::sync::Arc::new(MemoryStore::new());
    let (app, runs) = orders_app(IdempotencyLayer::from_shared_store(store.clone()));
    let long = "k".repeat(257);
    let bad: [&[u8]; 6] = [
        b"",
        long.as_bytes(),
        b"caf\xc3\xa9",
        b"a\tb",
        b"\"abc",
        b"\"a\\x\"",
    ];
    for value in bad {
        let request = Request::post("/orders")
            .header(
                "idempotency-key",
                http::HeaderValue::from_bytes(value).unwrap(),
            )
            .body(Body::from("a"))
            .unwrap();
        send(&app, request)
            .await
            .assert_problem(400, "idempotency_key_invalid");
    }
    assert_eq!(runs.count(), 0);
    assert!(store.is_empty());
}

#[tokio::test]
async fn two_key_headers_are_invalid() {
    let (app, runs) = app();
    let request = Request::post("/orders")
        .header("idempotency-key", "a")
        .header("idempotency-key", "b")
        .body(Body::from("x"))
        .unwrap();
    send(&app, request)
        .await
        .assert_problem(400, "idempotency_key_invalid");
    assert_eq!(runs.count(), 0);
}

#[tokio::test]
async fn a_256_character_key_is_valid() {
    let (app, runs) = app();
    let key = "k".repeat(256);
    assert_eq!(
        send(&app, post_json(&key, "a")).await.status,
        StatusCode::CREATED
    );
    assert!(send(&app, post_json(&key, "a")).await.is_replay());
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn a_quoted_key_is_the_same_key_as_the_bare_one() {
    let (app, runs) = app();
    assert_eq!(
        send(&app, post_json("abc", "a")).await.status,
        StatusCode::CREATED
    );
    let quoted = send(&app, post_json("\"abc\"", "a")).await;
    assert!(quoted.is_replay());
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn methods_not_covered_pass_through_with_a_key() {
    let (app, runs) = app();
    for _ in 0..2 {
        let answer = send(&app, request("GET", "/orders", Some("k1"), "")).await;
        assert_eq!(answer.body, "listing");
        assert!(!answer.is_replay());
        // An invalid key on an uncovered method is not the layer's business.
        let answer = send(&app, request("PUT", "/orders", Some(""), "")).await;
        assert_eq!(answer.body, "put");
    }
    assert_eq!(runs.count(), 0);
}

#[tokio::test]
async fn covered_methods_are_configurable() {
    let (app, runs) =
        orders_app(IdempotencyLayer::new(MemoryStore::new()).methods([http::Method::PUT]));
    // POST is no longer covered: both run.
    send(&app, post_json("k1", "a")).await;
    send(&app, post_json("k1", "a")).await;
    assert_eq!(runs.count(), 2);
    // PUT is: an invalid key is refused.
    send(&app, request("PUT", "/orders", Some(""), ""))
        .await
        .assert_problem(400, "idempotency_key_invalid");
}

#[tokio::test]
async fn no_key_passes_through_untouched() {
    let (app, runs) = app();
    for _ in 0..2 {
        let answer = send(&app, request("POST", "/orders", None, "a")).await;
        assert_eq!(answer.status, StatusCode::CREATED);
        assert!(!answer.is_replay());
    }
    assert_eq!(runs.count(), 2);
}

#[tokio::test]
async fn a_required_key_that_is_missing_gets_400() {
    let (app, runs) = orders_app(IdempotencyLayer::new(MemoryStore::new()).require_key(true));
    send(&app, request("POST", "/orders", None, "a"))
        .await
        .assert_problem(400, "idempotency_key_missing");
    assert_eq!(runs.count(), 0);
    // Uncovered methods still need none.
    assert_eq!(
        send(&app, request("GET", "/orders", None, "")).await.body,
        "listing"
    );
}

#[tokio::test]
async fn the_header_name_is_configurable() {
    let name = http::HeaderName::from_static("x-request-key");
    let (app, runs) = orders_app(IdempotencyLayer::new(MemoryStore::new()).header_name(name));
    let with = |_| {
        Request::post("/orders")
            .header("x-request-key", "k1")
            .body(Body::from("a"))
            .unwrap()
    };
    send(&app, with(())).await;
    assert!(send(&app, with(())).await.is_replay());
    // The default header is now just a header.
    send(&app, post_json("k2", "a")).await;
    send(&app, post_json("k2", "a")).await;
    assert_eq!(runs.count(), 3);
}

#[tokio::test]
async fn the_handler_receives_the_parsed_key() {
    use axum::Extension;
    use tower_idempotency::IdempotencyKey;
    let app = axum::Router::new()
        .route(
            "/charge",
            axum::routing::post(|Extension(key): Extension<IdempotencyKey>| async move {
                format!("{key}-charge")
            }),
        )
        .layer(IdempotencyLayer::new(MemoryStore::new()));
    let answer = send(&app, request("POST", "/charge", Some("\"pay-7\""), "")).await;
    assert_eq!(answer.body, "pay-7-charge");
}
