//! The client layers against a bare transport, measured in the same run: a
//! `service_fn` that answers 201 at once stands in for the network, so the
//! numbers are the layers' own cost per call (a real round trip is ~50 µs or
//! more on loopback). After the group the ratio of times is printed:
//! `ratio client/<scenario>: 1.9 x the time of bare`.
//!
//! ```text
//! cargo bench --features client --bench client
//! ```

use std::convert::Infallible;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use tower::retry::RetryLayer;
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tower_idempotency::client::{RetryPolicy, SetIdempotencyKeyLayer};

type Client = BoxCloneService<Request<String>, Response<String>, BoxError>;

fn transport() -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<String>, Infallible>>,
> + Clone {
    service_fn(|_request: Request<String>| {
        let mut response = Response::new(String::from(r#"{"id":1}"#));
        *response.status_mut() = StatusCode::CREATED;
        std::future::ready(Ok(response))
    })
}

fn clients() -> Vec<(&'static str, Client)> {
    let bare = transport().map_err(BoxError::from);
    let key = ServiceBuilder::new()
        .layer(SetIdempotencyKeyLayer::new())
        .service(transport());
    let retry = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::new()))
        .service(transport())
        .map_err(BoxError::from);
    let both = ServiceBuilder::new()
        .layer(SetIdempotencyKeyLayer::new())
        .layer(RetryLayer::new(RetryPolicy::new()))
        .service(transport());
    vec![
        ("bare", BoxCloneService::new(bare)),
        ("key", BoxCloneService::new(key)),
        ("retry", BoxCloneService::new(retry)),
        ("key_and_retry", BoxCloneService::new(both)),
    ]
}

fn request() -> Request<String> {
    let mut request = Request::new(String::from(r#"{"sku":"tea"}"#));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::from_static("http://api.example/orders");
    request
}

fn client_layers(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("runtime: {error}"),
    };
    let mut group = c.benchmark_group("client");
    let mut means = Vec::new();
    for (name, client) in clients() {
        let (mut total, mut calls) = (Duration::ZERO, 0u64);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let elapsed = runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let response = client.clone().oneshot(request()).await;
                        assert!(response.is_ok());
                    }
                    start.elapsed()
                });
                total += elapsed;
                calls += iters;
                elapsed
            })
        });
        means.push((name, total.as_secs_f64() / calls.max(1) as f64));
    }
    group.finish();
    let bare = means[0].1;
    for (name, mean) in &means[1..] {
        println!(
            "ratio client/{name}: {:.2} x the time of bare ({:.3} µs vs {:.3} µs)",
            mean / bare,
            mean * 1e6,
            bare * 1e6
        );
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = client_layers
}
criterion_main!(benches);
