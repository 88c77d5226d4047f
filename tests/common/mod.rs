//! Helpers shared by the behaviour tests.
#![allow(dead_code, unreachable_pub)]

pub mod example;
pub mod fed;
pub mod load;
pub mod logs;
pub mod replicas;
pub mod sse;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_idempotency::store::{
    ClaimOutcome, FencingToken, KeyDigest, Record, Store, StoreError, StoreErrorKind, WaitSettled,
};
use tower_idempotency::{Fingerprint, IdempotencyLayer, MemoryStore};

/// Counts how many times a handler ran.
#[derive(Clone, Default)]
pub struct Runs(Arc<AtomicUsize>);

impl Runs {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// Counts one run; returns its number, from 1.
    pub fn add(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// A `POST` handler that counts its runs: `answer` gets the run's number
/// (from 1) and makes the response. Mount it on any path, add any layer.
pub fn counted_post<F, Fut>(answer: F) -> (MethodRouter, Runs)
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output: IntoResponse> + Send + 'static,
{
    let runs = Runs::default();
    let handler_runs = runs.clone();
    let handler = post(move || answer(handler_runs.add()));
    (handler, runs)
}

/// An app whose `POST /orders` creates an order numbered by its run, echoing the
/// body, with headers that show what a replay keeps and drops.
pub fn orders_app<St: Store>(layer: IdempotencyLayer<St>) -> (Router, Runs) {
    let runs = Runs::default();
    let handler_runs = runs.clone();
    let app = Router::new()
        .route(
            "/orders",
            post(move |body: Bytes| {
                let runs = handler_runs.clone();
                async move {
                    let n = runs.add();
                    let mut body_out = format!("order {n}: ").into_bytes();
                    body_out.extend_from_slice(&body);
                    let mut headers = HeaderMap::new();
                    headers.insert(header::LOCATION, format!("/orders/{n}").parse().unwrap());
                    headers.insert(header::SET_COOKIE, "session=s3cret".parse().unwrap());
                    headers.append(header::VARY, "accept".parse().unwrap());
                    headers.append(header::VARY, "accept-encoding".parse().unwrap());
                    (StatusCode::CREATED, headers, body_out)
                }
            })
            .get(|| async { "listing" })
            .put(move || async { "put" }),
        )
        .layer(layer);
    (app, runs)
}

/// A request with a method, path, optional key and body.
pub fn request(method: &str, uri: &str, key: Option<&str>, body: impl Into<Body>) -> Request {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    builder.body(body.into()).unwrap()
}

pub fn post_json(key: &str, body: &'static str) -> Request {
    request("POST", "/orders", Some(key), body)
}

/// A response read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn is_replay(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }

    /// Asserts a problem+json answer with `status` and `code`.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/problem+json",
            "{self:?}"
        );
        let doc: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        assert_eq!(doc["code"], code, "{self:?}");
        assert_eq!(doc["status"], status);
    }
}

pub async fn read<B>(response: http::Response<B>) -> Answer
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn send(app: &Router, request: Request) -> Answer {
    let response: Response = app.clone().oneshot(request).await.unwrap().into_response();
    read(response).await
}

/// A store that fails or hangs on demand, wrapping a memory store.
#[derive(Debug, Clone, Default)]
pub struct FaultyStore {
    pub inner: MemoryStore,
    pub mode: Arc<std::sync::Mutex<Fault>>,
    /// Calls of `record`, failed ones included.
    pub record_attempts: Arc<AtomicUsize>,
    /// Calls of `renew`, failed ones included.
    pub renew_attempts: Arc<AtomicUsize>,
    /// Calls of `wait_settled`.
    pub waits: Arc<AtomicUsize>,
    /// Told on every call of `wait_settled`.
    pub waited: Arc<tokio::sync::Notify>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Fault {
    #[default]
    None,
    /// Every call fails.
    Fail,
    /// Every call hangs until cancelled.
    Hang,
    /// Claims work; records fail.
    FailRecords,
    /// Everything works but renewals fail: an owner that can no longer keep
    /// its lease, like a crashed replica.
    FailRenewals,
}

impl FaultyStore {
    pub fn set(&self, fault: Fault) {
        *self.mode.lock().unwrap() = fault;
    }

    async fn gate(&self, call: Call) -> Result<(), StoreError> {
        let mode = *self.mode.lock().unwrap();
        match (mode, call) {
            (Fault::None, _)
            | (Fault::FailRecords, Call::Other | Call::Renew)
            | (Fault::FailRenewals, Call::Other | Call::Record) => Ok(()),
            (Fault::Fail | Fault::FailRecords | Fault::FailRenewals, _) => {
                Err(StoreError::with_source(
                    StoreErrorKind::Unavailable,
                    std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "injected"),
                ))
            }
            (Fault::Hang, _) => std::future::pending().await,
        }
    }
}

#[derive(Clone, Copy)]
enum Call {
    Record,
    Renew,
    Other,
}

impl Store for FaultyStore {
    async fn claim(
        &self,
        key: &KeyDigest,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        self.gate(Call::Other).await?;
        self.inner.claim(key, fingerprint, lease).await
    }

