//! The `on_outcome` hook: what became of each covered request, with timings.

use std::sync::{Arc, Mutex};

use crate::common::{Fault, FaultyStore, gated_app, orders_app, post_json, request, send};
use tower_idempotency::{IdempotencyLayer, MemoryStore, Outcome, OutcomeReport};

fn recorder() -> (
    Arc<Mutex<Vec<Outcome>>>,
    impl Fn(&OutcomeReport) + Send + Sync + 'static,
) {
    let seen: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let sink = seen.clone();
    (seen, move |report: &OutcomeReport| {
        assert!(report.store_latency <= report.elapsed || report.outcome == Outcome::Rejected);
        sink.lock().unwrap().push(report.outcome);
    })
}

#[tokio::test]
async fn every_outcome_is_reported_once() {
    let (seen, hook) = recorder();
    let (app, _) = orders_app(IdempotencyLayer::new(MemoryStore::new()).on_outcome(hook));
    send(&app, post_json("k1", "a")).await;
    send(&app, post_json("k1", "a")).await;
    send(&app, post_json("k1", "b")).await;
    send(&app, post_json("", "a")).await;
    send(&app, request("POST", "/orders", None, "a")).await; // no key: not covered
    send(&app, request("GET", "/orders", Some("k9"), "")).await; // not a covered method
    assert_eq!(
        *seen.lock().unwrap(),
        [
            Outcome::Executed,
            Outcome::Replayed,
            Outcome::Mismatch,
            Outcome::Rejected
        ]
    );
}

#[tokio::test]
async fn in_progress_and_store_errors_are_reported() {
    let (seen, hook) = recorder();
    let (app, _, gate) = gated_app(IdempotencyLayer::new(MemoryStore::new()).on_outcome(hook));
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k1", "a")).await }
    });
    gate.started.notified().await;
    send(&app, post_json("k1", "a")).await;
    gate.finish.notify_one();
    first.await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [Outcome::Executed, Outcome::InProgress]
    );

    let (seen, hook) = recorder();
    let store = FaultyStore::default();
    store.set(Fault::Fail);
    let (app, _) = orders_app(IdempotencyLayer::new(store).on_outcome(hook));
    send(&app, post_json("k1", "a")).await;
    assert_eq!(*seen.lock().unwrap(), [Outcome::StoreError]);
    assert_eq!(Outcome::StoreError.as_str(), "store_error");
}
