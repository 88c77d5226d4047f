//! Which responses are recorded : 5xx, 408, 425 and 429 are
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
    for status in [500, 502, 503, 504, 408, 425, 429] {
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
