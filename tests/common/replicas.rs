//! Two replicas of one app, each with a store of its own on one shared
//! backend, served on two ports: the scenario every shared store must pass.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::StatusCode;
use tokio::sync::Barrier;
use tower_idempotency::{IdempotencyLayer, Store};

use super::Runs;
use super::wire::exchange;

/// `POST /orders`: 201 after `work`, with a body numbered by its run.
pub fn app<St: Store>(store: St, runs: &Runs, work: Duration) -> Router {
    let runs = runs.clone();
    let layer = IdempotencyLayer::new(store)
        .ttl(Duration::from_secs(60))
        .wait_in_flight(Duration::from_secs(10));
    Router::new()
        .route(
            "/orders",
            axum::routing::post(move |body: Bytes| {
                let runs = runs.clone();
                async move {
                    let n = runs.add();
                    tokio::time::sleep(work).await;
                    let mut out = format!("order {n}: ").into_bytes();
                    out.extend_from_slice(&body);
                    (StatusCode::CREATED, out)
                }
            }),
        )
        .layer(layer)
}

/// Serves `app` on a free port; returns its address.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// 50 concurrent identical requests split across two replicas run the handler
/// once and all get its answer; a retry through either replays it, a
/// different request through either is a mismatch.
pub async fn two_replicas_run_a_key_once<A: Store, B: Store>(store_a: A, store_b: B) {
    let runs = Runs::default();
    let work = Duration::from_millis(300);
    let addrs = [
        serve(app(store_a, &runs, work)).await,
        serve(app(store_b, &runs, work)).await,
    ];
    let barrier = Arc::new(Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (addr, barrier) = (addrs[i % 2].clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let headers = [("idempotency-key", "order-7")];
                exchange(&addr, "POST", "/orders", &headers, "tea").await
            })
        })
        .collect();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 201, "{reply:?}");
        assert_eq!(reply.body, "order 1: tea");
    }
    assert_eq!(runs.count(), 1, "one execution across both replicas");
    for addr in &addrs {
        let headers = [("idempotency-key", "order-7")];
        let replay = exchange(addr, "POST", "/orders", &headers, "tea").await;
        assert_eq!(replay.header("idempotent-replayed"), Some("true"));
        assert_eq!(replay.body, "order 1: tea");
        let mismatch = exchange(addr, "POST", "/orders", &headers, "coffee").await;
        assert_eq!(mismatch.status, 409);
        assert_eq!(mismatch.json()["code"], "idempotency_key_payload_mismatch");
    }
    assert_eq!(runs.count(), 1);
}
