//! A client that retries safely: `SetIdempotencyKeyLayer` outside
//! `RetryLayer(RetryPolicy)`, over hyper-util's client, against
//! `examples/orders.rs`. It prints every attempt.
//!
//! ```text
//! cargo run --example orders                              # one terminal
//! cargo run --features client --example client_retry      # another
//! ```
//!
//! Environment: `ORDERS_URL` (default `http://127.0.0.1:3000`).
//!
//! The stack, outermost first:
//!
//! ```text
//! SetIdempotencyKeyLayer     one key per call
//!   RetryLayer(RetryPolicy)  repeats the call under that key
//!     PrintAttempt           prints each attempt (this file)
//!       TimeoutLayer (1 s)   gives up on one attempt, not on the call
//!         hyper-util Client
//! ```
//!
//! The first call asks for an order whose handler takes 1.5 s, so its first
//! attempt times out; the server keeps running it (run to completion), the
//! second attempt finds it in progress (409, `Retry-After: 1`), and the third
//! gets the finished order, replayed. One order is made, under one key.

use std::env;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::retry::RetryLayer;
use tower::timeout::TimeoutLayer;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_idempotency::client::{RetryPolicy, SentKey, SetIdempotencyKeyLayer};

type Http = Client<HttpConnector, Full<Bytes>>;

/// Counts the attempts of the current call and when it started.
#[derive(Clone)]
struct Attempts {
    count: Arc<AtomicUsize>,
    started: Arc<std::sync::Mutex<Instant>>,
}

impl Attempts {
    fn new() -> Self {
        Self {
            count: Arc::default(),
            started: Arc::new(std::sync::Mutex::new(Instant::now())),
        }
    }

    fn start_call(&self) {
        self.count.store(0, Ordering::SeqCst);
        *self.started.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// This attempt's number and the milliseconds since its call began.
    fn next(&self) -> (usize, u128) {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        let started = *self.started.lock().unwrap_or_else(|e| e.into_inner());
        (n, started.elapsed().as_millis())
    }
}

/// An attempt through `inner`, printed: its number, time, key and outcome.
fn print_attempt<S>(
    inner: S,
    attempts: Attempts,
) -> impl Service<Request<Full<Bytes>>, Response = Response<Incoming>, Error = BoxError> + Clone
where
    S: Service<Request<Full<Bytes>>, Response = Response<Incoming>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    service_fn(move |request: Request<Full<Bytes>>| {
        let (inner, attempts) = (inner.clone(), attempts.clone());
        async move {
            let key = request
                .extensions()
                .get::<SentKey>()
                .map_or_else(|| "(none)".to_owned(), ToString::to_string);
            let (n, at) = attempts.next();
            let result = inner.oneshot(request).await;
            match &result {
                Ok(response) => {
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|value| value.to_str().ok())
                        .map(|value| format!(", retry-after: {value}"))
                        .unwrap_or_default();
                    println!(
                        "  attempt {n} at {at:>4} ms, key {key}: {}{retry_after}",
                        response.status()
                    );
                }
                Err(error) => println!("  attempt {n} at {at:>4} ms, key {key}: error: {error}"),
            }
            result
        }
    })
}

/// Sends one call through `client` and prints how it ended.
async fn call<C>(
    client: &C,
    attempts: &Attempts,
    request: Request<Full<Bytes>>,
) -> Result<SentKey, BoxError>
where
    C: Service<Request<Full<Bytes>>, Response = Response<Incoming>, Error = BoxError> + Clone,
{
    attempts.start_call();
    let response = client.clone().oneshot(request).await?;
    let key = response
        .extensions()
        .get::<SentKey>()
        .cloned()
        .ok_or("a POST always goes out with a key")?;
    let status = response.status();
    let replayed = response.headers().contains_key("idempotent-replayed");
    let body = response.into_body().collect().await?.to_bytes();
    println!(
        "  => {status}{}: {}",
        if replayed { " (replayed)" } else { "" },
        String::from_utf8_lossy(&body)
    );
    Ok(key)
}

fn post(
    base: &str,
    path: &str,
    body: &'static str,
    key: Option<&SentKey>,
) -> Result<Request<Full<Bytes>>, BoxError> {
    let mut request = Request::post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .header(
            "x-api-key",
            HeaderValue::from_static("client-retry-example"),
        );
    if let Some(key) = key {
        request = request.header("idempotency-key", key.header_value().clone());
    }
    Ok(request.body(Full::new(Bytes::from_static(body.as_bytes())))?)
}

/// How many orders the server holds.
async fn count_orders(http: &Http, base: &str) -> Result<usize, BoxError> {
    let request = Request::get(format!("{base}/orders")).body(Full::default())?;
    let body = http.request(request).await?.into_body().collect().await?;
    let orders: Vec<serde_json::Value> = serde_json::from_slice(&body.to_bytes())?;
    Ok(orders.len())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let base = env::var("ORDERS_URL").unwrap_or_else(|_| "http://127.0.0.1:3000".to_owned());
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let attempts = Attempts::new();
    let one_attempt = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .service(http.clone())
        .map_err(BoxError::from);
    let client = ServiceBuilder::new()
        .layer(SetIdempotencyKeyLayer::new())
        .layer(RetryLayer::new(RetryPolicy::new()))
        .service(print_attempt(one_attempt, attempts.clone()));

    let before = count_orders(&http, &base)
        .await
        .map_err(|error| format!("is the orders example running at {base}? {error}"))?;

    println!("1. A new order whose handler takes 1.5 s; one attempt may take 1 s:");
    let slow = "/orders?delay_ms=1500";
    let key = call(
        &client,
        &attempts,
        post(&base, slow, r#"{"sku":"tea"}"#, None)?,
    )
    .await?;

    println!("2. The same call again, later, under the key it was sent with:");
    call(
        &client,
        &attempts,
        post(&base, slow, r#"{"sku":"tea"}"#, Some(&key))?,
    )
    .await?;

    println!("3. That key with another body (not retried: retrying cannot help):");
    call(
        &client,
        &attempts,
        post(&base, slow, r#"{"sku":"coffee"}"#, Some(&key))?,
    )
    .await?;

    println!("4. A new call with the first body: a new key, so a new order:");
    call(
        &client,
        &attempts,
        post(&base, "/orders", r#"{"sku":"tea"}"#, None)?,
    )
    .await?;

    let made = count_orders(&http, &base).await? - before;
    println!("orders made: {made} (for 4 calls, of which 2 new actions)");
    Ok(())
}
