//! A load with exact accounting, for fault injection: clients send keys one
//! after another, retrying each (on 503 or 409) until it gets a 2xx, while a
//! counting handler notes every execution.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use http::StatusCode;
use tower_idempotency::{IdempotencyLayer, Store};

use super::{request, send};

/// Executions per key, as the handler saw them.
pub type Executions = Arc<Mutex<HashMap<String, usize>>>;

/// `POST /orders` that counts its executions per key.
pub fn counting_app<St: Store>(layer: IdempotencyLayer<St>) -> (Router, Executions) {
    let executed: Executions = Arc::default();
    let handler_executed = executed.clone();
    let app = Router::new()
        .route(
            "/orders",
            axum::routing::post(move |headers: http::HeaderMap| {
                let executed = handler_executed.clone();
                async move {
                    let key = headers["idempotency-key"].to_str().unwrap().to_owned();
                    *executed.lock().unwrap().entry(key).or_default() += 1;
                    StatusCode::CREATED
                }
            }),
        )
        .layer(layer);
    (app, executed)
}

/// Clients running against an app until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<()>>,
    /// 2xx answers per key.
    pub successes: Executions,
    /// Answers of 503.
    pub unavailable: Arc<AtomicUsize>,
    /// The slowest answer of all.
    pub slowest: Arc<Mutex<Duration>>,
}

impl Load {
    pub fn start(app: &Router, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let successes: Executions = Arc::default();
        let unavailable = Arc::new(AtomicUsize::new(0));
        let slowest = Arc::new(Mutex::new(Duration::ZERO));
        let clients = (0..clients)
            .map(|client| {
                let (app, stop, successes) = (app.clone(), stop.clone(), successes.clone());
                let (unavailable, slowest) = (unavailable.clone(), slowest.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let key = format!("c{client}-k{n}");
                        while !stop.load(Ordering::SeqCst) {
                            let started = Instant::now();
                            let answer =
                                send(&app, request("POST", "/orders", Some(&key), "")).await;
                            {
                                let mut slowest = slowest.lock().unwrap();
                                *slowest = (*slowest).max(started.elapsed());
                            }
                            match answer.status.as_u16() {
                                201 => {
                                    *successes.lock().unwrap().entry(key.clone()).or_default() += 1;
                                    break;
                                }
                                503 => {
                                    unavailable.fetch_add(1, Ordering::SeqCst);
                                }
                                409 => {}
                                other => panic!("unexpected status {other}"),
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        Self {
            stop,
            clients,
            successes,
            unavailable,
            slowest,
        }
    }

    /// Keys that got a 2xx so far.
    pub fn succeeded(&self) -> usize {
        self.successes.lock().unwrap().len()
    }

    /// Stops the clients and checks the accounting against `executed`:
    /// one 2xx per key, and one execution per key that got it.
    pub async fn finish(self, executed: &Executions) -> (usize, usize, Duration) {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients {
            client.await.unwrap();
        }
        let successes = self.successes.lock().unwrap();
        let executed = executed.lock().unwrap();
        let executions: usize = executed.values().sum();
        assert!(successes.values().all(|&n| n == 1), "one 2xx per key");
        assert!(executed.values().all(|&n| n == 1), "no key ran twice");
        assert_eq!(
            executions,
            successes.len(),
            "executions == distinct keys with a 2xx"
        );
        let slowest = *self.slowest.lock().unwrap();
        (
            successes.len(),
            self.unavailable.load(Ordering::SeqCst),
            slowest,
        )
    }
}
