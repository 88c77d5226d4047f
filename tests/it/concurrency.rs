//! Races: many concurrent requests with one key run the service once.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{gated_app, post_json, send};
use http::{StatusCode, header};
use tokio::sync::Barrier;
use tower_idempotency::{IdempotencyLayer, MemoryStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_requests_with_one_key_run_the_handler_once() {
    const N: usize = 100;
    let (app, runs, gate) = gated_app(IdempotencyLayer::new(MemoryStore::new()));
    let barrier = Arc::new(Barrier::new(N));
    let (done, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..N {
        let (app, barrier, done) = (app.clone(), barrier.clone(), done.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            done.send(send(&app, post_json("same-key", "a")).await)
                .unwrap();
        });
    }
    // While the one winner holds the key inside the handler, every other
    // request gets its answer without waiting for it.
    gate.started.notified().await;
    for _ in 0..N - 1 {
        let answer = tokio::time::timeout(Duration::from_secs(30), answers.recv())
            .await
            .expect("a loser waited for the winner")
            .unwrap();
        answer.assert_problem(409, "idempotency_key_in_progress");
        assert_eq!(answer.headers[header::RETRY_AFTER], "1");
    }
    assert_eq!(runs.count(), 1);
    gate.finish.notify_one();
    let winner = answers.recv().await.unwrap();
    assert_eq!(winner.status, StatusCode::CREATED);
    assert_eq!(runs.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_keys_at_once_each_run_once() {
    let (app, runs) = crate::common::orders_app(IdempotencyLayer::new(MemoryStore::new()));
    let barrier = Arc::new(Barrier::new(200));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (app, barrier) = (app.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                // Two requests per key, racing.
                send(&app, post_json(&format!("key-{}", i / 2), "a")).await
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        match answer.status {
            StatusCode::CREATED => created += 1,
            _ => answer.assert_problem(409, "idempotency_key_in_progress"),
        }
    }
    assert!(
        created >= 100,
        "each key got at least its original: {created}"
    );
    assert_eq!(runs.count(), 100, "one run per key");
}
