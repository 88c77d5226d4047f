//! Long-running work : run to completion, lease renewal with
//! fencing, and no work left behind, all on a paused clock.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::{ChannelBody, Fault, FaultyStore, Runs, counted_post, post_json, read, send};
use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_idempotency::server::RequestBody;
use tower_idempotency::{IdempotencyLayer, MemoryStore, Store};

/// `POST /orders` that takes `work` to answer (or panics after it, if `panic`).
fn slow_app<St: Store>(
    layer: IdempotencyLayer<St>,
    work: Duration,
    panic: bool,
) -> (axum::Router, Runs) {
    let (handler, runs) = counted_post(move |n| async move {
        tokio::time::sleep(work).await;
        if panic {
            panic!("the handler failed late");
        }
        (StatusCode::CREATED, format!("result of run {n}"))
    });
    (
        axum::Router::new().route("/orders", handler).layer(layer),
        runs,
    )
}

/// Sends a request and gives up on it (drops its future) after `patience`.
async fn impatient(app: &axum::Router, patience: Duration) {
    let gave_up = tokio::time::timeout(patience, send(app, post_json("k1", "a"))).await;
    assert!(gave_up.is_err(), "the request was meant to be dropped");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_request_finishes_in_the_background_and_its_retry_replays() {
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let (app, runs) = slow_app(layer, Duration::from_millis(500), false);
    impatient(&app, Duration::from_millis(50)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let retry = send(&app, post_json("k1", "a")).await;
    assert!(retry.is_replay(), "{retry:?}");
    assert_eq!(retry.body, "result of run 1");
    assert_eq!(runs.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn without_run_to_completion_a_dropped_request_runs_again() {
    let layer = IdempotencyLayer::new(MemoryStore::new()).run_to_completion(false);
    let (app, runs) = slow_app(layer, Duration::from_millis(500), false);
    impatient(&app, Duration::from_millis(50)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let retry = send(&app, post_json("k1", "a")).await;
    assert!(!retry.is_replay());
    assert_eq!(retry.body, "result of run 2");
    assert_eq!(runs.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_request_dropped_by_an_outer_timeout_still_completes() {
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let (app, runs) = slow_app(layer, Duration::from_secs(5), false);
    let with_timeout = tower::timeout::Timeout::new(app.clone(), Duration::from_secs(1));
    let timed_out = with_timeout.oneshot(post_json("k1", "a")).await;
    assert!(timed_out.is_err(), "the outer timeout answered");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let retry = send(&app, post_json("k1", "a")).await;
    assert!(retry.is_replay());
    assert_eq!(runs.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_detached_request_that_panics_releases_its_claim() {
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let (app, runs) = slow_app(layer, Duration::from_millis(500), true);
    impatient(&app, Duration::from_millis(50)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The background task panicked: the key was released, the retry runs.
    let retry = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k1", "a")).await }
    });
    assert!(retry.await.unwrap_err().is_panic());
    assert_eq!(runs.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_ten_minute_handler_keeps_its_claim_through_twenty_leases() {
    let store = FaultyStore::default();
    let lease = Duration::from_secs(30);
    let work = Duration::from_secs(600);
    let layer = IdempotencyLayer::new(store.clone()).lease(lease);
    let (app, runs) = slow_app(layer, work, false);
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k1", "a")).await }
    });
    // Every minute, a retry finds the key still held.
    for _ in 0..9 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        send(&app, post_json("k1", "a"))
            .await
            .assert_problem(409, "idempotency_key_in_progress");
    }
    assert_eq!(first.await.unwrap().status, StatusCode::CREATED);
    assert!(send(&app, post_json("k1", "a")).await.is_replay());
    assert_eq!(runs.count(), 1);
    // A renewal every third of a lease: 600 s / 10 s.
    let renewals = store.renew_attempts.load(Ordering::SeqCst);
    assert!((59..=60).contains(&renewals), "{renewals} renewals");
}

#[tokio::test(start_paused = true)]
async fn renewal_stops_when_the_work_ends() {
    let store = FaultyStore::default();
    let layer = IdempotencyLayer::new(store.clone()).lease(Duration::from_secs(3));
    let (app, _) = slow_app(layer, Duration::from_secs(10), false);
    // Finished normally.
    send(&app, post_json("k1", "a")).await;
    // Dropped and finished in the background.
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    tokio::time::timeout(Duration::from_secs(1), send(&app, post_json("k2", "a")))
        .await
        .unwrap_err();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let renewals = store.renew_attempts.load(Ordering::SeqCst);
    assert!(renewals >= 6, "both renewed while they ran: {renewals}");
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(store.renew_attempts.load(Ordering::SeqCst), renewals);
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        tasks_before,
        "the background task ended with its work"
    );
}

#[tokio::test(start_paused = true)]
async fn a_crashed_owner_loses_the_key_after_one_lease_and_is_fenced_off() {
    // Renewals fail, as for a replica that died holding the claim.
    let store = FaultyStore::default();
    store.set(Fault::FailRenewals);
    let lease = Duration::from_secs(30);
    let layer = IdempotencyLayer::new(store.clone()).lease(lease);
    let (app, runs, gate) = crate::common::first_run_blocks(layer, StatusCode::CREATED);
    let stale = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k1", "a")).await }
    });
    tokio::time::sleep(lease - Duration::from_secs(1)).await;
    send(&app, post_json("k1", "a"))
        .await
        .assert_problem(409, "idempotency_key_in_progress");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // One lease on, the key is free: the retry runs as the new owner.
    assert_eq!(send(&app, post_json("k1", "a")).await.body, "owner 2");
    gate.finish.notify_one();
    assert_eq!(stale.await.unwrap().body, "owner 1");
    let replay = send(&app, post_json("k1", "a")).await;
    assert_eq!(replay.body, "owner 2", "the late record was refused");
    assert_eq!(runs.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_body_dropped_mid_stream_is_drained_and_recorded() {
    let runs = Runs::default();
    let (senders, mut producers) = tokio::sync::mpsc::unbounded_channel();
    let service_runs = runs.clone();
    let layer = IdempotencyLayer::new(MemoryStore::new()).wait_in_flight(Duration::from_secs(60));
    let service = tower::Layer::layer(
        &layer,
        tower::service_fn(move |_: Request<RequestBody<Body>>| {
            let (runs, senders) = (service_runs.clone(), senders.clone());
            async move {
                runs.add();
                let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
                senders.send(tx).unwrap();
                Ok::<_, Infallible>(Response::new(ChannelBody(rx)))
            }
        }),
    );
    let response = service.clone().oneshot(post_json("k1", "a")).await.unwrap();
    let producer = producers.recv().await.unwrap();
    producer.send(Bytes::from("token 1, ")).await.unwrap();
    let mut body = response.into_body();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "token 1, "
    );
    drop(body); // The client went away mid-stream.
    // The generation goes on, and is read to its end in the background.
    for token in ["token 2, ", "token 3"] {
        producer.send(Bytes::from(token)).await.unwrap();
    }
    drop(producer);
    let retry = read(service.oneshot(post_json("k1", "a")).await.unwrap()).await;
    assert!(retry.is_replay());
    assert_eq!(retry.body, "token 1, token 2, token 3");
    assert_eq!(runs.count(), 1);
}
