//! Which responses are recorded: 5xx, 408, 425, 429, 401 and 415 are
//! not by default; the policy is configurable.

use crate::common::{Runs, request, send};
use axum::extract::Query;
use http::StatusCode;
use tower_idempotency::{IdempotencyLayer, MemoryStore, default_record_policy};

#[derive(serde::Deserialize)]
struct Wanted {
    status: u16,
}

fn status_app(layer: IdempotencyLayer<MemoryStore>) -> (axum::Router, Runs) {
    let runs = Runs::default();
    let handler_runs = runs.clone();
    let app = axum::Router::new()
        .route(
            "/answer",
            axum::routing::post(move |Query(wanted): Query<Wanted>| {
                let runs = handler_runs.clone();
                async move {
                    let n = runs.add();
                    (
                        StatusCode::from_u16(wanted.status).unwrap(),
                        format!("run {n}"),
                    )
                }
            }),
        )
        .layer(layer);
    (app, runs)
}

/// Sends the same keyed request twice; returns whether the second was a replay.
async fn twice(app: &axum::Router, status: u16) -> bool {
    let uri = format!("/answer?status={status}");
    let key = format!("key-{status}");
    let first = send(app, request("POST", &uri, Some(&key), "")).await;
    assert_eq!(first.status, status);
    let second = send(app, request("POST", &uri, Some(&key), "")).await;
    assert_eq!(second.status, status, "the status replays as sent");
    second.is_replay()
}

#[tokio::test]
async fn server_errors_and_retry_statuses_are_not_recorded() {
    let (app, runs) = status_app(IdempotencyLayer::new(MemoryStore::new()));
    for status in [500, 502, 503, 504, 408, 425, 429, 401, 415] {
        let before = runs.count();
        assert!(!twice(&app, status).await, "{status} was replayed");
        assert_eq!(runs.count(), before + 2, "{status}: the retry ran again");
    }
}

#[tokio::test]
async fn success_redirect_and_client_errors_are_recorded() {
    let (app, runs) = status_app(IdempotencyLayer::new(MemoryStore::new()));
    for status in [200, 201, 202, 303, 400, 404, 409, 422] {
        let before = runs.count();
        assert!(twice(&app, status).await, "{status} was not replayed");
        assert_eq!(runs.count(), before + 1, "{status}: the retry ran again");
    }
}

#[tokio::test]
async fn a_custom_policy_decides() {
    let layer = IdempotencyLayer::new(MemoryStore::new()).record_policy(|status| {
        status == StatusCode::SERVICE_UNAVAILABLE
            || (status != StatusCode::CONFLICT && default_record_policy(status))
    });
    let (app, _) = status_app(layer);
    assert!(twice(&app, 503).await);
    assert!(!twice(&app, 409).await);
    assert!(twice(&app, 201).await);
    assert!(!twice(&app, 500).await);
}

/// An axum app whose handler takes `Json`: the extractor answers before the
/// handler runs.
fn json_app() -> (axum::Router, Runs) {
    let runs = Runs::default();
    let handler_runs = runs.clone();
    let app = axum::Router::new()
        .route(
            "/orders",
            axum::routing::post(move |axum::Json(order): axum::Json<serde_json::Value>| {
                let runs = handler_runs.clone();
                async move {
                    (
                        StatusCode::CREATED,
                        format!("order {}: {order}", runs.add()),
                    )
                }
            }),
        )
        .layer(IdempotencyLayer::new(MemoryStore::new()));
    (app, runs)
}

fn json_request(
    key: &str,
    content_type: Option<&str>,
    body: &'static str,
) -> axum::extract::Request {
    let mut request = request("POST", "/orders", Some(key), body);
    if let Some(content_type) = content_type {
        request
            .headers_mut()
            .insert("content-type", content_type.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn a_content_type_refused_by_the_json_extractor_does_not_stick_to_the_key() {
    let (app, runs) = json_app();
    let refused = send(&app, json_request("k1", None, r#"{"sku":"tea"}"#)).await;
    assert_eq!(refused.status, 415, "{refused:?}");
    assert_eq!(runs.count(), 0);
    // The same key and body, the header fixed: it runs, once.
    let fixed = send(
        &app,
        json_request("k1", Some("application/json"), r#"{"sku":"tea"}"#),
    )
    .await;
    assert_eq!(fixed.status, 201, "{fixed:?}");
    assert!(!fixed.is_replay());
    let retry = send(
        &app,
        json_request("k1", Some("application/json"), r#"{"sku":"tea"}"#),
    )
    .await;
    assert!(retry.is_replay());
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn a_body_the_json_extractor_cannot_parse_is_its_answer_and_another_body_wants_a_new_key() {
    let (app, runs) = json_app();
    let json = Some("application/json");
    let malformed = send(&app, json_request("k1", json, r#"{"sku":"#)).await;
    assert_eq!(malformed.status, 400, "{malformed:?}");
    // The same request gets the same answer, replayed.
    let again = send(&app, json_request("k1", json, r#"{"sku":"#)).await;
    assert!(again.is_replay());
    assert_eq!(again.status, 400);
    // Another body under the key is another request.
    let other = send(&app, json_request("k1", json, r#"{"sku":"tea"}"#)).await;
    other.assert_problem(409, "idempotency_key_payload_mismatch");
    let new_key = send(&app, json_request("k2", json, r#"{"sku":"tea"}"#)).await;
    assert_eq!(new_key.status, 201);
    assert_eq!(runs.count(), 1);
}
