//! The layer against the bare service, measured in the same run, through
//! `tower::ServiceExt::oneshot` on an axum `Router` whose handler answers 201
//! with ~100 bytes. After each group the ratio of throughputs is printed:
//! `ratio <group>/<scenario>: 0.62 x bare`.
//!
//! ```text
//! cargo bench --bench layer                       # memory store
//! cargo bench --bench layer --features redis,postgres   # and the shared stores, if they answer
//! ```

#[path = "support/floor.rs"]
mod floor;
#[path = "support/app.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use floor::floor_app;
use http::{Request, StatusCode};
use sha2::{Digest, Sha256};
use support::{RESPONSE, app, call, json_body, request};
use tower_idempotency::store::{ClaimOutcome, KeyDigest, Record, RecordedResponse};
use tower_idempotency::{Fingerprint, IdempotencyKey, IdempotencyLayer, MemoryStore, Scope, Store};

fn layered<St: Store>(store: Arc<St>) -> Router {
    app_with(IdempotencyLayer::from_shared_store(store))
}

/// How long the Redis benches' records live. The Redis they write to is the
/// one the tests share, and a fresh-key group leaves hundreds of thousands of
/// records behind: with the layer's default of a day they piled up (870 000
/// keys, 320 MB, seen once); ten minutes is longer than any run.
#[cfg(feature = "redis")]
const REDIS_BENCH_TTL: Duration = Duration::from_secs(600);

/// The bench app over a networked store, its records living
/// `REDIS_BENCH_TTL`.
#[cfg(feature = "redis")]
fn layered_briefly<St: Store>(store: Arc<St>) -> Router {
    app_with(IdempotencyLayer::from_shared_store(store).ttl(REDIS_BENCH_TTL))
}

fn app_with<St: Store>(layer: IdempotencyLayer<St>) -> Router {
    // `with_state` turns handlers into routes once, as `axum::serve` does;
    // without it a `Router` rebuilds them, layers and all, on every call.
    app().layer(layer).with_state(())
}

/// Mean time per call, over every sample criterion took.
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

/// Makes the request of iteration `i`.
type MakeRequest<'a> = dyn Fn(u64) -> Request<Body> + 'a;

/// A scenario: its name, the app, and its requests.
struct Scenario<'a> {
    name: &'a str,
    app: &'a Router,
    make: &'a MakeRequest<'a>,
}

/// Benchmarks `bare` and each scenario on one task, and prints ratios.
fn compare(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    group_name: &str,
    bare: Scenario<'_>,
    scenarios: &[Scenario<'_>],
) -> Vec<(String, f64)> {
    let mut group = c.benchmark_group(group_name);
    let mut means: Vec<(String, Mean)> = Vec::new();
    for scenario in std::iter::once(&bare).chain(scenarios) {
        let mut mean = Mean::default();
        group.bench_function(scenario.name, |b| {
            b.iter_custom(|iters| {
                let elapsed = runtime.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters {
                        call(scenario.app, (scenario.make)(i)).await;
                    }
                    start.elapsed()
                });
                mean.add(elapsed, iters)
            })
        });
        means.push((scenario.name.to_owned(), mean));
    }
    group.finish();
    if means[0].1.iters == 0 {
        return Vec::new(); // Filtered out by the command line.
    }
    let bare_secs = means[0].1.secs();
    for (name, mean) in &means[1..] {
        println!(
            "ratio {group_name}/{name}: {:.2} x bare ({:.2} µs vs {:.2} µs)",
            bare_secs / mean.secs(),
            mean.secs() * 1e6,
            bare_secs * 1e6
        );
    }
    means[1..]
        .iter()
        .map(|(name, mean)| (name.clone(), mean.secs()))
        .collect()
}

/// Fresh keys and a replay of the key `replayed` on `app`, against `bare`.
fn fresh_and_replay(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    group_name: &str,
    bare: &Router,
    app: &Router,
    body: &Bytes,
) {
    compare(
        c,
        runtime,
        group_name,
        Scenario {
            name: "bare",
            app: bare,
            make: &|_| request("/orders", None, body),
        },
        &[
            Scenario {
                name: "fresh",
                app,
                make: &|_| request("/orders", Some(&fresh_key()), body),
            },
            Scenario {
                name: "replay",
                app,
                make: &|_| request("/orders", Some("replayed"), body),
            },
        ],
    );
}

