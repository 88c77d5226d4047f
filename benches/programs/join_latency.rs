//! Joining a response in flight, measured: the delay between the original
//! producing a chunk and a joiner receiving it (in one process, and across
//! two replicas through Redis), and the memory 100 joiners of one stream
//! take (growth of the resident set).
//!
//! ```text
//! cargo bench --bench join_latency                      # in process, memory
//! cargo bench --bench join_latency --features redis     # and through Redis (REDIS_URL)
//! ```
//!
//! Each chunk carries the time it was produced (nanoseconds since a shared
//! start); a joiner reads it when the chunk arrives and keeps the delay.
//! Chunks are produced every millisecond, 2000 per run.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;
use tower::{Layer, ServiceExt};
use tower_idempotency::server::{RequestBody, ResponseBody};
use tower_idempotency::{IdempotencyLayer, MemoryStore, Store};

/// The process's resident set, from `/proc/self/status` (0 where there is
/// none).
fn resident_bytes() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kib| kib.split_whitespace().next()?.parse::<i64>().ok())
        .map_or(0, |kib| kib * 1024)
}

static START: LazyLock<Instant> = LazyLock::new(Instant::now);

const CHUNKS: usize = 2000;
const CHUNK_LEN: usize = 64;

/// A body fed by a channel.
struct Fed(mpsc::UnboundedReceiver<Bytes>);

impl http_body::Body for Fed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

type Service =
    tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<ResponseBody<Fed>>, Infallible>;

/// A service whose response body is fed through the sender it hands out.
fn service<St: Store>(
    layer: IdempotencyLayer<St>,
) -> (
    Service,
    mpsc::UnboundedReceiver<mpsc::UnboundedSender<Bytes>>,
) {
    let (feeders, fed) = mpsc::unbounded_channel();
    let handler = tower::service_fn(move |_: Request<RequestBody<Full<Bytes>>>| {
        let (feeder, chunks) = mpsc::unbounded_channel();
        let _ = feeders.send(feeder);
        async move { Ok::<_, Infallible>(Response::new(Fed(chunks))) }
    });
    (
        tower::util::BoxCloneSyncService::new(layer.layer(handler)),
        fed,
    )
}

fn request(key: &str) -> Request<Full<Bytes>> {
    match Request::post("/v1/generations")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from_static(b"{}")))
    {
        Ok(request) => request,
        Err(error) => panic!("request: {error}"),
    }
}

/// A chunk stamped with the time it is made.
fn stamped() -> Bytes {
    let mut chunk = vec![b' '; CHUNK_LEN];
    let nanos = START.elapsed().as_nanos() as u64;
    chunk[..8].copy_from_slice(&nanos.to_be_bytes());
    Bytes::from(chunk)
}

fn made_at(chunk: &[u8]) -> Duration {
    let mut stamp = [0; 8];
    stamp.copy_from_slice(&chunk[..8]);
    Duration::from_nanos(u64::from_be_bytes(stamp))
}

fn delay_of(chunk: &[u8]) -> Duration {
    START.elapsed().saturating_sub(made_at(chunk))
}

/// The delays of one run: the original produces every millisecond, read by
/// its own client; the joiner joins after the first chunk.
async fn run(
    owner: Service,
    mut feeders: mpsc::UnboundedReceiver<mpsc::UnboundedSender<Bytes>>,
    joiner: Service,
    key: &str,
) -> Vec<Duration> {
    let Ok(original) = owner.oneshot(request(key)).await;
    let Some(feeder) = feeders.recv().await else {
        panic!("no run started");
    };
    let reader = tokio::spawn(async move {
        let mut body = original.into_body();
        while let Some(Ok(_)) = body.frame().await {}
    });
    let producer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        for _ in 0..CHUNKS {
            tick.tick().await;
            let _ = feeder.send(stamped());
        }
    });
    // The joiner gets its head with the next chunk the original makes.
    let Ok(joined) = joiner.oneshot(request(key)).await;
    assert_eq!(joined.headers()["idempotent-replayed"], "true");
    let joined_at = START.elapsed();
    let mut body = joined.into_body();
    let mut delays = Vec::with_capacity(CHUNKS);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            panic!("the joined body broke off");
        };
        if let Ok(data) = frame.into_data() {
            for chunk in data.chunks(CHUNK_LEN) {
                // Chunks made before the joiner came are no delay of joining.
                if made_at(chunk) >= joined_at {
                    delays.push(delay_of(chunk));
                }
            }
        }
    }
    let _ = producer.await;
    let _ = reader.await;
    delays.sort();
    delays
}

