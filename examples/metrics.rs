//! Metrics from the `on_outcome` hook, without a metrics dependency in the
//! library: counters per outcome and the store latency, served as Prometheus
//! text on `GET /metrics`.
//!
//! ```text
//! cargo run --example metrics
//! curl -X POST localhost:3003/orders -H 'Idempotency-Key: k1' -d '{}'
//! curl localhost:3003/metrics
//! ```

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{get, post};
use http::StatusCode;
use tower_idempotency::{IdempotencyLayer, MemoryStore, OutcomeReport};

/// Counts per outcome, and the sum of store latencies.
#[derive(Default)]
struct Metrics {
    outcomes: BTreeMap<&'static str, u64>,
    store_seconds: f64,
}

impl Metrics {
    fn observe(&mut self, report: &OutcomeReport) {
        *self.outcomes.entry(report.outcome.as_str()).or_default() += 1;
        self.store_seconds += report.store_latency.as_secs_f64();
    }

    fn prometheus(&self) -> String {
        let mut text = String::from("# TYPE idempotency_requests_total counter\n");
        for (outcome, count) in &self.outcomes {
            text.push_str(&format!(
                "idempotency_requests_total{{outcome=\"{outcome}\"}} {count}\n"
            ));
        }
        text.push_str("# TYPE idempotency_store_seconds_total counter\n");
        text.push_str(&format!(
            "idempotency_store_seconds_total {}\n",
            self.store_seconds
        ));
        text
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let metrics = Arc::new(Mutex::new(Metrics::default()));
    let observed = metrics.clone();
    let layer = IdempotencyLayer::new(MemoryStore::new()).on_outcome(move |report| {
        observed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .observe(report);
    });
    let app = Router::new()
        .route(
            "/orders",
            post(|| async { (StatusCode::CREATED, "created\n") }),
        )
        .layer(layer)
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    metrics
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .prometheus()
                }
            }),
        );
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3003".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "metrics example listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
