//! `axum_bodies`: axum's own body on both sides of the layer answers exactly
//! as the default bodies do, keyed or not, and still runs a key once.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{Answer, Runs, chunked_body, request, send};
use axum::Router;
use axum::body::Body;
use axum::routing::post;
use bytes::Bytes;
use http::{StatusCode, header};
use tokio::sync::Barrier;
use tower_idempotency::{IdempotencyLayer, MemoryStore};

/// `POST /orders` echoes its body after the run's number; `POST /stream`
/// answers in three chunks without a length; `GET /orders` lists.
fn app(axum_bodies: bool) -> (Router, Runs) {
    let runs = Runs::default();
    let (order_runs, stream_runs) = (runs.clone(), runs.clone());
    let router = Router::new()
        .route(
            "/orders",
            post(move |body: Bytes| {
                let runs = order_runs.clone();
                async move {
                    let n = runs.add();
                    // Give a racing request room to arrive while this runs.
                    tokio::task::yield_now().await;
                    let mut out = format!("order {n}: ").into_bytes();
                    out.extend_from_slice(&body);
                    (StatusCode::CREATED, out)
                }
            })
            .get(|| async { "listing" }),
        )
        .route(
            "/stream",
            post(move || {
                let n = stream_runs.add();
                async move {
                    let chunks = ["one ", "two ", &format!("run {n}")]
                        .map(|chunk| Bytes::from(chunk.to_owned()));
                    chunked_body(chunks.to_vec())
                }
            }),
        );
    let layer = IdempotencyLayer::new(MemoryStore::new()).request_body_limit(64);
    let router = if axum_bodies {
        router.layer(layer.axum_bodies())
    } else {
        router.layer(layer)
    };
    (router, runs)
}

/// What a client can tell of an answer (the rejection's `instance`, a
/// fresh id, aside).
fn seen(answer: &Answer) -> (StatusCode, Vec<(String, String)>, Bytes) {
    let mut headers: Vec<_> = answer
        .headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_owned()))
        .collect();
    headers.sort();
    let mut body = answer.body.clone();
    if let Ok(mut problem) = serde_json::from_slice::<serde_json::Value>(&body) {
        if let Some(problem) = problem.as_object_mut() {
            problem.remove("instance");
        }
        body = Bytes::from(problem.to_string());
    }
    (answer.status, headers, body)
}

#[tokio::test]
async fn every_answer_is_the_same_as_with_the_default_bodies() {
    let (default, default_runs) = app(false);
    let (axum, axum_runs) = app(true);
    let big = "x".repeat(65);
    let requests = || {
        [
            request("POST", "/orders", None, "no key"),
            request("GET", "/orders", Some("k1"), Body::empty()),
            request("POST", "/orders", Some("k1"), "first"),
            request("POST", "/orders", Some("k1"), "first"),
            request("POST", "/orders", Some("k1"), "other body"),
            request("POST", "/orders", Some(""), "empty key"),
            request("POST", "/orders", Some("k2"), big.clone()),
            request("POST", "/stream", Some("k3"), "streamed"),
            request("POST", "/stream", Some("k3"), "streamed"),
        ]
    };
    let mut answers = Vec::new();
    for (with_default, with_axum) in requests().into_iter().zip(requests()) {
        let expected = send(&default, with_default).await;
        let answer = send(&axum, with_axum).await;
        assert_eq!(seen(&answer), seen(&expected));
        answers.push(answer);
    }
    assert_eq!(axum_runs.count(), default_runs.count());
    // And the answers are what the layer is for.
    assert_eq!(answers[0].body, "order 1: no key");
    assert_eq!(answers[2].status, StatusCode::CREATED);
    assert!(answers[3].is_replay());
    assert_eq!(answers[3].body, answers[2].body);
    answers[4].assert_problem(409, "idempotency_key_payload_mismatch");
    answers[5].assert_problem(400, "idempotency_key_invalid");
    answers[6].assert_problem(413, "idempotency_request_too_large");
    assert_eq!(answers[7].body, "one two run 3");
    assert!(answers[8].is_replay());
    assert_eq!(answers[8].body, answers[7].body);
    assert_eq!(axum_runs.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_with_one_key_run_the_handler_once() {
    const N: usize = 50;
    let (app, runs) = app(true);
    let barrier = Arc::new(Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let (app, barrier) = (app.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                send(&app, request("POST", "/orders", Some("one"), "same")).await
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        let answer = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("a request hung")
            .unwrap();
        match answer.status {
            StatusCode::CREATED => {
                assert_eq!(answer.body, "order 1: same");
                created += usize::from(!answer.is_replay());
            }
            _ => {
                answer.assert_problem(409, "idempotency_key_in_progress");
                assert_eq!(answer.headers[header::RETRY_AFTER], "1");
            }
        }
    }
    assert_eq!(created, 1);
    assert_eq!(runs.count(), 1);
}
