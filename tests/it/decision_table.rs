//! Every row of the decision table, through an axum router.

use crate::common::{Fault, FaultyStore, gated_app, orders_app, post_json, request, send};
use http::{StatusCode, header};
use tower_idempotency::{IdempotencyLayer, MemoryStore};

fn layer() -> IdempotencyLayer<MemoryStore> {
    IdempotencyLayer::new(MemoryStore::new())
}

#[tokio::test]
async fn a_fresh_key_runs_the_service() {
    let (app, runs) = orders_app(layer());
    let answer = send(&app, post_json("k1", r#"{"sku":"a"}"#)).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.body, r#"order 1: {"sku":"a"}"#);
    assert!(!answer.is_replay());
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn a_retry_gets_the_recorded_response_without_running_again() {
    let (app, runs) = orders_app(layer());
    let first = send(&app, post_json("k1", r#"{"sku":"a"}"#)).await;
    let retry = send(&app, post_json("k1", r#"{"sku":"a"}"#)).await;
    assert_eq!(runs.count(), 1);
    assert!(retry.is_replay());
    assert_eq!(retry.status, StatusCode::CREATED, "201 stays 201");
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.headers[header::LOCATION], "/orders/1");
    let vary: Vec<_> = retry.headers.get_all(header::VARY).iter().collect();
    assert_eq!(
        vary,
        ["accept", "accept-encoding"],
        "multi-valued headers kept whole"
    );
    assert!(first.headers.contains_key(header::SET_COOKIE));
    assert!(
        !retry.headers.contains_key(header::SET_COOKIE),
        "a replay never hands out a session"
    );
}

#[tokio::test]
async fn a_completed_key_with_another_request_is_a_mismatch() {
    let (app, runs) = orders_app(layer());
    send(&app, post_json("k1", r#"{"sku":"a"}"#)).await;
    for other in [
        post_json("k1", r#"{"sku":"b"}"#),
        request("POST", "/orders?x=1", Some("k1"), r#"{"sku":"a"}"#),
        request("PATCH", "/orders", Some("k1"), r#"{"sku":"a"}"#),
    ] {
        let answer = send(&app, other).await;
        answer.assert_problem(409, "idempotency_key_payload_mismatch");
        assert!(
            !String::from_utf8_lossy(&answer.body).contains("order 1"),
            "an error never echoes the stored response"
        );
    }
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn an_in_flight_key_answers_in_progress_or_mismatch() {
    let (app, runs, gate) = gated_app(layer());
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k1", "a")).await }
    });
    gate.started.notified().await;

    let same = send(&app, post_json("k1", "a")).await;
    same.assert_problem(409, "idempotency_key_in_progress");
    assert_eq!(same.headers[header::RETRY_AFTER], "1");

    let other = send(&app, post_json("k1", "b")).await;
    other.assert_problem(409, "idempotency_key_payload_mismatch");

    gate.finish.notify_one();
    assert_eq!(first.await.unwrap().status, StatusCode::CREATED);
    let replay = send(&app, post_json("k1", "a")).await;
    assert!(replay.is_replay());
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn retry_after_is_configurable() {
    let (app, _, gate) = gated_app(layer().retry_after(std::time::Duration::from_secs(5)));
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k1", "a")).await }
    });
    gate.started.notified().await;
    let same = send(&app, post_json("k1", "a")).await;
    assert_eq!(same.headers[header::RETRY_AFTER], "5");
    gate.finish.notify_one();
    first.await.unwrap();
}

#[tokio::test]
async fn a_failing_store_answers_503_and_runs_nothing() {
    let store = FaultyStore::default();
    store.set(Fault::Fail);
    let runs = crate::common::Runs::default();
    let app = counting_app(IdempotencyLayer::new(store), &runs);
    let answer = send(&app, post_json("k1", "a")).await;
    answer.assert_problem(503, "idempotency_store_unavailable");
    assert_eq!(runs.count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_store_slower_than_the_timeout_answers_503_at_the_timeout() {
    let store = FaultyStore::default();
    store.set(Fault::Hang);
    let runs = crate::common::Runs::default();
    let timeout = std::time::Duration::from_millis(300);
    let app = counting_app(IdempotencyLayer::new(store).store_timeout(timeout), &runs);
    let started = tokio::time::Instant::now();
    let answer = send(&app, post_json("k1", "a")).await;
    answer.assert_problem(503, "idempotency_store_unavailable");
    assert_eq!(started.elapsed(), timeout);
    assert_eq!(runs.count(), 0);
}

#[tokio::test]
async fn fail_open_passes_through_unprotected_when_the_store_fails() {
    let store = FaultyStore::default();
    store.set(Fault::Fail);
    let runs = crate::common::Runs::default();
    let app = counting_app(IdempotencyLayer::new(store).fail_open(true), &runs);
    for _ in 0..2 {
        let answer = send(&app, post_json("k1", "a")).await;
        assert_eq!(answer.status, StatusCode::CREATED);
        assert!(!answer.is_replay());
    }
    assert_eq!(runs.count(), 2, "unprotected: each retry runs");
}

/// `POST /orders` answering 201, counting runs, on any store.
fn counting_app<St: tower_idempotency::Store>(
    layer: IdempotencyLayer<St>,
    runs: &crate::common::Runs,
) -> axum::Router {
    let runs = runs.clone();
    axum::Router::new()
        .route(
            "/orders",
            axum::routing::post(move || {
                let runs = runs.clone();
                async move { (StatusCode::CREATED, format!("order {}", runs.add())) }
            }),
        )
        .layer(layer)
}