fn current_thread() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("runtime: {error}"),
    }
}

/// A runtime of 2 worker threads, as the issue's shape has it.
fn two_workers() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("runtime: {error}"),
    }
}

/// One criterion measurement of `iters` calls of `work`, shared by `tasks`
/// tasks on `runtime`; records it in `mean`.
fn on_tasks<F, Fut>(
    runtime: &tokio::runtime::Runtime,
    tasks: u64,
    iters: u64,
    mean: &mut Mean,
    work: &F,
) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per_task = iters.div_ceil(tasks);
    let elapsed = runtime.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let work = work.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        work().await;
                    }
                })
            })
            .collect();
        for handle in handles {
            let _ = handle.await;
        }
        start.elapsed()
    });
    mean.add(elapsed, per_task * tasks)
}

/// Unique keys for fresh requests, across every group.
static FRESH: AtomicU64 = AtomicU64::new(0);

fn fresh_key() -> String {
    format!("fresh-{}", FRESH.fetch_add(1, Ordering::Relaxed))
}

/// Records `n` keys straight into the store, as earlier traffic would have.
async fn prefill(store: &MemoryStore, n: usize) {
    let fingerprint = Fingerprint::from_bytes([7; 32]);
    let response = RecordedResponse {
        status: StatusCode::CREATED,
        headers: http::HeaderMap::new(),
        body: Bytes::from_static(RESPONSE.as_bytes()),
    };
    let record = Record {
        fingerprint,
        response: Some(response),
    };
    for i in 0..n {
        let key = match IdempotencyKey::parse(format!("prefill-{i}").as_bytes()) {
            Ok(key) => key,
            Err(error) => panic!("key: {error}"),
        };
        let digest = KeyDigest::new(&Scope::global(), &key);
        let lease = Duration::from_secs(30);
        if let Ok(ClaimOutcome::Claimed(token)) = store.claim(&digest, &fingerprint, lease).await {
            let _ = store
                .record(&digest, token, &record, Duration::from_secs(86_400))
                .await;
        }
    }
}

fn scenarios(c: &mut Criterion) {
    let runtime = current_thread();
    let body = json_body(1024);
    let other = json_body(1000);
    let bare = app().with_state(());
    let store = Arc::new(MemoryStore::new());
    let app = layered(store.clone());
    // Run to completion switched off: the same work, without the ability to
    // outlive a dropped request. Equal times mean requests that are not
    // dropped pay nothing for it.
    let no_completion =
        app_with(IdempotencyLayer::new(MemoryStore::new()).run_to_completion(false));
    runtime.block_on(async {
        prefill(&store, 1000).await;
        call(&app, request("/orders", Some("replayed"), &body)).await;
        call(&app, request("/orders", Some("mismatched"), &body)).await;
        // Held in flight for the whole run by a request that never ends.
        let holder = app.clone();
        let held = request("/hang", Some("in-flight"), &body);
        tokio::spawn(async move { call(&holder, held).await });
        tokio::task::yield_now().await;
    });
    compare(
        c,
        &runtime,
        "scenarios_1KiB",
        Scenario {
            name: "bare",
            app: &bare,
            make: &|_| request("/orders", None, &body),
        },
        &[
            Scenario {
                name: "no_key",
                app: &app,
                make: &|_| request("/orders", None, &body),
            },
            Scenario {
                name: "fresh",
                app: &app,
                make: &|_| request("/orders", Some(&fresh_key()), &body),
            },
            Scenario {
                name: "fresh_run_to_completion_off",
                app: &no_completion,
                make: &|_| request("/orders", Some(&fresh_key()), &body),
            },
            Scenario {
                name: "replay",
                app: &app,
                make: &|_| request("/orders", Some("replayed"), &body),
            },
            Scenario {
                name: "mismatch",
                app: &app,
                make: &|_| request("/orders", Some("mismatched"), &other),
            },
            Scenario {
                name: "in_flight",
                app: &app,
                make: &|_| request("/hang", Some("in-flight"), &body),
            },
        ],
    );
}

