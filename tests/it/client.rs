//! The client side: `SetIdempotencyKeyLayer` outside `RetryLayer(RetryPolicy)`,
//! against our own server layer, over a real socket and in process.

use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{counted_post, orders_app, post_json, read, send};
use axum::Router;
use axum::body::Body;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::retry::{Retry, RetryLayer};
use tower::util::BoxCloneService;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_idempotency::client::{RetryPolicy, SentKey, SetIdempotencyKey, SetIdempotencyKeyLayer};
use tower_idempotency::{IdempotencyLayer, MemoryStore};

/// One attempt as a transport saw it: its key and the status answered.
type Attempt = (Option<HeaderValue>, StatusCode);

/// What a transport saw, attempt by attempt.
#[derive(Clone, Default)]
struct Attempts(Arc<Mutex<Vec<Attempt>>>);

impl Attempts {
    fn push(&self, key: Option<HeaderValue>, status: StatusCode) {
        self.0.lock().unwrap().push((key, status));
    }

    fn keys(&self) -> Vec<Option<HeaderValue>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(key, _)| key.clone())
            .collect()
    }

    fn statuses(&self) -> Vec<StatusCode> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, status)| *status)
            .collect()
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// The stack under test: the key layer outside the retry layer.
fn client_over<T>(transport: T, policy: RetryPolicy) -> SetIdempotencyKey<Retry<RetryPolicy, T>> {
    ServiceBuilder::new()
        .layer(SetIdempotencyKeyLayer::new())
        .layer(RetryLayer::new(policy))
        .service(transport)
}

/// An in-process transport.
type InProcess = BoxCloneService<Request<String>, Response<Body>, Infallible>;

/// A transport that hands requests straight to `app` and notes each attempt.
fn in_process(app: Router, attempts: Attempts) -> InProcess {
    BoxCloneService::new(service_fn(move |request: Request<String>| {
        let (app, attempts) = (app.clone(), attempts.clone());
        async move {
            let key = request.headers().get("idempotency-key").cloned();
            let response = app.oneshot(request.map(Body::from)).await?;
            attempts.push(key, response.status());
            Ok(response)
        }
    }))
}

/// The stack under test over `app` in process (default policy), and what its
/// transport saw.
fn client_of(app: Router) -> (SetIdempotencyKey<Retry<RetryPolicy, InProcess>>, Attempts) {
    let attempts = Attempts::default();
    let client = client_over(in_process(app, attempts.clone()), RetryPolicy::new());
    (client, attempts)
}

/// A transport that answers every attempt with `status` (and `Retry-After`,
/// if given) without a server behind it.
fn answering(
    status: StatusCode,
    retry_after: Option<&'static str>,
    attempts: Attempts,
) -> impl Service<Request<String>, Response = Response<String>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |request: Request<String>| {
        attempts.push(request.headers().get("idempotency-key").cloned(), status);
        let mut response = Response::builder().status(status);
        if let Some(seconds) = retry_after {
            response = response.header("retry-after", seconds);
        }
        std::future::ready(Ok(response.body(String::new()).unwrap()))
    })
}

fn post_order(key: Option<&str>, body: &str) -> Request<String> {
    let mut request = Request::post("/orders");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.body(body.to_owned()).unwrap()
}

/// Serves `app` over HTTP/1.1 on `listener`, noting each request's key. With
/// `drop_first`, the first request runs to the end (handler and recording),
/// and then its connection is dropped without an answer: the client cannot
/// tell whether the order was made.
fn serve(listener: TcpListener, app: Router, attempts: Attempts, drop_first: bool) -> String {
    let addr = listener.local_addr().unwrap();
    let dropped = Arc::new(AtomicBool::new(!drop_first));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (app, attempts, dropped) = (app.clone(), attempts.clone(), dropped.clone());
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let (app, attempts, dropped) = (app.clone(), attempts.clone(), dropped.clone());
                async move {
                    let key = request.headers().get("idempotency-key").cloned();
                    let Ok(response) = app.oneshot(request.map(Body::new)).await;
                    let (parts, body) = response.into_parts();
                    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
                    attempts.push(key, parts.status);
                    if !dropped.swap(true, Ordering::SeqCst) {
                        return Err(io::Error::other("dropped after the handler ran"));
                    }
                    Ok(Response::from_parts(parts, Full::new(body)))
                }
            });
            tokio::spawn(async move {
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                // The dropped connection ends in an error, by design.
                let _ = connection.await;
            });
        }
    });
    format!("http://{addr}")
}

