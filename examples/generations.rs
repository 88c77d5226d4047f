//! A generations API that streams a long generation as server-sent events,
//! behind `IdempotencyLayer` with joining on: a client that loses its
//! connection and retries with its key gets the same stream, from its first
//! event, live, while the generation runs once.
//!
//! ```text
//! cargo run --example generations
//! curl -N -X POST localhost:3001/v1/generations -H 'Idempotency-Key: g1' \
//!     -d '{"prompt":"a pot of tea","tokens":50,"interval_ms":200}'
//! # interrupt it, run it again: the same events from index 0, then live
//! curl localhost:3001/v1/generations
//! ```
//!
//! `POST /v1/generations` takes `{"prompt": "...", "tokens": N,
//! "interval_ms": M}` (defaults 20 and 100; other fields are kept) and
//! answers 200 `text/event-stream`: N events `data: {"generation":G,
//! "index":I,"token":"..."}`, one every M ms, then `data: [DONE]`. G numbers
//! the generations this process started, from 1; the token is a word of the
//! prompt. `"fail_at": K` breaks the stream off after K events (the
//! connection is cut). `GET /v1/generations` lists every generation this
//! process started, with its request and its status (`running`,
//! `completed`, `failed`).
//!
//! Environment: `ADDR` (default `127.0.0.1:3001`), `WAIT_SECS` (how long a
//! retry waits for the response to start, default 30), and as the orders
//! example: `TTL_SECS`, `LEASE_SECS`, `STORE_TIMEOUT_MS`, keys scoped by the
//! `X-Api-Key` header; memory store unless `REDIS_URL`,
//! `REDIS_CLUSTER_URLS` or `DATABASE_URL` is set (built with the matching
//! feature). Run to completion is on: a generation whose client went away
//! streams on to its end, for its joiners and its record.

#[path = "shared/mod.rs"]
mod shared;

use std::env;
use std::error::Error;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use tower_idempotency::{IdempotencyLayer, Store};

/// What a generation request asks for; other fields are kept in the
/// request, not read.
#[derive(Deserialize)]
struct Ask {
    #[serde(default)]
    prompt: String,
    tokens: Option<u64>,
    interval_ms: Option<u64>,
    fail_at: Option<u64>,
}

/// Every generation started, in order; a generation's id is its position
/// plus one.
#[derive(Clone, Default)]
struct Generations(Arc<Mutex<Vec<Generation>>>);

struct Generation {
    /// The request's JSON text, as sent.
    request: String,
    status: &'static str,
}

impl Generations {
    fn start(&self, request: String) -> u64 {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.push(Generation {
            request,
            status: "running",
        });
        all.len() as u64
    }

    fn set_status(&self, id: u64, status: &'static str) {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(generation) = usize::try_from(id - 1).ok().and_then(|i| all.get_mut(i)) {
            generation.status = status;
        }
    }
}

/// The state of one generation's stream.
struct Stream {
    generations: Generations,
    id: u64,
    words: Vec<String>,
    tokens: u64,
    interval: Duration,
    fail_at: Option<u64>,
    next: u64,
    done: bool,
}

impl Stream {
    /// The next event, after the interval: a token, `[DONE]`, or the break.
    async fn next_event(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        if self.done {
            return None;
        }
        if self.fail_at == Some(self.next) {
            self.done = true;
            self.generations.set_status(self.id, "failed");
            let error = std::io::Error::other(format!("generation {} failed", self.id));
            return Some((Err(error), self));
        }
        if self.next == self.tokens {
            self.done = true;
            self.generations.set_status(self.id, "completed");
            return Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), self));
        }
        tokio::time::sleep(self.interval).await;
        let index = self.next;
        self.next += 1;
        let word = match self.words.len() {
            0 => "token",
            n => &self.words[(index % n as u64) as usize],
        };
        let event = serde_json::json!({"generation": self.id, "index": index, "token": word});
        Some((Ok(Bytes::from(format!("data: {event}\n\n"))), self))
    }
}

async fn generate(State(generations): State<Generations>, body: Bytes) -> Response {
    let request: &RawValue = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, format!("invalid JSON: {error}")).into_response();
        }
    };
    let ask: Ask = match serde_json::from_str(request.get()) {
        Ok(ask) => ask,
        Err(error) => {
            return (StatusCode::UNPROCESSABLE_ENTITY, format!("{error}")).into_response();
        }
    };
    let id = generations.start(request.get().to_owned());
    let stream = Stream {
        generations,
        id,
        words: ask.prompt.split_whitespace().map(str::to_owned).collect(),
        tokens: ask.tokens.unwrap_or(20),
        interval: Duration::from_millis(ask.interval_ms.unwrap_or(100)),
        fail_at: ask.fail_at,
        next: 0,
        done: false,
    };
    let events = futures_util::stream::unfold(stream, Stream::next_event);
    (
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}

async fn list(State(generations): State<Generations>) -> Response {
    let all = generations.0.lock().unwrap_or_else(PoisonError::into_inner);
    let listed: Vec<String> = all
        .iter()
        .zip(1..)
        .map(|(generation, id)| {
            format!(
                r#"{{"id":{id},"request":{},"status":"{}"}}"#,
                generation.request, generation.status
            )
        })
        .collect();
    (
        [(CONTENT_TYPE, "application/json")],
        format!("[{}]", listed.join(",")),
    )
        .into_response()
}

/// The app: routes, state and the idempotency layer, joining on.
fn app<St: Store>(store: St) -> Result<Router, Box<dyn Error>> {
    let wait = Duration::from_secs(shared::env_or("WAIT_SECS", 30)?);
    let layer = shared::layer_settings(IdempotencyLayer::new(store))?.join_in_flight(wait);
    Ok(Router::new()
        .route("/v1/generations", post(generate).get(list))
        .layer(layer)
        .with_state(Generations::default()))
}

/// The generations server, on whichever store the environment names.
struct GenerationsServer;

impl shared::Server for GenerationsServer {
    async fn serve<St: Store>(self, store: St) -> Result<(), Box<dyn Error>> {
        let addr = env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
        let app = app(store)?;
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!(
            "generations example listening on http://{}",
            listener.local_addr()?
        );
        axum::serve(listener, app).await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let served = shared::serve_on_chosen_store(GenerationsServer, "generations_example").await;
    shared::exit_code("generations", served)
}
