//! Joining a response in flight: a retry of a streaming response gets the
//! same stream, live, from its first byte, and sees the original's break.
//!
//! The service streams a body fed chunk by chunk by the test, so every
//! interleaving here is chosen, not timed: a joiner is known to be waiting
//! once the store has been asked to wait for it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use tokio::sync::mpsc;
use tower::ServiceExt;
use tower_idempotency::server::{JoinInterrupted, RequestBody, ResponseBody};
use tower_idempotency::{IdempotencyLayer, Outcome, Store};

use crate::common::fed::{Chunk, FedBody, generation, next, rest};
use crate::common::{FaultyStore, Runs, global_digest, settle};

/// The streaming service under test and what the test drives it with.
struct Generations {
    store: FaultyStore,
    runs: Runs,
    /// One feeder per run, in the order the runs start.
    feeders: mpsc::UnboundedReceiver<mpsc::UnboundedSender<Chunk>>,
    /// Statuses the next runs answer with (200 once they run out).
    statuses: Arc<Mutex<VecDeque<StatusCode>>>,
    /// A run answering with a status from `statuses` waits for this first.
    answer: Arc<tokio::sync::Notify>,
    joined: Arc<std::sync::atomic::AtomicUsize>,
}

type Generate = tower::util::BoxCloneSyncService<
    Request<Full<Bytes>>,
    Response<ResponseBody<FedBody>>,
    Infallible,
>;

