//! The layer against the bare service, in the same run: no key, a fresh key
//! and a replay, with a 1 KiB JSON body and a ~100-byte 201 response.
//!
//! `cargo bench --bench layer`; the ratio to the bare service is printed
//! after each group.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_idempotency::{IdempotencyLayer, MemoryStore};

const RESPONSE: &str = r#"{"id":12345,"status":"created","amount":1999,"currency":"eur","note":"benchmark order body"}"#;

fn body_1k() -> Bytes {
    let mut json = String::from(r#"{"items":["#);
    while json.len() < 1000 {
        json.push_str(r#"{"sku":"abc","qty":1},"#);
    }
    json.push_str(r#"{"sku":"end","qty":1}]}"#);
    Bytes::from(json)
}

fn handler_app() -> Router {
    Router::new().route(
        "/orders",
        post(|_body: Bytes| async { (StatusCode::CREATED, RESPONSE) }),
    )
}

fn request(key: Option<String>, body: &Bytes) -> Request<Body> {
    let mut builder = Request::post("/orders").header("content-type", "application/json");
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    match builder.body(Body::from(body.clone())) {
        Ok(request) => request,
        Err(error) => panic!("request: {error}"),
    }
}

async fn call(app: &Router, request: Request<Body>) -> Result<Bytes, Infallible> {
    let response = app.clone().oneshot(request).await?;
    Ok(response
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default())
}

/// The mean time of one call over every sample criterion took.
#[derive(Default)]
struct Mean {
    elapsed: Duration,
    iters: u64,
}

impl Mean {
    fn add(&mut self, elapsed: Duration, iters: u64) -> Duration {
        self.elapsed += elapsed;
        self.iters += iters;
        elapsed
    }

    fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64() / self.iters.max(1) as f64
    }
}

/// Builds the request of iteration `i`.
type MakeRequest<'a> = dyn Fn(u64) -> Request<Body> + 'a;

/// Mean time of one call over `iters` calls.
fn time_calls<F>(
    runtime: &tokio::runtime::Runtime,
    iters: u64,
    mut make: F,
    app: &Router,
) -> Duration
where
    F: FnMut(u64) -> Request<Body>,
{
    runtime.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            let _ = call(app, make(i)).await;
        }
        start.elapsed()
    })
}

fn bench_layer(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("runtime: {error}"),
    };
    let body = body_1k();
    let bare = handler_app();
    let layered = handler_app().layer(IdempotencyLayer::new(MemoryStore::new()));
    // Run to completion costs nothing on requests that are not dropped: the
    // same fresh-key scenario with it switched off shows that.
    let no_completion =
        handler_app().layer(IdempotencyLayer::new(MemoryStore::new()).run_to_completion(false));
    let counter = AtomicU64::new(0);

    // Record one key for the replay scenario.
    runtime.block_on(async {
        let _ = call(&layered, request(Some("replayed".into()), &body)).await;
    });

    let mut group = c.benchmark_group("single_task_1KiB");
    let mut bare_total = Mean::default();
    group.bench_function("bare", |b| {
        b.iter_custom(|iters| {
            let elapsed = time_calls(&runtime, iters, |_| request(None, &body), &bare);
            bare_total.add(elapsed, iters)
        })
    });
    let scenarios: [(&str, &MakeRequest<'_>); 3] = [
        ("no_key", &|_| request(None, &body)),
        ("fresh_key", &|_| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            request(Some(format!("fresh-{n}")), &body)
        }),
        ("replay", &|_| request(Some("replayed".into()), &body)),
    ];
    for (name, make) in scenarios {
        let mut total = Mean::default();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let elapsed = time_calls(&runtime, iters, make, &layered);
                total.add(elapsed, iters)
            })
        });
        println!(
            "ratio {name}: {:.2} x bare throughput",
            bare_total.secs() / total.secs()
        );
    }
    let mut total = Mean::default();
    group.bench_function("fresh_key_run_to_completion_off", |b| {
        b.iter_custom(|iters| {
            let make = |_| {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                request(Some(format!("fresh-{n}")), &body)
            };
            let elapsed = time_calls(&runtime, iters, make, &no_completion);
            total.add(elapsed, iters)
        })
    });
    println!(
        "ratio fresh_key_run_to_completion_off: {:.2} x bare throughput",
        bare_total.secs() / total.secs()
    );
    group.finish();
}

criterion_group!(benches, bench_layer);
criterion_main!(benches);