    async fn record(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        record: &Record,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.record_attempts.fetch_add(1, Ordering::SeqCst);
        self.gate(Call::Record).await?;
        self.inner.record(key, token, record, ttl).await
    }

    async fn release(&self, key: &KeyDigest, token: FencingToken) -> Result<(), StoreError> {
        self.gate(Call::Other).await?;
        self.inner.release(key, token).await
    }

    async fn renew(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        lease: Duration,
    ) -> Result<(), StoreError> {
        self.renew_attempts.fetch_add(1, Ordering::SeqCst);
        self.gate(Call::Renew).await?;
        self.inner.renew(key, token, lease).await
    }

    async fn wait_settled(
        &self,
        key: &KeyDigest,
        max: Duration,
    ) -> Result<WaitSettled, StoreError> {
        self.waits.fetch_add(1, Ordering::SeqCst);
        self.waited.notify_one();
        self.gate(Call::Other).await?;
        self.inner.wait_settled(key, max).await
    }
}

/// Lets spawned release tasks run: yields to the scheduler a few times.
pub async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// A handler that waits to be let go: it signals `started`, then waits for
/// `finish`, then answers 201 with a body numbered by its run.
#[derive(Clone, Default)]
pub struct Gate {
    pub started: Arc<tokio::sync::Notify>,
    pub finish: Arc<tokio::sync::Notify>,
}

pub fn gated_app<St: Store>(layer: IdempotencyLayer<St>) -> (Router, Runs, Gate) {
    let gate = Gate::default();
    let handler_gate = gate.clone();
    let (handler, runs) = counted_post(move |n| {
        let gate = handler_gate.clone();
        async move {
            gate.started.notify_one();
            gate.finish.notified().await;
            (StatusCode::CREATED, format!("order {n}"))
        }
    });
    let app = Router::new().route("/orders", handler).layer(layer);
    (app, runs, gate)
}

/// A body fed through a channel: frames arrive when the test sends them, like
/// a handler streaming its output.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(http_body::Frame::data(chunk))))
    }
}

/// A request body of several chunks without a declared length.
pub fn chunked_body(chunks: Vec<Bytes>) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel(chunks.len().max(1));
    for chunk in chunks {
        tx.try_send(chunk).unwrap();
    }
    Body::new(ChannelBody(rx))
}

/// A store that only claims, records, releases and renews: waiting falls back
/// to the trait's default, polling with backoff, as for a networked store.
#[derive(Debug, Clone, Default)]
pub struct PollingStore(pub MemoryStore);

impl Store for PollingStore {
    async fn claim(
        &self,
        key: &KeyDigest,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        self.0.claim(key, fingerprint, lease).await
    }

    async fn record(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        record: &Record,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.0.record(key, token, record, ttl).await
    }

    async fn release(&self, key: &KeyDigest, token: FencingToken) -> Result<(), StoreError> {
        self.0.release(key, token).await
    }

    async fn renew(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        lease: Duration,
    ) -> Result<(), StoreError> {
        self.0.renew(key, token, lease).await
    }
}

/// `POST /orders` whose first run signals `started`, waits for `finish` and
/// answers `first_status`; later runs answer 201 at once. Bodies: `owner {n}`.
pub fn first_run_blocks<St: Store>(
    layer: IdempotencyLayer<St>,
    first_status: StatusCode,
) -> (Router, Runs, Gate) {
    let gate = Gate::default();
    let handler_gate = gate.clone();
    let (handler, runs) = counted_post(move |n| {
        let gate = handler_gate.clone();
        async move {
            if n > 1 {
                return (StatusCode::CREATED, format!("owner {n}"));
            }
            gate.started.notify_one();
            gate.finish.notified().await;
            (first_status, format!("owner {n}"))
        }
    });
    let app = Router::new().route("/orders", handler).layer(layer);
    (app, runs, gate)
}

/// A key no other test (or test run) uses.
pub fn unique_key(name: &str) -> KeyDigest {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let scope = tower_idempotency::Scope::new(format!("{name}-{}-{nanos}", std::process::id()));
    KeyDigest::new(
        &scope,
        &tower_idempotency::IdempotencyKey::parse(b"test").unwrap(),
    )
}

/// A response using every byte value and a multi-valued header.
pub fn sample_response() -> tower_idempotency::store::RecordedResponse {
    let mut headers = HeaderMap::new();
    headers.insert("location", http::HeaderValue::from_static("/orders/1"));
    headers.append("vary", http::HeaderValue::from_static("accept"));
    headers.append("vary", http::HeaderValue::from_static("accept-encoding"));
    headers.insert(
        "x-opaque",
        http::HeaderValue::from_bytes(b"\x80\xff raw").unwrap(),
    );
    tower_idempotency::store::RecordedResponse {
        status: StatusCode::CREATED,
        headers,
        body: Bytes::from((0..=255u8).cycle().take(4096).collect::<Vec<_>>()),
    }
}

/// The digest the layer gives `key` in the global scope.
pub fn global_digest(key: &str) -> KeyDigest {
    KeyDigest::new(
        &tower_idempotency::Scope::global(),
        &tower_idempotency::IdempotencyKey::parse(key.as_bytes()).unwrap(),
    )
}