async fn serve_dropping_first_answer(app: Router, attempts: Attempts) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(listener, app, attempts, true)
}

#[tokio::test]
async fn a_dropped_connection_is_retried_under_one_key_and_the_handler_runs_once() {
    let (app, runs) = orders_app(IdempotencyLayer::new(MemoryStore::new()));
    let attempts = Attempts::default();
    let base = serve_dropping_first_answer(app, attempts.clone()).await;
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let policy = RetryPolicy::new().backoff(Duration::from_millis(1), Duration::from_millis(10));
    let client = client_over(http, policy);

    let request = Request::post(format!("{base}/orders"))
        .body(Full::new(Bytes::from_static(b"tea")))
        .unwrap();
    let response = client.oneshot(request).await.unwrap();

    let key = response.extensions().get::<SentKey>().cloned().unwrap();
    let answer = read(response).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert!(answer.is_replay(), "the second attempt replays the first");
    assert_eq!(answer.body, "order 1: tea");
    assert_eq!(runs.count(), 1, "the handler ran once");
    let sent = Some(key.header_value().clone());
    assert_eq!(
        attempts.keys(),
        [sent.clone(), sent],
        "one key on both attempts"
    );
    assert!(key.is_generated());
}

#[tokio::test]
async fn a_refused_connection_is_retried_until_the_server_is_up() {
    // A free port, nobody listening on it yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = Arc::new(tokio::sync::Notify::new());
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let transport = service_fn({
        let refused = refused.clone();
        move |request: Request<Full<Bytes>>| {
            let (http, refused) = (http.clone(), refused.clone());
            async move {
                let result = http.request(request).await;
                if let Err(error) = &result {
                    assert!(error.is_connect(), "{error:?}");
                    refused.notify_one();
                }
                result
            }
        }
    });
    // At least 100 ms between attempts: time to start the server.
    let policy = RetryPolicy::new().backoff(Duration::from_millis(200), Duration::from_millis(400));
    let client = client_over(transport, policy);
    let call = tokio::spawn(
        client.oneshot(
            Request::post(format!("http://{addr}/orders"))
                .body(Full::new(Bytes::from_static(b"tea")))
                .unwrap(),
        ),
    );

    refused.notified().await;
    let (app, runs) = orders_app(IdempotencyLayer::new(MemoryStore::new()));
    let attempts = Attempts::default();
    serve(
        TcpListener::bind(addr).await.unwrap(),
        app,
        attempts.clone(),
        false,
    );
    let response = call.await.unwrap().unwrap();

    let key = response.extensions().get::<SentKey>().cloned().unwrap();
    let answer = read(response).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.body, "order 1: tea");
    assert_eq!(runs.count(), 1);
    assert_eq!(attempts.keys(), [Some(key.header_value().clone())]);
}

#[tokio::test(start_paused = true)]
async fn an_in_progress_409_is_waited_out_for_its_retry_after_then_replayed() {
    let (handler, runs) = counted_post(|n| async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        (StatusCode::CREATED, format!("order {n}"))
    });
    let app = Router::new()
        .route("/orders", handler)
        .layer(IdempotencyLayer::new(MemoryStore::new()));
    // Another attempt of the same action is already running on the server.
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k-1", "tea")).await }
    });
    while runs.count() == 0 {
        tokio::task::yield_now().await;
    }

    let (client, attempts) = client_of(app);
    let started = Instant::now();
    let response = client
        .oneshot(post_order(Some("k-1"), "tea"))
        .await
        .unwrap();
    let waited = started.elapsed();

    let answer = read(response).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert!(answer.is_replay());
    assert_eq!(answer.body, "order 1");
    assert_eq!(
        attempts.statuses(),
        [StatusCode::CONFLICT, StatusCode::CREATED]
    );
    assert!(waited >= Duration::from_secs(1), "waited {waited:?}");
    assert!(waited < Duration::from_millis(1100), "waited {waited:?}");
    assert_eq!(runs.count(), 1);
    assert_eq!(first.await.unwrap().body, "order 1");
}