/// Joining on and off, for requests nobody joins: a response of one chunk,
/// and a streamed one of 20 chunks (where the layer looks for joiners at
/// each chunk). Equal times mean joining costs nothing until a joiner comes.
fn joining(c: &mut Criterion) {
    let runtime = current_thread();
    let body = json_body(1024);
    let streamed = || {
        post(|_body: Bytes| async {
            let events = (0..20)
                .map(|i| Ok::<_, std::convert::Infallible>(format!("data: {{\"index\":{i}}}\n\n")));
            Body::from_stream(futures_util::stream::iter(events))
        })
    };
    let with = |layer: Option<IdempotencyLayer<MemoryStore>>| {
        let router = app().route("/stream", streamed());
        match layer {
            Some(layer) => router.layer(layer).with_state(()),
            None => router.with_state(()),
        }
    };
    let bare = with(None);
    let off = with(Some(IdempotencyLayer::new(MemoryStore::new())));
    let on = with(Some(
        IdempotencyLayer::new(MemoryStore::new()).join_in_flight(Duration::from_secs(30)),
    ));
    for (group, path) in [("join_one_chunk", "/orders"), ("join_20_chunks", "/stream")] {
        compare(
            c,
            &runtime,
            group,
            Scenario {
                name: "bare",
                app: &bare,
                make: &|_| request(path, None, &body),
            },
            &[
                Scenario {
                    name: "fresh_join_off",
                    app: &off,
                    make: &|_| request(path, Some(&fresh_key()), &body),
                },
                Scenario {
                    name: "fresh_join_on",
                    app: &on,
                    make: &|_| request(path, Some(&fresh_key()), &body),
                },
            ],
        );
    }
}

/// The app behind the no-key floor.
fn identity_app() -> Router {
    app().layer(floor::identity_layer()).with_state(())
}

/// The layer beside the floor, per path, in one run: the ratios to the bare
/// router, and the layer's time above the floor's.
fn floor(c: &mut Criterion) {
    let runtime = current_thread();
    let body = json_body(1024);
    let bare = app().with_state(());
    let floor = floor_app("/orders", RESPONSE);
    let identity = identity_app();
    let layer = layered(Arc::new(MemoryStore::new()));
    runtime.block_on(async {
        call(&floor, request("/orders", Some("replayed"), &body)).await;
        call(&layer, request("/orders", Some("replayed"), &body)).await;
    });
    let means = compare(
        c,
        &runtime,
        "floor_1KiB",
        Scenario {
            name: "bare",
            app: &bare,
            make: &|_| request("/orders", None, &body),
        },
        &[
            Scenario {
                name: "floor_fresh",
                app: &floor,
                make: &|_| request("/orders", Some(&fresh_key()), &body),
            },
            Scenario {
                name: "layer_fresh",
                app: &layer,
                make: &|_| request("/orders", Some(&fresh_key()), &body),
            },
            Scenario {
                name: "floor_replay",
                app: &floor,
                make: &|_| request("/orders", Some("replayed"), &body),
            },
            Scenario {
                name: "layer_replay",
                app: &layer,
                make: &|_| request("/orders", Some("replayed"), &body),
            },
            Scenario {
                name: "identity_layer_no_key",
                app: &identity,
                make: &|_| request("/orders", None, &body),
            },
            Scenario {
                name: "layer_no_key",
                app: &layer,
                make: &|_| request("/orders", None, &body),
            },
        ],
    );
    for pair in means.chunks(2) {
        if let [(floor_name, floor), (layer_name, layer)] = pair {
            println!(
                "above the floor {layer_name}: {:.2} µs ({:.2} µs vs {floor_name} {:.2} µs)",
                (layer - floor) * 1e6,
                layer * 1e6,
                floor * 1e6
            );
        }
    }
}

