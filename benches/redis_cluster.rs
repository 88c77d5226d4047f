//! `RedisStore` on a Redis Cluster against a single Redis, measured in one
//! run: a fresh request alone (and with replicated claims), and fresh
//! throughput with 64 requests in flight. Starts a local six-node cluster
//! (`redis-server` and `redis-cli` on the PATH) and stops it at the end; the
//! single Redis is the one at `REDIS_URL` (default `redis://127.0.0.1:6379`).
//!
//! ```text
//! cargo bench --features redis --bench redis_cluster
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use criterion::Criterion;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_idempotency::IdempotencyLayer;
use tower_idempotency::store::RedisStore;

#[path = "../tests/stores/cluster.rs"]
#[allow(dead_code, unreachable_pub)]
mod cluster;

/// Requests in flight for the throughput measurement.
const IN_FLIGHT: u64 = 64;

fn app(store: RedisStore) -> Router {
    Router::new()
        .route("/orders", post(|| async { StatusCode::CREATED }))
        .layer(IdempotencyLayer::new(store))
}

/// A key no earlier call used.
fn fresh_key() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "bench-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn fresh(app: &Router) {
    let request = Request::post("/orders")
        .header("idempotency-key", fresh_key())
        .body(Body::from("{}"))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let _ = response.into_body().collect().await;
}

/// Mean seconds per fresh request, one at a time.
fn one_at_a_time(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    app: &Router,
) -> f64 {
    let mut mean = (Duration::ZERO, 0u64);
    c.benchmark_group("redis_cluster_fresh")
        .bench_function(name, |b| {
            b.iter_custom(|iters| {
                let elapsed = runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        fresh(app).await;
                    }
                    start.elapsed()
                });
                mean.0 += elapsed;
                mean.1 += iters;
                elapsed
            })
        });
    mean.0.as_secs_f64() / mean.1 as f64
}

/// Fresh requests per second with `IN_FLIGHT` in flight.
fn in_flight(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    app: &Router,
) -> f64 {
    let mut total = (Duration::ZERO, 0u64);
    c.benchmark_group("redis_cluster_64_in_flight")
        .bench_function(name, |b| {
            b.iter_custom(|iters| {
                let elapsed = runtime.block_on(async {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..IN_FLIGHT)
                        .map(|_| {
                            let app = app.clone();
                            tokio::spawn(async move {
                                for _ in 0..iters {
                                    fresh(&app).await;
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                    start.elapsed()
                });
                total.0 += elapsed;
                total.1 += iters * IN_FLIGHT;
                // Per request, as criterion counts one per iteration.
                elapsed / IN_FLIGHT as u32
            })
        });
    total.1 as f64 / total.0.as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let Ok(single) = runtime.block_on(RedisStore::connect(&url)) else {
        println!("skipping: no Redis at {url}");
        return;
    };
    let cluster = runtime.block_on(cluster::Cluster::start("bench"));
    let prefix = format!("tower-idempotency-bench:{}:", std::process::id());
    let on_cluster = || {
        runtime
            .block_on(RedisStore::connect_cluster(cluster.urls()))
            .unwrap()
            .prefix(&prefix)
    };
    let single = app(single.prefix(&prefix));
    let plain = app(on_cluster());
    let acked = app(on_cluster().replicas_acked(1, Duration::from_millis(500)));
    for warm in [&single, &plain, &acked] {
        runtime.block_on(fresh(warm));
    }
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let single_one = one_at_a_time(&mut c, &runtime, "single_redis", &single);
    let cluster_one = one_at_a_time(&mut c, &runtime, "cluster", &plain);
    let acked_one = one_at_a_time(&mut c, &runtime, "cluster_replicas_acked_1", &acked);
    let single_rate = in_flight(&mut c, &runtime, "single_redis", &single);
    let cluster_rate = in_flight(&mut c, &runtime, "cluster", &plain);
    let acked_rate = in_flight(&mut c, &runtime, "cluster_replicas_acked_1", &acked);
    c.final_summary();
    println!(
        "fresh, one at a time: single {:.1} µs, cluster {:.1} µs ({:.2} x single), \
         cluster with replicas_acked(1) {:.1} µs ({:.2} x the cluster without)",
        single_one * 1e6,
        cluster_one * 1e6,
        cluster_one / single_one,
        acked_one * 1e6,
        acked_one / cluster_one
    );
    println!(
        "fresh, {IN_FLIGHT} in flight: single {single_rate:.0}/s, cluster {cluster_rate:.0}/s \
         ({:.2} x single), cluster with replicas_acked(1) {acked_rate:.0}/s ({:.2} x the cluster without)",
        cluster_rate / single_rate,
        acked_rate / cluster_rate
    );
    drop(cluster);
}