fn report(label: &str, delays: &[Duration]) {
    let at = |q: f64| delays[((delays.len() as f64 * q) as usize).min(delays.len() - 1)];
    println!(
        "{label}: {} chunks, delay p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        delays.len(),
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        at(1.0).as_secs_f64() * 1e6,
    );
}

/// Live bytes after 100 joiners caught up with a stream of 64 KiB, against
/// the same stream with none.
async fn memory_of_100_joiners() {
    let layer = IdempotencyLayer::new(MemoryStore::new()).join_in_flight(Duration::from_secs(30));
    let (service, mut feeders) = service(layer);
    let Ok(original) = service.clone().oneshot(request("memory")).await;
    let Some(feeder) = feeders.recv().await else {
        panic!("no run started");
    };
    let mut body = original.into_body();
    let chunk = Bytes::from(vec![b'x'; 1024]);
    for _ in 0..64 {
        let _ = feeder.send(chunk.clone());
        let _ = body.frame().await;
    }
    let before = resident_bytes();
    let mut produced = 64 * 1024;
    let joiners: Vec<_> = (0..100)
        .map(|_| tokio::spawn(service.clone().oneshot(request("memory"))))
        .collect();
    // Joiners get their heads with the next chunk: produce until all have.
    while !joiners.iter().all(tokio::task::JoinHandle::is_finished) {
        let _ = feeder.send(chunk.clone());
        let _ = body.frame().await;
        produced += chunk.len();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut bodies = Vec::new();
    for joiner in joiners {
        let Ok(Ok(response)) = joiner.await else {
            panic!("a joiner failed");
        };
        let mut joined_body = response.into_body();
        let mut received = 0;
        while received < produced {
            match joined_body.frame().await {
                Some(Ok(frame)) => received += frame.into_data().map_or(0, |d| d.len()),
                _ => panic!("a joined body ended early"),
            }
        }
        bodies.push(joined_body);
    }
    let after = resident_bytes();
    let per_joiner = (after - before) / 100;
    println!(
        "memory: 100 joiners of a {} KiB stream, caught up: resident set grew {} bytes, {per_joiner} per joiner (a copy each would be {:.1} MB)",
        produced / 1024,
        after - before,
        (produced * 100) as f64 / 1e6
    );
    drop(bodies);
    drop(feeder);
    while let Some(Ok(_)) = body.frame().await {}
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read.
    LazyLock::force(&START);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("runtime: {error}"),
    };
    runtime.block_on(async {
        let layer =
            IdempotencyLayer::new(MemoryStore::new()).join_in_flight(Duration::from_secs(30));
        let (service, feeders) = service(layer);
        let delays = run(service.clone(), feeders, service, "in-process").await;
        report("in process (memory store)", &delays);
        memory_of_100_joiners().await;
        #[cfg(feature = "redis")]
        redis(Duration::from_millis(5)).await;
        #[cfg(feature = "redis")]
        redis(Duration::from_millis(1)).await;
    });
}

/// Two replicas in one process: two stores on one Redis, each with its own
/// layer (so they share no memory), the original on one, the joiner on the
/// other.
#[cfg(feature = "redis")]
async fn redis(poll: Duration) {
    use tower_idempotency::store::RedisStore;
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!(
        "tower-idempotency-bench:join:{}:",
        START.elapsed().as_nanos()
    );
    let connect = || async {
        match RedisStore::connect(&url).await {
            Ok(store) => store.prefix(prefix.clone()).join_poll_interval(poll),
            Err(error) => panic!("Redis at {url}: {error}"),
        }
    };
    let bound = Duration::from_secs(30);
    let (one, feeders) = service(IdempotencyLayer::new(connect().await).join_in_flight(bound));
    let (two, _) = service(IdempotencyLayer::new(connect().await).join_in_flight(bound));
    let delays = run(one, feeders, two, "across").await;
    report(
        &format!("across replicas through Redis, poll every {poll:?}"),
        &delays,
    );
}