fn body_sizes(c: &mut Criterion) {
    let runtime = current_thread();
    for (label, len) in [
        ("0B", 0),
        ("1KiB", 1024),
        ("64KiB", 64 * 1024),
        ("1MiB", 1024 * 1024),
    ] {
        let body = json_body(len);
        let bare = app().with_state(());
        let app = layered(Arc::new(MemoryStore::new()));
        runtime.block_on(call(&app, request("/orders", Some("replayed"), &body)));
        fresh_and_replay(c, &runtime, &format!("body_{label}"), &bare, &app, &body);
    }
}

fn store_sizes(c: &mut Criterion) {
    let runtime = current_thread();
    let body = json_body(1024);
    let bare = app().with_state(());
    for (label, n) in [("1k", 1_000), ("100k", 100_000), ("1M", 1_000_000)] {
        let store = Arc::new(MemoryStore::new());
        let app = layered(store.clone());
        runtime.block_on(async {
            prefill(&store, n).await;
            call(&app, request("/orders", Some("replayed"), &body)).await;
        });
        fresh_and_replay(
            c,
            &runtime,
            &format!("store_{label}_keys"),
            &bare,
            &app,
            &body,
        );
    }
}

/// 2 worker threads, 32 tasks sharing the requests of each sample.
fn concurrent(c: &mut Criterion) {
    const TASKS: u64 = 32;
    let runtime = two_workers();
    let body = json_body(1024);
    let bare = app().with_state(());
    let app = layered(Arc::new(MemoryStore::new()));
    let floor = floor_app("/orders", RESPONSE);
    let identity = identity_app();
    let identity_arc = support::app()
        .layer(floor::identity_arc_layer())
        .with_state(());
    let wrapping = support::app()
        .layer(tower_http::limit::RequestBodyLimitLayer::new(1 << 20))
        .with_state(());
    runtime.block_on(call(&app, request("/orders", Some("replayed"), &body)));
    runtime.block_on(call(&floor, request("/orders", Some("replayed"), &body)));
    let mut group = c.benchmark_group("concurrent_2_workers_32_tasks");
    let mut means: Vec<(&str, Mean)> = Vec::new();
    #[allow(unused_mut)]
    let mut cases: Vec<(&str, &Router, Option<&str>)> = vec![
        ("bare", &bare, None),
        ("no_key", &app, None),
        ("identity_layer_no_key", &identity, None),
        ("identity_arc_layer_no_key", &identity_arc, None),
        ("body_wrapping_layer_no_key", &wrapping, None),
        ("fresh", &app, Some("")),
        ("replay", &app, Some("replayed")),
        ("floor_fresh", &floor, Some("")),
        ("floor_replay", &floor, Some("replayed")),
    ];
    // With `--features axum`: the same layer keeping axum's own bodies.
    #[cfg(feature = "axum")]
    let axum_bodies = support::app()
        .layer(IdempotencyLayer::new(MemoryStore::new()).axum_bodies())
        .with_state(());
    #[cfg(feature = "axum")]
    {
        runtime.block_on(call(
            &axum_bodies,
            request("/orders", Some("replayed"), &body),
        ));
        cases.extend([
            ("no_key_axum_bodies", &axum_bodies, None),
            ("fresh_axum_bodies", &axum_bodies, Some("")),
            ("replay_axum_bodies", &axum_bodies, Some("replayed")),
        ]);
    }
    for (name, router, key) in cases {
        let mut mean = Mean::default();
        let (router, body) = (router.clone(), body.clone());
        let key = key.map(str::to_owned);
        let work = move || {
            let (router, body) = (router.clone(), body.clone());
            let key = match key.as_deref() {
                Some("") => Some(fresh_key()),
                other => other.map(str::to_owned),
            };
            async move { call(&router, request("/orders", key.as_deref(), &body)).await }
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| on_tasks(&runtime, TASKS, iters, &mut mean, &work))
        });
        means.push((name, mean));
    }
    group.finish();
    if means[0].1.iters == 0 {
        return;
    }
    let bare_secs = means[0].1.secs();
    for (name, mean) in &means[1..] {
        println!(
            "ratio concurrent/{name}: {:.2} x bare throughput",
            bare_secs / mean.secs()
        );
    }
}

