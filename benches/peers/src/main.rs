//! tower-idempotency beside its peers, in one run: the same axum app (a
//! handler that reads the 1 KiB JSON body and answers 201 with 109 bytes),
//! the same requests, 32 tokio tasks on a runtime of 2 workers, in process
//! (`Router::oneshot`, no sockets). Every ratio is a throughput over the bare
//! router's, measured in the same round right before; the table shows the
//! median of the rounds.
//!
//! ```text
//! cargo run --release --ignore-rust-version                 # 5 rounds of 1 s per cell
//! cargo run --release --ignore-rust-version -- 3 0.5        # 3 rounds of 0.5 s
//! cargo run --release --ignore-rust-version -- 1 0.2 10000  # a quick look: 10 000 keys, not 1M
//! ```
//!
//! `PEERS_ONLY="floor,tower-idempotency"` runs bare and the apps named
//! (`PEERS_ONLY="floor;tower-idempotency, axum_bodies()"`: semicolons, for a
//! name with a comma).
//!
//! Resident bytes per record are measured in a child process per app (the
//! same binary, `memory NAME N`), so that no app runs on memory another one
//! freed.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::BodyExt;
use tower::ServiceExt;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The crate's own bench support: the floor, and the same 1 KiB JSON body.
#[path = "../../support/floor.rs"]
mod floor;
#[path = "../../support/app.rs"]
mod support;

fn json_body() -> Bytes {
    support::json_body(1024)
}

/// The handler's answer: exactly 109 bytes.
const RESPONSE: &str = r#"{"id":12345,"status":"created","amount":1999,"currency":"eur","note":"a benchmark order of 109 bytes in all"}"#;
const TASKS: usize = 32;
/// Records made in "fresh with 1M keys stored", and in the memory count
/// (the third argument, if given).
const MANY: u64 = 1_000_000;
/// How long an app may take to make them (the slow ones stop short).
const MANY_BUDGET: Duration = Duration::from_secs(120);

/// An app under test.
#[derive(Clone)]
struct App {
    name: &'static str,
    router: Router,
    /// A session cookie every request carries (axum-idempotent needs one).
    cookie: Option<HeaderValue>,
}

fn handler() -> Router {
    Router::new().route(
        "/orders",
        post(|_body: Bytes| async { (StatusCode::CREATED, RESPONSE) }),
    )
}

const NAMES: [&str; 9] = [
    "bare",
    "floor",
    "identity layer",
    "identity layer with an Arc",
    "tower-idempotency",
    "tower-idempotency, axum_bodies()",
    "idempotent 2.0",
    "axum-idempotent 0.6",
    "rustango 0.62",
];

/// Builds the app called `name`, each peer with its defaults except where
/// noted in BENCHMARKS.md (a key header for axum-idempotent, raised caps for
/// rustango's cache).
async fn app(name: &'static str) -> App {
    let plain = |router: Router| App {
        name,
        // As `axum::serve` does: without it a router rebuilds its routes,
        // layers and all, on every call.
        router: router.with_state(()),
        cookie: None,
    };
    match name {
        "bare" => plain(handler()),
        // The least any idempotency layer must do (`benches/support/floor.rs`);
        // its router answers a request without a key itself.
        "floor" => App {
            name,
            router: floor::floor_app("/orders", RESPONSE),
            cookie: None,
        },
        // What any layer costs in axum: the no-key floor.
        "identity layer" => plain(handler().layer(floor::identity_layer())),
        // What a layer with shared state costs in axum, which clones it (and
        // its `Arc`) for every request.
        "identity layer with an Arc" => plain(handler().layer(floor::identity_arc_layer())),
        "tower-idempotency" => plain(handler().layer(tower_idempotency::IdempotencyLayer::new(
            tower_idempotency::MemoryStore::new(),
        ))),
        "tower-idempotency, axum_bodies()" => plain(
            handler().layer(
                tower_idempotency::IdempotencyLayer::new(tower_idempotency::MemoryStore::new())
                    .axum_bodies(),
            ),
        ),
        "idempotent 2.0" => {
            let store = idempotent::memory::MemoryStore::builder()
                .try_build()
                .expect("idempotent's memory store");
            plain(handler().layer(idempotent::middleware::IdempotencyLayer::new(store)))
        }
        "axum-idempotent 0.6" => axum_idempotent_app().await,
        "rustango 0.62" => {
            use rustango::idempotency::IdempotencyRouterExt;
            // Caps raised: by default the cache holds 100 000 entries and
            // 256 MiB, and would evict records in the middle of the run.
            let cache = rustango::cache::InMemoryCache::new()
                .with_max_entries(0)
                .with_max_bytes(0);
            let layer = rustango::idempotency::IdempotencyLayer::new(Arc::new(cache));
            plain(handler().idempotency(layer))
        }
        other => panic!("no app {other}"),
    }
}

