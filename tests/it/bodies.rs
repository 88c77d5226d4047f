//! Request buffering and limits, and responses streamed and recorded.

use std::convert::Infallible;

use crate::common::{
    ChannelBody, Runs, chunked_body, counted_post, orders_app, post_json, read, request, send,
};
use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Service, ServiceExt};
use tower_idempotency::server::RequestBody;
use tower_idempotency::{IdempotencyLayer, MemoryStore};

#[tokio::test]
async fn a_body_over_the_limit_with_content_length_gets_413_without_running() {
    let (app, runs) = orders_app(IdempotencyLayer::new(MemoryStore::new()).request_body_limit(8));
    let answer = send(&app, post_json("k1", "0123456789")).await;
    answer.assert_problem(413, "idempotency_request_too_large");
    assert_eq!(runs.count(), 0);
    // At the limit is fine.
    assert_eq!(
        send(&app, post_json("k2", "01234567")).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_gets_413_without_running() {
    let (app, runs) = orders_app(IdempotencyLayer::new(MemoryStore::new()).request_body_limit(8));
    let chunks = vec![Bytes::from_static(b"01234"), Bytes::from_static(b"56789")];
    let answer = send(
        &app,
        request("POST", "/orders", Some("k1"), chunked_body(chunks)),
    )
    .await;
    answer.assert_problem(413, "idempotency_request_too_large");
    assert_eq!(runs.count(), 0);
}

#[tokio::test]
async fn a_lying_content_length_is_caught_while_reading() {
    let (app, runs) = orders_app(IdempotencyLayer::new(MemoryStore::new()).request_body_limit(8));
    let chunks = vec![Bytes::from_static(b"01234"), Bytes::from_static(b"56789")];
    let mut request = request("POST", "/orders", Some("k1"), chunked_body(chunks));
    request
        .headers_mut()
        .insert("content-length", "4".parse().unwrap());
    send(&app, request)
        .await
        .assert_problem(413, "idempotency_request_too_large");
    assert_eq!(runs.count(), 0);
}

#[tokio::test]
async fn the_handler_receives_the_request_byte_for_byte() {
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = received.clone();
    let app = axum::Router::new()
        .route(
            "/upload",
            axum::routing::post(move |headers: http::HeaderMap, body: Bytes| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push((headers, body));
                    StatusCode::CREATED
                }
            }),
        )
        .layer(IdempotencyLayer::new(MemoryStore::new()));
    // 1 MiB exactly (the default limit), every byte value, in chunks.
    let body: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let chunks = body.chunks(100_000).map(Bytes::copy_from_slice).collect();
    let request = Request::post("/upload?x=1")
        .header("idempotency-key", "big")
        .header("x-custom", "kept")
        .body(chunked_body(chunks))
        .unwrap();
    assert_eq!(send(&app, request).await.status, StatusCode::CREATED);
    let received = received.lock().unwrap();
    let (headers, bytes) = &received[0];
    assert_eq!(bytes.as_ref(), body.as_slice());
    assert_eq!(headers["x-custom"], "kept");
    assert_eq!(headers["idempotency-key"], "big");
}

/// A tower service whose response streams from a channel the test controls.
fn streaming_service(
    runs: Runs,
    senders: tokio::sync::mpsc::UnboundedSender<tokio::sync::mpsc::Sender<Bytes>>,
) -> impl Service<
    Request<RequestBody<Body>>,
    Response = Response<ChannelBody>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |_request: Request<RequestBody<Body>>| {
        let (runs, senders) = (runs.clone(), senders.clone());
        async move {
            runs.add();
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            senders.send(tx).unwrap();
            Ok::<_, Infallible>(Response::new(ChannelBody(rx)))
        }
    })
}