/// The layer's fingerprint (SHA-256 over the framed request) against the
/// `sha2` crate hashing the same body alone.
fn fingerprinting(c: &mut Criterion) {
    let (parts, ()) = match Request::post("/orders?x=1").body(()) {
        Ok(request) => request.into_parts(),
        Err(error) => panic!("request: {error}"),
    };
    for (label, len) in [("1KiB", 1024), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let body = json_body(len);
        let mut group = c.benchmark_group(format!("sha256_{label}"));
        let (mut alone, mut ours) = (Mean::default(), Mean::default());
        group.bench_function("sha2_alone", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(Sha256::digest(std::hint::black_box(&body)));
                }
                alone.add(start.elapsed(), iters)
            })
        });
        group.bench_function("fingerprint", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(Fingerprint::of(&parts, std::hint::black_box(&body)));
                }
                ours.add(start.elapsed(), iters)
            })
        });
        group.finish();
        if alone.iters == 0 {
            continue;
        }
        println!(
            "ratio sha256_{label}/fingerprint: {:.3} x the time of sha2 alone",
            ours.secs() / alone.secs()
        );
    }
}

#[cfg(feature = "redis")]
fn redis_store(c: &mut Criterion) {
    use tower_idempotency::store::RedisStore;
    let runtime = current_thread();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("tower-idempotency-bench:{}:", std::process::id());
    let Ok(store) = runtime.block_on(RedisStore::connect(&url)) else {
        println!("skipping redis benches: no Redis at {url}");
        return;
    };
    let store = Arc::new(store.prefix(&prefix));
    let body = json_body(1024);
    let bare = app().with_state(());
    let app = layered_briefly(store);
    runtime.block_on(call(&app, request("/orders", Some("replayed"), &body)));
    // The baseline: a plain SET and GET pair from the same client.
    let mut connection = match runtime.block_on(async {
        let client = redis::Client::open(url.as_str())?;
        redis::aio::ConnectionManager::new(client).await
    }) {
        Ok(connection) => connection,
        Err(error) => panic!("redis: {error}"),
    };
    let mut group = c.benchmark_group("redis_set_get_pair");
    let mut pair = Mean::default();
    group.bench_function("set_get", |b| {
        b.iter_custom(|iters| {
            let elapsed = runtime.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let key = format!("{prefix}pair:{}", i % 1000);
                    let _: redis::RedisResult<()> = redis::cmd("SET")
                        .arg(&key)
                        .arg(RESPONSE)
                        .arg("PX")
                        .arg(60_000)
                        .query_async(&mut connection)
                        .await;
                    let _: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("GET")
                        .arg(&key)
                        .query_async(&mut connection)
                        .await;
                }
                start.elapsed()
            });
            pair.add(elapsed, iters)
        })
    });
    group.finish();
    fresh_and_replay(c, &runtime, "redis_1KiB", &bare, &app, &body);
    if pair.iters == 0 {
        return; // Filtered out by the command line.
    }
    // Against the SET+GET pair, the fresh and replay means measured just now.
    let measure = |name: &str, key: &dyn Fn() -> String| {
        let iters = 2000;
        let elapsed = runtime.block_on(async {
            let start = Instant::now();
            for _ in 0..iters {
                call(&app, request("/orders", Some(&key()), &body)).await;
            }
            start.elapsed()
        });
        let secs = elapsed.as_secs_f64() / f64::from(iters);
        println!(
            "ratio redis/{name}: {:.2} x the throughput of a SET+GET pair ({:.1} µs vs {:.1} µs)",
            pair.secs() / secs,
            secs * 1e6,
            pair.secs() * 1e6
        );
    };
    measure("fresh", &fresh_key);
    measure("replay", &|| "replayed".to_owned());
}

#[cfg(not(feature = "redis"))]
fn redis_store(_: &mut Criterion) {}