fn generations(
    layer: impl FnOnce(IdempotencyLayer<FaultyStore>) -> IdempotencyLayer<FaultyStore>,
) -> (Generate, Generations) {
    let store = FaultyStore::default();
    let runs = Runs::default();
    let joined = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (feeders_tx, feeders) = mpsc::unbounded_channel();
    let statuses = Arc::new(Mutex::new(VecDeque::new()));
    let answer = Arc::new(tokio::sync::Notify::new());
    let handler = {
        let (runs, statuses, answer) = (runs.clone(), Arc::clone(&statuses), Arc::clone(&answer));
        tower::service_fn(move |_: Request<RequestBody<Full<Bytes>>>| {
            let run = runs.add();
            let (feeder, chunks) = mpsc::unbounded_channel();
            feeders_tx.send(feeder).unwrap();
            let status = statuses.lock().unwrap().pop_front();
            let answer = Arc::clone(&answer);
            async move {
                if status.is_some() {
                    answer.notified().await;
                }
                let status = status.unwrap_or(StatusCode::OK);
                let response = Response::builder()
                    .status(status)
                    .header(header::CONTENT_TYPE, "text/event-stream")
                    .header(header::SET_COOKIE, "session=secret")
                    .header("x-run", run)
                    .body(FedBody(chunks))
                    .unwrap();
                Ok::<_, Infallible>(response)
            }
        })
    };
    let counted = Arc::clone(&joined);
    let layer = layer(
        IdempotencyLayer::new(store.clone())
            .join_in_flight(Duration::from_secs(60))
            .on_outcome(move |report| {
                if report.outcome == Outcome::Joined {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            }),
    );
    let service = tower::Layer::layer(&layer, handler);
    let harness = Generations {
        store,
        runs,
        feeders,
        statuses,
        answer,
        joined,
    };
    (tower::util::BoxCloneSyncService::new(service), harness)
}

impl Generations {
    /// The feeder of the run that just started.
    async fn feeder(&mut self) -> mpsc::UnboundedSender<Chunk> {
        self.feeders.recv().await.unwrap()
    }

    /// Waits until `n` requests in all have been told to wait for the key.
    async fn waiting(&self, n: usize) {
        while self.store.waits.load(Ordering::SeqCst) < n {
            self.store.waited.notified().await;
        }
    }
}

/// Starts the original response for `key`: its body, and the sender that
/// feeds it.
async fn start(
    service: &Generate,
    harness: &mut Generations,
    key: &str,
) -> (ResponseBody<FedBody>, mpsc::UnboundedSender<Chunk>) {
    let original = service.clone().oneshot(generation(key)).await.unwrap();
    (original.into_body(), harness.feeder().await)
}

/// Starts a joiner of `key` and waits until it waits on the key.
async fn join(
    service: &Generate,
    harness: &Generations,
    key: &str,
    nth: usize,
) -> tokio::task::JoinHandle<Response<ResponseBody<FedBody>>> {
    let joiner = tokio::spawn(service.clone().oneshot(generation(key)));
    let joiner = tokio::spawn(async move { joiner.await.unwrap().unwrap() });
    harness.waiting(nth).await;
    joiner
}

async fn chunk(body: &mut ResponseBody<FedBody>) -> Bytes {
    next(body).await.unwrap().unwrap()
}

fn data(text: &'static str) -> Chunk {
    Ok(Bytes::from_static(text.as_bytes()))
}

/// Asserts a joined head: the original status and recordable headers,
/// marked as replayed.
#[track_caller]
fn assert_joined_head(response: &Response<ResponseBody<FedBody>>, run: &str) {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    assert_eq!(response.headers()["x-run"], run);
    assert!(!response.headers().contains_key(header::SET_COOKIE));
}

#[tokio::test(start_paused = true)]
async fn a_joiner_at_the_first_byte_gets_every_chunk_live() {
    let (service, mut harness) = generations(|layer| layer);
    let original = service.clone().oneshot(generation("k1")).await.unwrap();
    let feeder = harness.feeder().await;
    let mut original = original.into_body();
    let joiner = join(&service, &harness, "k1", 1).await;
    feeder.send(data("data: 0\n\n")).unwrap();
    assert_eq!(chunk(&mut original).await, "data: 0\n\n");
    let joined = joiner.await.unwrap();
    assert_joined_head(&joined, "1");
    let mut joined = joined.into_body();
    assert_eq!(chunk(&mut joined).await, "data: 0\n\n");
    // Live: the joiner has nothing more until the service produces it.
    let mut pending = Box::pin(next(&mut joined));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(pending.as_mut().poll(&mut cx).is_pending());
    feeder.send(data("data: 1\n\n")).unwrap();
    assert_eq!(chunk(&mut original).await, "data: 1\n\n");
    assert_eq!(pending.await.unwrap().unwrap(), "data: 1\n\n");
    drop(feeder);
    assert!(next(&mut original).await.is_none());
    assert!(next(&mut joined).await.is_none());
    assert_eq!(harness.runs.count(), 1);
    assert_eq!(harness.joined.load(Ordering::SeqCst), 1);
    // And a retry after the end replays the same bytes.
    let replay = service.clone().oneshot(generation("k1")).await.unwrap();
    assert_eq!(
        rest(replay.into_body()).await.unwrap(),
        "data: 0\n\ndata: 1\n\n"
    );
}

#[tokio::test(start_paused = true)]
async fn a_joiner_mid_stream_gets_what_was_produced_at_once_then_the_rest() {
    let (service, mut harness) = generations(|layer| layer);
    let (mut original, feeder) = start(&service, &mut harness, "k1").await;
    for event in ["a", "b", "c"] {
        feeder.send(data(event)).unwrap();
        chunk(&mut original).await;
    }
    let joiner = join(&service, &harness, "k1", 1).await;
    feeder.send(data("d")).unwrap();
    assert_eq!(chunk(&mut original).await, "d");
    let mut joined = joiner.await.unwrap().into_body();
    // Everything so far is there without the service producing more.
    for event in ["a", "b", "c", "d"] {
        assert_eq!(chunk(&mut joined).await, event);
    }
    feeder.send(data("e")).unwrap();
    drop(feeder);
    assert_eq!(rest(original).await.unwrap(), "e");
    assert_eq!(rest(joined).await.unwrap(), "e");
    assert_eq!(harness.runs.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_joiner_at_the_last_chunk_gets_the_whole_body() {
    let (service, mut harness) = generations(|layer| layer);
    let (mut original, feeder) = start(&service, &mut harness, "k1").await;
    for event in ["a", "b"] {
        feeder.send(data(event)).unwrap();
        chunk(&mut original).await;
    }
    let joiner = join(&service, &harness, "k1", 1).await;
    feeder.send(data("last")).unwrap();
    drop(feeder);
    assert_eq!(rest(original).await.unwrap(), "last");
    let joined = joiner.await.unwrap();
    assert_joined_head(&joined, "1");
    assert_eq!(rest(joined.into_body()).await.unwrap(), "ablast");
}

#[tokio::test(start_paused = true)]
async fn a_joiner_racing_the_end_gets_the_whole_body_by_join_or_replay() {
    // The joiner arrives at every point around the original's end: while the
    // last chunk goes out, while the record is made, after it. Each time it
    // gets the whole body, never a truncated one.
    let (service, mut harness) = generations(|layer| layer);
    for offset in 0..24 {
        let key = format!("k{offset}");
        let mut original = service
            .clone()
            .oneshot(generation(&key))
            .await
            .unwrap()
            .into_body();
        let feeder = harness.feeder().await;
        feeder.send(data("a")).unwrap();
        chunk(&mut original).await;
        feeder.send(data("b")).unwrap();
        drop(feeder);
        let reader = tokio::spawn(rest(original));
        for _ in 0..offset {
            tokio::task::yield_now().await;
        }
        let joined = service.clone().oneshot(generation(&key)).await.unwrap();
        assert_eq!(joined.status(), StatusCode::OK, "offset {offset}");
        assert_eq!(joined.headers()["idempotent-replayed"], "true");
        assert_eq!(
            rest(joined.into_body()).await.unwrap(),
            "ab",
            "offset {offset}"
        );
        assert_eq!(reader.await.unwrap().unwrap(), "b");
    }
    assert_eq!(harness.runs.count(), 24);
}

#[tokio::test(start_paused = true)]
async fn a_hundred_joiners_share_one_stream() {
    let (service, mut harness) = generations(|layer| layer);
    let (mut original, feeder) = start(&service, &mut harness, "k1").await;
    feeder.send(data("a")).unwrap();
    chunk(&mut original).await;
    let joiners: Vec<_> = (0..100)
        .map(|_| {
            let joiner = service.clone().oneshot(generation("k1"));
            tokio::spawn(async move { rest(joiner.await.unwrap().into_body()).await.unwrap() })
        })
        .collect();
    harness.waiting(100).await;
    for event in ["b", "c"] {
        feeder.send(data(event)).unwrap();
        chunk(&mut original).await;
    }
    drop(feeder);
    assert!(next(&mut original).await.is_none());
    for joiner in joiners {
        assert_eq!(joiner.await.unwrap(), "abc");
    }
    assert_eq!(harness.runs.count(), 1);
    assert_eq!(harness.joined.load(Ordering::SeqCst), 100);
}

#[tokio::test(start_paused = true)]
async fn an_original_failing_mid_stream_cuts_every_joiner_and_the_retry_runs_again() {
    let (service, mut harness) = generations(|layer| layer);
    let (mut original, feeder) = start(&service, &mut harness, "k1").await;
    feeder.send(data("a")).unwrap();
    chunk(&mut original).await;
    let first = join(&service, &harness, "k1", 1).await;
    let second = join(&service, &harness, "k1", 2).await;
    feeder.send(data("b")).unwrap();
    chunk(&mut original).await;
    let mut first = first.await.unwrap().into_body();
    let second = second.await.unwrap().into_body();
    assert_eq!(chunk(&mut first).await, "a");
    feeder
        .send(Err(std::io::Error::other("model crashed")))
        .unwrap();
    assert!(next(&mut original).await.unwrap().is_err());
    // The part read so far stands, then the cut: never a clean end.
    assert_eq!(chunk(&mut first).await, "b");
    let error = next(&mut first).await.unwrap().unwrap_err();
    let cut = error
        .downcast_ref::<JoinInterrupted>()
        .expect("a JoinInterrupted");
    assert!(!cut.is_too_large());
    let error = rest(second).await.unwrap_err();
    assert!(error.downcast_ref::<JoinInterrupted>().is_some());
    // The claim was released: the next retry runs the service again.
    settle().await;
    let retry = service.clone().oneshot(generation("k1")).await.unwrap();
    assert!(!retry.headers().contains_key("idempotent-replayed"));
    assert_eq!(retry.headers()["x-run"], "2");
    assert_eq!(harness.runs.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn joiners_keep_receiving_after_the_original_client_drops() {
    let (service, mut harness) = generations(|layer| layer);
    let (mut original, feeder) = start(&service, &mut harness, "k1").await;
    let events: Vec<Bytes> = (0..10)
        .map(|i| Bytes::from(format!("data: {i}\n\n")))
        .collect();
    feeder.send(Ok(events[0].clone())).unwrap();
    chunk(&mut original).await;
    let joiner = join(&service, &harness, "k1", 1).await;
    for event in &events[1..5] {
        feeder.send(Ok(event.clone())).unwrap();
        chunk(&mut original).await;
    }
    // The original client reads 5 events and goes away.
    drop(original);
    let joined = joiner.await.unwrap();
    let reader = tokio::spawn(rest(joined.into_body()));
    for event in &events[5..] {
        feeder.send(Ok(event.clone())).unwrap();
    }
    drop(feeder);
    assert_eq!(reader.await.unwrap().unwrap(), events.concat());
    assert_eq!(harness.runs.count(), 1);
    // The drained original was recorded too.
    let replay = service.clone().oneshot(generation("k1")).await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(rest(replay.into_body()).await.unwrap(), events.concat());
}

#[tokio::test(start_paused = true)]
async fn a_response_outgrowing_the_limit_cuts_joiners_and_later_ones_get_409() {
    let (service, mut harness) = generations(|layer| layer.response_record_limit(8));
    let (mut original, feeder) = start(&service, &mut harness, "k1").await;
    feeder.send(data("1234")).unwrap();
    chunk(&mut original).await;
    let joiner = join(&service, &harness, "k1", 1).await;
    feeder.send(data("5678")).unwrap();
    chunk(&mut original).await;
    let mut joined = joiner.await.unwrap().into_body();
    assert_eq!(chunk(&mut joined).await, "1234");
    assert_eq!(chunk(&mut joined).await, "5678");
    feeder.send(data("9")).unwrap();
    assert_eq!(
        chunk(&mut original).await,
        "9",
        "the original is delivered whole"
    );
    let error = next(&mut joined).await.unwrap().unwrap_err();
    assert!(
        error
            .downcast_ref::<JoinInterrupted>()
            .unwrap()
            .is_too_large()
    );
    // A retry now, while it still streams: not replayable, at once.
    let late = service.clone().oneshot(generation("k1")).await.unwrap();
    assert_eq!(late.status(), StatusCode::CONFLICT);
    let late = rest(late.into_body()).await.unwrap();
    assert!(String::from_utf8_lossy(&late).contains("idempotency_response_not_replayable"));
    drop(feeder);
    assert!(next(&mut original).await.is_none());
    let after = service.clone().oneshot(generation("k1")).await.unwrap();
    assert_eq!(after.status(), StatusCode::CONFLICT);
    assert_eq!(harness.runs.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_cuts_the_joiners() {
    let lease = Duration::from_secs(3);
    let (service, mut harness) = generations(|layer| layer.lease(lease));
    let (mut original, feeder) = start(&service, &mut harness, "k1").await;
    feeder.send(data("a")).unwrap();
    chunk(&mut original).await;
    let joiner = join(&service, &harness, "k1", 1).await;
    feeder.send(data("b")).unwrap();
    chunk(&mut original).await;
    let joined = joiner.await.unwrap().into_body();
    let reader = tokio::spawn(rest(joined));
    // The key passes to nobody: the next renewal finds it gone.
    assert!(
        harness
            .store
            .inner
            .forget(&global_digest("k1"))
            .await
            .unwrap()
    );
    let original = tokio::spawn(async move { next(&mut original).await.map(|c| c.is_ok()) });
    tokio::time::sleep(lease).await;
    let error = reader.await.unwrap().unwrap_err();
    assert!(error.downcast_ref::<JoinInterrupted>().is_some(), "{error}");
    // The original's own client still gets its stream.
    feeder.send(data("c")).unwrap();
    assert_eq!(original.await.unwrap(), Some(true));
}

#[tokio::test(start_paused = true)]
async fn a_waiting_joiner_of_a_response_not_recorded_runs_the_service_itself() {
    let (service, mut harness) = generations(|layer| layer);
    // The first run answers 503 (not recorded), once the test lets it.
    harness
        .statuses
        .lock()
        .unwrap()
        .push_back(StatusCode::SERVICE_UNAVAILABLE);
    let original = tokio::spawn(service.clone().oneshot(generation("k1")));
    let _first = harness.feeder().await;
    let joiner = join(&service, &harness, "k1", 1).await;
    harness.answer.notify_one();
    let original = original.await.unwrap().unwrap();
    assert_eq!(original.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The key was released: the joiner claimed it and ran the service.
    let joined = joiner.await.unwrap();
    assert_eq!(joined.status(), StatusCode::OK);
    assert_eq!(joined.headers()["x-run"], "2");
    assert!(!joined.headers().contains_key("idempotent-replayed"));
    drop(harness.feeder().await);
    assert_eq!(rest(joined.into_body()).await.unwrap(), "");
    assert_eq!(harness.runs.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn another_request_under_a_streaming_key_gets_a_mismatch_not_the_stream() {
    let (service, mut harness) = generations(|layer| layer);
    let (mut original, feeder) = start(&service, &mut harness, "k1").await;
    feeder.send(data("a")).unwrap();
    chunk(&mut original).await;
    let other = Request::post("/v1/generations")
        .header("idempotency-key", "k1")
        .body(Full::new(Bytes::from_static(b"{\"prompt\":\"milk\"}")))
        .unwrap();
    let answer = service.clone().oneshot(other).await.unwrap();
    assert_eq!(answer.status(), StatusCode::CONFLICT);
    let body = rest(answer.into_body()).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("idempotency_key_payload_mismatch"));
    assert_eq!(harness.joined.load(Ordering::SeqCst), 0);
    drop(feeder);
}

#[tokio::test(start_paused = true)]
async fn a_joiner_of_a_silent_original_gets_the_head_at_its_next_lease_renewal() {
    // Renewals every second: the original's body is polled then, and hands
    // the waiting joiner what it has, without producing anything new.
    let (service, mut harness) = generations(|layer| layer.lease(Duration::from_secs(3)));
    let original = service.clone().oneshot(generation("k1")).await.unwrap();
    let feeder = harness.feeder().await;
    let mut original = original.into_body();
    feeder.send(data("a")).unwrap();
    chunk(&mut original).await;
    let reader = tokio::spawn(async move { rest(original).await });
    let joiner = join(&service, &harness, "k1", 1).await;
    let waited = tokio::time::Instant::now();
    let joined = joiner.await.unwrap();
    assert_joined_head(&joined, "1");
    assert!(
        waited.elapsed() <= Duration::from_secs(1),
        "{:?}",
        waited.elapsed()
    );
    let mut joined = joined.into_body();
    assert_eq!(chunk(&mut joined).await, "a");
    drop(feeder);
    assert!(next(&mut joined).await.is_none());
    assert_eq!(reader.await.unwrap().unwrap(), "");
}