#[tokio::test]
async fn a_payload_mismatch_is_not_retried() {
    let (app, runs) = orders_app(IdempotencyLayer::new(MemoryStore::new()));
    assert_eq!(send(&app, post_json("k-2", "tea")).await.status, 201);
    let (client, attempts) = client_of(app);

    let response = client
        .oneshot(post_order(Some("k-2"), "coffee"))
        .await
        .unwrap();

    read(response)
        .await
        .assert_problem(409, "idempotency_key_payload_mismatch");
    assert_eq!(attempts.count(), 1, "no retry");
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn a_hint_of_false_is_not_retried_whatever_the_status() {
    let attempts = Attempts::default();
    let seen = attempts.clone();
    let transport = service_fn(move |request: Request<String>| {
        seen.push(
            request.headers().get("idempotency-key").cloned(),
            StatusCode::SERVICE_UNAVAILABLE,
        );
        let response = Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("x-should-retry", "false")
            .body(String::new())
            .unwrap();
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let client = client_over(transport, RetryPolicy::new());
    let response = client.oneshot(post_order(None, "tea")).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        attempts.count(),
        1,
        "a 503 would be retried without the hint"
    );
}

#[tokio::test]
async fn a_request_with_its_own_key_keeps_it() {
    let (app, runs) = orders_app(IdempotencyLayer::new(MemoryStore::new()));
    let (client, attempts) = client_of(app);

    let response = client
        .clone()
        .oneshot(post_order(Some("my-own-key"), "tea"))
        .await
        .unwrap();
    let key = response.extensions().get::<SentKey>().unwrap().clone();
    // The record is written as the body ends: read it before the retry.
    assert_eq!(read(response).await.body, "order 1: tea");
    let again = client
        .oneshot(post_order(Some("my-own-key"), "tea"))
        .await
        .unwrap();

    assert_eq!(key.header_value(), "my-own-key");
    assert!(!key.is_generated());
    let own = Some(HeaderValue::from_static("my-own-key"));
    assert_eq!(attempts.keys(), [own.clone(), own]);
    assert!(read(again).await.is_replay());
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn two_calls_get_two_different_keys() {
    let (app, runs) = orders_app(IdempotencyLayer::new(MemoryStore::new()));
    let (client, attempts) = client_of(app);

    let first = client
        .clone()
        .oneshot(post_order(None, "tea"))
        .await
        .unwrap();
    let second = client.oneshot(post_order(None, "tea")).await.unwrap();

    let first = first.extensions().get::<SentKey>().unwrap().clone();
    let second = second.extensions().get::<SentKey>().unwrap().clone();
    assert_ne!(first, second);
    assert_eq!(
        runs.count(),
        2,
        "two calls, two orders, even with equal bodies"
    );
    let keys = attempts.keys();
    assert_eq!(
        keys,
        [
            Some(first.header_value().clone()),
            Some(second.header_value().clone())
        ]
    );
    for key in [&first, &second] {
        assert!(key.is_generated());
        let text = key.header_value().to_str().unwrap();
        assert_eq!(text.len(), 38, "a quoted UUID: {text}");
        assert!(text.starts_with('"') && text.ends_with('"'), "{text}");
        assert_eq!(&text[15..16], "4", "version 4: {text}");
        assert!("89ab".contains(&text[20..21]), "variant 1: {text}");
    }
}

#[tokio::test]
async fn a_method_that_is_not_covered_gets_no_key() {
    let attempts = Attempts::default();
    let client = client_over(
        answering(StatusCode::OK, None, attempts.clone()),
        RetryPolicy::new(),
    );

    let request = Request::get("/orders").body(String::new()).unwrap();
    let response = client.oneshot(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.extensions().get::<SentKey>().is_none());
    assert_eq!(attempts.keys(), [None]);
}

#[tokio::test]
async fn a_key_on_a_method_that_is_not_covered_is_kept_and_reported() {
    let attempts = Attempts::default();
    let client = client_over(
        answering(StatusCode::OK, None, attempts.clone()),
        RetryPolicy::new(),
    );

    let request = Request::put("/orders/1")
        .header("idempotency-key", "put-key")
        .body(String::new())
        .unwrap();
    let response = client.oneshot(request).await.unwrap();

    let key = response.extensions().get::<SentKey>().unwrap();
    assert_eq!(key.header_value(), "put-key");
    assert!(!key.is_generated());
    assert_eq!(attempts.keys(), [Some(HeaderValue::from_static("put-key"))]);
}

#[tokio::test(start_paused = true)]
async fn attempts_are_bounded_and_back_off_with_jitter() {
    let attempts = Attempts::default();
    let times = Arc::new(Mutex::new(Vec::new()));
    let transport = {
        let (attempts, times) = (attempts.clone(), times.clone());
        service_fn(move |request: Request<String>| {
            times.lock().unwrap().push(Instant::now());
            attempts.push(
                request.headers().get("idempotency-key").cloned(),
                StatusCode::OK,
            );
            std::future::ready(Err::<Response<String>, _>(io::Error::other(
                "connection reset",
            )))
        })
    };
    let policy = RetryPolicy::new()
        .max_attempts(4)
        .backoff(Duration::from_millis(100), Duration::from_millis(300));
    let client = client_over(transport, policy);

    let error = client.oneshot(post_order(None, "tea")).await.unwrap_err();

    assert_eq!(
        error.to_string(),
        "connection reset",
        "the last error comes back"
    );
    assert_eq!(attempts.count(), 4);
    let keys = attempts.keys();
    assert!(
        keys.iter().all(|key| key.is_some() && *key == keys[0]),
        "{keys:?}"
    );
    let times = times.lock().unwrap();
    for (gap, step) in times
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .zip([100, 200, 300])
    {
        let step = Duration::from_millis(step);
        assert!(
            gap >= step / 2 && gap <= step,
            "gap {gap:?} for step {step:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn gateway_and_unavailable_answers_are_retried_the_rest_are_returned() {
    for (status, retried) in [
        (502, true),
        (503, true),
        (504, true),
        (400, false),
        (413, false),
        (422, false),
        (500, false),
        (201, false),
    ] {
        let status = StatusCode::from_u16(status).unwrap();
        let attempts = Attempts::default();
        let policy = RetryPolicy::new().max_attempts(3);
        let client = client_over(answering(status, None, attempts.clone()), policy);

        let response = client.oneshot(post_order(None, "tea")).await.unwrap();

        assert_eq!(response.status(), status);
        let expected = if retried { 3 } else { 1 };
        assert_eq!(attempts.count(), expected, "{status}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_is_honoured_up_to_its_maximum() {
    let policy = RetryPolicy::new()
        .max_attempts(2)
        .max_retry_after(Duration::from_secs(30));
    for status in [
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        let attempts = Attempts::default();
        let client = client_over(
            answering(status, Some("7"), attempts.clone()),
            policy.clone(),
        );
        let started = Instant::now();
        client.oneshot(post_order(None, "tea")).await.unwrap();
        assert_eq!(attempts.count(), 2, "{status}");
        assert_eq!(started.elapsed(), Duration::from_secs(7), "{status}");

        let attempts = Attempts::default();
        let client = client_over(
            answering(status, Some("3600"), attempts.clone()),
            policy.clone(),
        );
        let started = Instant::now();
        let response = client.oneshot(post_order(None, "tea")).await.unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(attempts.count(), 1, "an hour is not waited out: {status}");
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}

#[tokio::test(start_paused = true)]
async fn a_post_without_a_key_is_never_repeated_so_the_wrong_order_fails_safe() {
    // The key layer inside the retry layer: the request the retry layer keeps
    // has no key yet, so the policy must not repeat it.
    let attempts = Attempts::default();
    let wrong_order = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::new()))
        .layer(SetIdempotencyKeyLayer::new())
        .service(answering(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            attempts.clone(),
        ));
    let response = wrong_order.oneshot(post_order(None, "tea")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(attempts.count(), 1);

    // Idempotent methods need no key to be repeated.
    let attempts = Attempts::default();
    let retry = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::new().max_attempts(3)))
        .service(answering(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            attempts.clone(),
        ));
    let mut request = post_order(None, "");
    *request.method_mut() = Method::PUT;
    retry.oneshot(request).await.unwrap();
    assert_eq!(attempts.count(), 3);
    assert_eq!(attempts.keys(), [None, None, None]);
}

/// One answer a scripted transport gives: an error, or a status with an
/// optional `Retry-After` in seconds.
#[derive(Debug, Clone)]
enum Scripted {
    Error,
    Status(u16, Option<u64>),
}

impl Scripted {
    /// What `RetryPolicy` must do after it, with `max_retry_after` 30 s:
    /// `Some(wait)` to retry (`None` inside: a backoff), `None` to stop.
    fn expected_retry(&self) -> Option<Option<Duration>> {
        match *self {
            Self::Error => Some(None),
            Self::Status(409 | 429, Some(secs)) if secs <= 30 => {
                Some(Some(Duration::from_secs(secs)))
            }
            Self::Status(502..=504, None) => Some(None),
            Self::Status(502..=504, Some(secs)) if secs <= 30 => {
                Some(Some(Duration::from_secs(secs)))
            }
            _ => None,
        }
    }
}

fn scripted() -> impl proptest::strategy::Strategy<Value = Scripted> {
    use proptest::prelude::*;
    let status = prop_oneof![
        Just(200u16),
        Just(201),
        Just(400),
        Just(409),
        Just(413),
        Just(422),
        Just(429),
        Just(500),
        Just(502),
        Just(503),
        Just(504),
    ];
    let retry_after = proptest::option::of(prop_oneof![0u64..3, Just(31), Just(3600)]);
    prop_oneof![
        1 => Just(Scripted::Error),
        6 => (status, retry_after).prop_map(|(status, secs)| Scripted::Status(status, secs)),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(256))]

    /// Over any script of answers: the policy stops at the first answer a
    /// retry cannot fix or at the bound, every attempt carries the one key,
    /// what comes back is the last answer, and each wait honours what was
    /// asked (`Retry-After` exactly, a backoff within its step).
    #[test]
    fn the_policy_follows_any_script_of_answers(
        script in proptest::collection::vec(scripted(), 1..8),
        max_attempts in 1u32..6,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let transport = {
            let (script, seen) = (script.clone(), seen.clone());
            service_fn(move |request: Request<String>| {
                let mut seen = seen.lock().unwrap();
                let answer = script[seen.len() % script.len()].clone();
                seen.push((request.headers().get("idempotency-key").cloned(), Instant::now()));
                std::future::ready(match answer {
                    Scripted::Error => Err(io::Error::other("connection reset")),
                    Scripted::Status(status, retry_after) => {
                        let mut response = Response::builder().status(status);
                        if let Some(secs) = retry_after {
                            response = response.header("retry-after", secs);
                        }
                        Ok(response.body(String::new()).unwrap())
                    }
                })
            })
        };
        let policy = RetryPolicy::new()
            .max_attempts(max_attempts)
            .backoff(Duration::from_millis(100), Duration::from_millis(400))
            .max_retry_after(Duration::from_secs(30));
        let client = client_over(transport, policy);

        let result = runtime.block_on(client.oneshot(post_order(None, "tea")));

        // The attempts the policy must make: up to the first answer it
        // cannot fix, never more than the bound.
        let mut expected = 0;
        for answer in script.iter().cycle() {
            expected += 1;
            if expected == max_attempts as usize || answer.expected_retry().is_none() {
                break;
            }
        }
        let seen = seen.lock().unwrap();
        proptest::prop_assert_eq!(seen.len(), expected);
        let key = seen[0].0.clone();
        proptest::prop_assert!(key.is_some());
        proptest::prop_assert!(seen.iter().all(|(k, _)| *k == key));
        for (n, pair) in seen.windows(2).enumerate() {
            let waited = pair[1].1 - pair[0].1;
            match script[n % script.len()].expected_retry() {
                Some(Some(asked)) => proptest::prop_assert_eq!(waited, asked),
                Some(None) => {
                    let step = Duration::from_millis(100 << n).min(Duration::from_millis(400));
                    proptest::prop_assert!(waited >= step / 2 && waited <= step, "{:?}", waited);
                }
                None => proptest::prop_assert!(false, "retried after a final answer"),
            }
        }
        match (&script[(expected - 1) % script.len()], result) {
            (Scripted::Error, Err(error)) => {
                proptest::prop_assert_eq!(error.to_string(), "connection reset");
            }
            (Scripted::Status(status, _), Ok(response)) => {
                proptest::prop_assert_eq!(response.status().as_u16(), *status);
            }
            (answer, result) => {
                proptest::prop_assert!(false, "{:?} came back as {:?}", answer, result.map(|r| r.status()));
            }
        }
    }
}