#[tokio::test]
async fn a_streamed_response_reaches_the_client_chunk_by_chunk_and_replays_whole() {
    let runs = Runs::default();
    let (senders, mut handles) = tokio::sync::mpsc::unbounded_channel();
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let service = tower::Layer::layer(&layer, streaming_service(runs.clone(), senders));

    let response = service.clone().oneshot(post_json("k1", "a")).await.unwrap();
    let producer = handles.recv().await.unwrap();
    let mut body = response.into_body();
    for chunk in ["one ", "two ", "three"] {
        producer.send(Bytes::from(chunk)).await.unwrap();
        // The client sees each chunk before the next is produced.
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), chunk);
    }
    drop(producer);
    assert!(body.frame().await.is_none());

    // Sent right after the end: the record is already there.
    let replay = read(service.clone().oneshot(post_json("k1", "a")).await.unwrap()).await;
    assert!(replay.is_replay());
    assert_eq!(replay.body, "one two three");
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn a_response_over_the_record_limit_is_delivered_whole_and_not_replayable() {
    let (app, runs) =
        orders_app(IdempotencyLayer::new(MemoryStore::new()).response_record_limit(16));
    let body = "x".repeat(100);
    let first = send(&app, request("POST", "/orders", Some("k1"), body.clone())).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body, format!("order 1: {body}"));
    let retry = send(&app, request("POST", "/orders", Some("k1"), body.clone())).await;
    retry.assert_problem(409, "idempotency_response_not_replayable");
    // A different request under the tombstoned key is still a mismatch.
    let other = send(&app, post_json("k1", "other")).await;
    other.assert_problem(409, "idempotency_key_payload_mismatch");
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn a_streamed_response_over_the_record_limit_leaves_a_tombstone() {
    let runs = Runs::default();
    let (senders, mut handles) = tokio::sync::mpsc::unbounded_channel();
    let layer = IdempotencyLayer::new(MemoryStore::new()).response_record_limit(5);
    let service = tower::Layer::layer(&layer, streaming_service(runs.clone(), senders));
    let response = service.clone().oneshot(post_json("k1", "a")).await.unwrap();
    let producer = handles.recv().await.unwrap();
    tokio::spawn(async move {
        for chunk in ["abc", "def", "ghi"] {
            producer.send(Bytes::from(chunk)).await.unwrap();
        }
    });
    let first = read(response).await;
    assert_eq!(first.body, "abcdefghi");
    let retry = read(service.clone().oneshot(post_json("k1", "a")).await.unwrap()).await;
    retry.assert_problem(409, "idempotency_response_not_replayable");
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn without_run_to_completion_a_dropped_body_releases_the_claim() {
    let runs = Runs::default();
    let (senders, mut handles) = tokio::sync::mpsc::unbounded_channel();
    let store = std::sync::Arc::new(MemoryStore::new());
    let layer = IdempotencyLayer::from_shared_store(store.clone()).run_to_completion(false);
    let service = tower::Layer::layer(&layer, streaming_service(runs.clone(), senders));
    let response = service.clone().oneshot(post_json("k1", "a")).await.unwrap();
    let producer = handles.recv().await.unwrap();
    producer.send(Bytes::from("partial")).await.unwrap();
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    crate::common::settle().await;
    assert!(store.is_empty(), "the claim was released, nothing recorded");

    let retry = service.clone().oneshot(post_json("k1", "a")).await.unwrap();
    assert!(retry.headers().get("idempotent-replayed").is_none());
    assert_eq!(runs.count(), 2);
}

#[tokio::test]
async fn an_empty_response_is_recorded_and_replayed() {
    let (handler, runs) = counted_post(|_| async { (StatusCode::NO_CONTENT, [("x-thing", "7")]) });
    let app = axum::Router::new()
        .route("/things", handler)
        .layer(IdempotencyLayer::new(MemoryStore::new()));
    let first = send(&app, request("POST", "/things", Some("k"), "")).await;
    assert_eq!(first.status, StatusCode::NO_CONTENT);
    let retry = send(&app, request("POST", "/things", Some("k"), "")).await;
    assert!(retry.is_replay());
    assert_eq!(retry.status, StatusCode::NO_CONTENT);
    assert_eq!(retry.headers["x-thing"], "7");
    assert!(retry.body.is_empty());
    assert_eq!(runs.count(), 1);
}

/// A request body that fails after its first chunk, like a client that hangs
/// up mid-upload.
struct BrokenBody(bool);

impl http_body::Body for BrokenBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let first = std::mem::replace(&mut self.0, false);
        std::task::Poll::Ready(Some(if first {
            Ok(http_body::Frame::data(Bytes::from_static(b"{\"par")))
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "client gone",
            ))
        }))
    }
}

#[tokio::test]
async fn a_request_body_that_fails_gets_400_and_nothing_is_stored() {
    let store = std::sync::Arc::new(MemoryStore::new());
    let (app, runs) = orders_app(IdempotencyLayer::from_shared_store(store.clone()));
    let request = request("POST", "/orders", Some("k1"), Body::new(BrokenBody(true)));
    send(&app, request)
        .await
        .assert_problem(400, "idempotency_request_body_unreadable");
    assert_eq!(runs.count(), 0);
    assert!(store.is_empty());
}

#[tokio::test]
async fn the_record_is_made_before_the_client_has_the_last_byte() {
    // A body of known length: the client has the whole response as soon as the
    // last data frame arrives, without waiting for the end of the stream.
    let runs = Runs::default();
    let service_runs = runs.clone();
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let service = tower::Layer::layer(
        &layer,
        tower::service_fn(move |_: Request<RequestBody<Body>>| {
            let runs = service_runs.clone();
            async move {
                runs.add();
                let body = http_body_util::Full::new(Bytes::from_static(b"all of it"));
                Ok::<_, Infallible>(Response::new(body))
            }
        }),
    );
    let response = service.clone().oneshot(post_json("k1", "a")).await.unwrap();
    let mut body = response.into_body();
    let last = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(last, "all of it");
    // Not polled to its end yet: the retry must already replay.
    let retry = read(service.clone().oneshot(post_json("k1", "a")).await.unwrap()).await;
    assert!(retry.is_replay(), "{retry:?}");
    assert_eq!(retry.body, "all of it");
    assert_eq!(runs.count(), 1);
    assert!(body.frame().await.is_none());
}

/// Two chunks with an exact size hint, that only says it ended when polled
/// past its last chunk (as many streaming bodies do).
struct KnownLength(std::collections::VecDeque<Bytes>, u64);

impl http_body::Body for KnownLength {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|c| Ok(http_body::Frame::data(c))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.1)
    }
}

#[tokio::test]
async fn with_a_known_length_the_record_precedes_the_last_chunk() {
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let service = tower::Layer::layer(
        &layer,
        tower::service_fn(|_: Request<RequestBody<Body>>| async {
            let chunks = [Bytes::from_static(b"first "), Bytes::from_static(b"last")];
            Ok::<_, Infallible>(Response::new(KnownLength(chunks.into(), 10)))
        }),
    );
    let response = service.clone().oneshot(post_json("k1", "a")).await.unwrap();
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    // Before the last chunk: still in flight.
    let early = read(service.clone().oneshot(post_json("k1", "a")).await.unwrap()).await;
    early.assert_problem(409, "idempotency_key_in_progress");
    // With the last chunk (10 bytes in all), the client has everything: recorded.
    body.frame().await.unwrap().unwrap();
    let retry = read(service.clone().oneshot(post_json("k1", "a")).await.unwrap()).await;
    assert!(retry.is_replay());
    assert_eq!(retry.body, "first last");
}
