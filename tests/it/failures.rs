//! Requests that end badly: dropped futures, panics, service errors, and a
//! store that fails to record.

use std::convert::Infallible;
use std::sync::Arc;

use crate::common::{Fault, FaultyStore, Runs, counted_post, gated_app, post_json, read, send};
use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_idempotency::server::RequestBody;
use tower_idempotency::{IdempotencyLayer, MemoryStore};

#[tokio::test]
async fn without_run_to_completion_a_dropped_response_future_releases_the_claim() {
    let store = Arc::new(MemoryStore::new());
    let layer = IdempotencyLayer::from_shared_store(store.clone()).run_to_completion(false);
    let (app, runs, gate) = gated_app(layer);
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k1", "a")).await }
    });
    gate.started.notified().await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    crate::common::settle().await;
    assert!(store.is_empty(), "released, not recorded");

    // The retry runs the service again.
    let retry = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k1", "a")).await }
    });
    gate.started.notified().await;
    gate.finish.notify_one();
    let retry = retry.await.unwrap();
    assert_eq!(retry.status, StatusCode::CREATED);
    assert!(!retry.is_replay());
    assert_eq!(runs.count(), 2);
}

#[tokio::test]
async fn a_panicking_handler_releases_the_claim() {
    let (handler, runs) = counted_post(|n| async move {
        if n == 1 {
            panic!("handler bug");
        }
        (StatusCode::CREATED, "created")
    });
    let app = axum::Router::new()
        .route("/orders", handler)
        .layer(IdempotencyLayer::new(MemoryStore::new()));
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k1", "a")).await }
    });
    assert!(first.await.unwrap_err().is_panic());
    crate::common::settle().await;
    let retry = send(&app, post_json("k1", "a")).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert!(!retry.is_replay());
    assert_eq!(runs.count(), 2);
}

#[derive(Debug, PartialEq)]
struct Boom;

#[tokio::test]
async fn a_service_error_is_returned_and_releases_the_claim() {
    let runs = Runs::default();
    let service_runs = runs.clone();
    let service = IdempotencyLayer::new(MemoryStore::new()).layer(tower::service_fn(
        move |_: Request<RequestBody<Body>>| {
            let runs = service_runs.clone();
            async move {
                if runs.add() == 1 {
                    Err(Boom)
                } else {
                    Ok(Response::new(Full::new(Bytes::from("ok"))))
                }
            }
        },
    ));
    let error = service
        .clone()
        .oneshot(post_json("k1", "a"))
        .await
        .unwrap_err();
    assert_eq!(error, Boom, "the inner error type is kept");
    let retry = read(service.clone().oneshot(post_json("k1", "a")).await.unwrap()).await;
    assert_eq!(retry.body, "ok");
    assert!(!retry.is_replay());
    let replay = read(service.oneshot(post_json("k1", "a")).await.unwrap()).await;
    assert!(replay.is_replay());
    assert_eq!(runs.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_record_is_retried_while_the_lease_lasts_and_the_response_delivered() {
    let store = FaultyStore::default();
    store.set(Fault::FailRecords);
    let runs = Runs::default();
    let service_runs = runs.clone();
    let service = IdempotencyLayer::new(store.clone()).layer(tower::service_fn(
        move |_: Request<RequestBody<Body>>| {
            let runs = service_runs.clone();
            async move {
                runs.add();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("made"))))
            }
        },
    ));
    let first = read(service.clone().oneshot(post_json("k1", "a")).await.unwrap()).await;
    assert_eq!(first.body, "made", "delivered though the store failed");
    // The store comes back within the lease: the background retry records.
    store.set(Fault::None);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let retry = read(service.oneshot(post_json("k1", "a")).await.unwrap()).await;
    assert!(retry.is_replay());
    assert_eq!(retry.body, "made");
    assert_eq!(runs.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn record_retries_stop_when_the_lease_ends() {
    let store = FaultyStore::default();
    store.set(Fault::FailRecords);
    let lease = std::time::Duration::from_secs(5);
    let service = IdempotencyLayer::new(store.clone())
        .lease(lease)
        .layer(tower::service_fn(|_: Request<RequestBody<Body>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("made"))))
        }));
    read(service.oneshot(post_json("k1", "a")).await.unwrap()).await;
    tokio::time::sleep(lease * 2).await;
    let attempts = store
        .record_attempts
        .load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(lease * 10).await;
    assert_eq!(
        store
            .record_attempts
            .load(std::sync::atomic::Ordering::SeqCst),
        attempts,
        "no attempt after the lease ended"
    );
    assert!(attempts >= 3, "it kept trying during the lease: {attempts}");
}