/// Fresh keys with 64 requests in flight on 2 workers: through the layer,
/// and the store's own claim and record (the same two scripts, one round
/// trip each) called straight from 64 tasks, in the same run.
#[cfg(feature = "redis")]
fn redis_in_flight(c: &mut Criterion) {
    use tower_idempotency::store::RedisStore;
    const TASKS: u64 = 64;
    let runtime = two_workers();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("tower-idempotency-bench:{}:flight:", std::process::id());
    let Ok(store) = runtime.block_on(RedisStore::connect(&url)) else {
        println!("skipping redis benches: no Redis at {url}");
        return;
    };
    let store = Arc::new(store.prefix(&prefix));
    let body = json_body(1024);
    let app = layered_briefly(Arc::clone(&store));
    let record = Record {
        fingerprint: Fingerprint::from_bytes([7; 32]),
        response: Some(RecordedResponse {
            status: StatusCode::CREATED,
            headers: http::HeaderMap::new(),
            body: Bytes::from_static(RESPONSE.as_bytes()),
        }),
    };
    let mut group = c.benchmark_group("redis_64_in_flight");
    let mut means: Vec<(&str, Mean)> = Vec::new();
    let through_layer = move || {
        let (app, body) = (app.clone(), body.clone());
        async move { call(&app, request("/orders", Some(&fresh_key()), &body)).await }
    };
    let straight = move || {
        let (store, record) = (Arc::clone(&store), record.clone());
        async move {
            let key = match IdempotencyKey::parse(fresh_key().as_bytes()) {
                Ok(key) => key,
                Err(error) => panic!("key: {error}"),
            };
            let digest = KeyDigest::new(&Scope::global(), &key);
            let lease = Duration::from_secs(30);
            if let Ok(ClaimOutcome::Claimed(token)) =
                store.claim(&digest, &record.fingerprint, lease).await
            {
                let _ = store.record(&digest, token, &record, REDIS_BENCH_TTL).await;
            }
        }
    };
    for name in ["store_claim_and_record", "layer_fresh"] {
        let mut mean = Mean::default();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                if name == "layer_fresh" {
                    on_tasks(&runtime, TASKS, iters, &mut mean, &through_layer)
                } else {
                    on_tasks(&runtime, TASKS, iters, &mut mean, &straight)
                }
            })
        });
        means.push((name, mean));
    }
    group.finish();
    if let [(_, raw), (_, layer)] = &means[..]
        && raw.iters > 0
        && layer.iters > 0
    {
        println!(
            "ratio redis_64_in_flight/layer_fresh: {:.2} x the store's own claim and record ({:.1} µs vs {:.1} µs per request)",
            raw.secs() / layer.secs(),
            layer.secs() * 1e6,
            raw.secs() * 1e6
        );
    }
}

#[cfg(not(feature = "redis"))]
fn redis_in_flight(_: &mut Criterion) {}

#[cfg(feature = "postgres")]
fn postgres_store(c: &mut Criterion) {
    use tower_idempotency::store::PostgresStore;
    let runtime = current_thread();
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let table = format!("ti_bench_{}", std::process::id());
    let store = runtime.block_on(async {
        let store = PostgresStore::connect(&url)
            .await
            .ok()?
            .table(&table)
            .ok()?;
        store.migrate().await.ok()?;
        Some(store)
    });
    let Some(store) = store else {
        println!("skipping postgres benches: no PostgreSQL at {url}");
        return;
    };
    let body = json_body(1024);
    let bare = app().with_state(());
    let app = layered(Arc::new(store));
    runtime.block_on(call(&app, request("/orders", Some("replayed"), &body)));
    fresh_and_replay(c, &runtime, "postgres_1KiB", &bare, &app, &body);
    runtime.block_on(async {
        if let Ok((client, connection)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await
        {
            tokio::spawn(connection);
            let _ = client
                .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
                .await;
        }
    });
}

#[cfg(not(feature = "postgres"))]
fn postgres_store(_: &mut Criterion) {}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = scenarios, floor, joining, body_sizes, store_sizes, concurrent, fingerprinting, redis_store, redis_in_flight, postgres_store
}
criterion_main!(benches);