/// axum-idempotent keeps its records in the client's session: the app has
/// ruts' session layer (moka store) and tower-cookies, and every request
/// carries the cookie of one session made first.
async fn axum_idempotent_app() -> App {
    use ruts::store::moka::MokaStore;
    use ruts::{CookieOptions, Session, SessionLayer};
    let store = Arc::new(MokaStore::builder().build());
    let options = axum_idempotent::IdempotentOptions::default()
        .use_idempotency_key_header(Some("Idempotency-Key"), false);
    let router = handler()
        .route(
            "/session",
            post(|session: Session<MokaStore>| async move {
                let ttl = ruts::store::Ttl::new(3600).expect("ttl");
                session
                    .set("user", &String::from("bench"), ttl, None)
                    .await
                    .expect("session");
                "session"
            }),
        )
        .layer(axum_idempotent::IdempotentLayer::<MokaStore>::new(options))
        .layer(
            SessionLayer::new(store).with_cookie_options(
                CookieOptions::build()
                    .name("session")
                    .max_age(3600)
                    .path("/"),
            ),
        )
        .layer(tower_cookies::CookieManagerLayer::new())
        .with_state(());
    let response = router
        .clone()
        .oneshot(
            Request::post("/session")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("session request");
    let cookie = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .find(|cookie| cookie.as_bytes().starts_with(b"session="))
        .and_then(|cookie| cookie.to_str().ok())
        .and_then(|cookie| cookie.split(';').next())
        .and_then(|pair| HeaderValue::from_str(pair).ok())
        .expect("a session cookie");
    App {
        name: "axum-idempotent 0.6",
        router,
        cookie: Some(cookie),
    }
}

/// What the requests of a cell carry.
#[derive(Clone, Copy, PartialEq)]
enum Key {
    None,
    Fresh,
    Replayed,
}

static FRESH: AtomicU64 = AtomicU64::new(0);

fn request(app: &App, key: Key, body: &Bytes) -> Request<Body> {
    let mut builder = Request::post("/orders").header(header::CONTENT_TYPE, "application/json");
    match key {
        Key::None => {}
        Key::Fresh => {
            let n = FRESH.fetch_add(1, Ordering::Relaxed);
            builder = builder.header("idempotency-key", format!("fresh-{n}"));
        }
        Key::Replayed => builder = builder.header("idempotency-key", "replayed"),
    }
    if let Some(cookie) = &app.cookie {
        builder = builder.header(header::COOKIE, cookie.clone());
    }
    builder.body(Body::from(body.clone())).expect("request")
}

/// Sends one request and reads the answer; its status.
async fn call(app: &App, key: Key, body: &Bytes) -> StatusCode {
    let response = app
        .router
        .clone()
        .oneshot(request(app, key, body))
        .await
        .expect("infallible");
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

/// Requests per second from `TASKS` tasks sending for `length`; also stops
/// at `limit` requests in all. Each task reads the clock itself (a timer of
/// the runtime's would wait for a worker to park, and 32 busy tasks never
/// let one).
async fn throughput(app: &App, key: Key, body: &Bytes, length: Duration, limit: u64) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (app, body, done) = (app.clone(), body.clone(), done.clone());
            tokio::spawn(async move {
                while start.elapsed() < length && done.load(Ordering::Relaxed) < limit {
                    call(&app, key, &body).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let n = done.load(Ordering::Relaxed);
    (n as f64 / start.elapsed().as_secs_f64(), n)
}

/// Whether app `name` runs: all of them, or bare and those named in
/// `PEERS_ONLY`, to see one app without the others' heaps. The names are
/// separated by commas, or by semicolons if there is one (a name may hold a
/// comma: "tower-idempotency, axum_bodies()").
fn chosen(name: &str) -> bool {
    match std::env::var("PEERS_ONLY") {
        Ok(only) => {
            let separator = if only.contains(';') { ';' } else { ',' };
            name == "bare" || only.split(separator).any(|one| one.trim() == name)
        }
        Err(_) => true,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Resident memory of this process, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The child process: makes up to `n` records on app `name` (within the
/// budget), prints resident bytes per record and how many it made.
fn memory(name: &str, n: u64) {
    let runtime = runtime();
    runtime.block_on(async {
        let name = NAMES
            .into_iter()
            .find(|known| *known == name)
            .expect("app name");
        let app = app(name).await;
        let body = json_body();
        call(&app, Key::Fresh, &body).await;
        let before = resident_bytes();
        let (_, made) = throughput(&app, Key::Fresh, &body, MANY_BUDGET, n).await;
        let after = resident_bytes();
        println!("{} {made}", after.saturating_sub(before) / made.max(1));
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("memory") {
        let n = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(MANY);
        return memory(args.get(1).map_or("", String::as_str), n);
    }
    let rounds: usize = args.first().and_then(|n| n.parse().ok()).unwrap_or(5);
    let length = Duration::from_secs_f64(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1.0));
    let many: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(MANY);
    let runtime = runtime();
    let body = json_body();
    let apps: Vec<App> = runtime.block_on(async {
        let mut apps = Vec::new();
        for name in NAMES.into_iter().filter(|name| chosen(name)) {
            eprintln!("{name}: recording the replayed key");
            let app = app(name).await;
            let status = call(&app, Key::Replayed, &body).await;
            assert_eq!(status, StatusCode::CREATED, "{name}: first request");
            apps.push(app);
        }
        apps
    });
    let scenarios = [
        ("no key", Key::None),
        ("fresh key", Key::Fresh),
        ("replay", Key::Replayed),
    ];
    // ratios[scenario][app]
    let mut ratios = vec![vec![Vec::new(); apps.len()]; scenarios.len() + 1];
    runtime.block_on(async {
        for round in 0..rounds {
            for (s, (label, key)) in scenarios.iter().enumerate() {
                let (bare, _) = throughput(&apps[0], Key::None, &body, length, u64::MAX).await;
                for (a, app) in apps.iter().enumerate().skip(1) {
                    let (rate, _) = throughput(app, *key, &body, length, u64::MAX).await;
                    eprintln!(
                        "  {label} {}: {rate:.0}/s ({:.3} x bare)",
                        app.name,
                        rate / bare
                    );
                    ratios[s][a].push(rate / bare);
                }
                eprintln!("round {round}: {label} done");
            }
        }
        // Fresh keys again, once each app holds a million records.
        let mut reached = vec![0; apps.len()];
        for (a, app) in apps.iter().enumerate().skip(1) {
            let (_, made) = throughput(app, Key::Fresh, &body, MANY_BUDGET, many).await;
            reached[a] = made;
            eprintln!("{}: {made} records made for the 1M cell", app.name);
        }
        for _ in 0..rounds {
            let (bare, _) = throughput(&apps[0], Key::None, &body, length, u64::MAX).await;
            for (a, app) in apps.iter().enumerate().skip(1) {
                let (rate, _) = throughput(app, Key::Fresh, &body, length, u64::MAX).await;
                ratios[scenarios.len()][a].push(rate / bare);
            }
        }
        print_table(&apps, &scenarios, &ratios, &reached, many);
    });
    drop(runtime);
    println!();
    println!("| resident bytes per record (1 KiB request, 109-byte response) | records made |");
    println!("| --- | --- |");
    let exe = std::env::current_exe().expect("own path");
    // The identity layers record nothing.
    for name in NAMES[1..]
        .iter()
        .filter(|name| !name.starts_with("identity layer") && chosen(name))
    {
        let output = Command::new(&exe)
            .args(["memory", name, &many.to_string()])
            .output();
        let line = output
            .ok()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_default();
        let mut parts = line.split_whitespace();
        let bytes = parts.next().unwrap_or("?");
        let made = parts.next().unwrap_or("?");
        println!("| {name}: {bytes} | {made} |");
    }
}

fn print_table(
    apps: &[App],
    scenarios: &[(&str, Key)],
    ratios: &[Vec<Vec<f64>>],
    reached: &[u64],
    many: u64,
) {
    print!("| path |");
    for app in &apps[1..] {
        print!(" {} |", app.name);
    }
    println!();
    print!("| --- |");
    for _ in &apps[1..] {
        print!(" --- |");
    }
    println!();
    let labels = scenarios
        .iter()
        .map(|(label, _)| label.to_string())
        .chain(std::iter::once(format!("fresh with {many} keys stored")));
    for (s, label) in labels.enumerate() {
        print!("| {label} |");
        for a in 1..apps.len() {
            let ratio = median(ratios[s][a].clone());
            if s == scenarios.len() && reached[a] < many {
                print!(" {ratio:.3} ({} keys) |", reached[a]);
            } else {
                print!(" {ratio:.3} |");
            }
        }
        println!();
    }
}
