//! Make HTTP APIs safe to retry: a Tower layer for the `Idempotency-Key`
//! header.
//!
//! Clients send an `Idempotency-Key` with each logical request. The first
//! request with a key runs; every retry with the same key and the same
//! request gets the original response, so a timed-out job, a restarted worker
//! or a double click never creates a second order, a second payment or a
//! second expensive AI generation. A retry with the same key and a different
//! request gets 409 `idempotency_key_payload_mismatch`. Replicas that share a
//! Redis or PostgreSQL store run the handler once per key between them.
//!
//! The layer wraps any [`tower::Service`](tower_service::Service) over `http`
//! types: axum routers, hyper services, tower stacks.
//!
//! # Quick start
//!
//! With `tower-idempotency`, `axum` and `tokio` (features `macros` and
//! `rt-multi-thread`) in `Cargo.toml`:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use axum::http::{HeaderName, StatusCode};
//! use axum::{Router, routing::post};
//! use tower_idempotency::{IdempotencyLayer, MemoryStore};
//!
//! async fn create_order(body: String) -> (StatusCode, String) {
//!     (StatusCode::CREATED, format!(r#"{{"id":1,"order":{body}}}"#))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let layer = IdempotencyLayer::new(MemoryStore::new())
//!         .ttl(Duration::from_secs(24 * 3600))
//!         .scope_by_header(HeaderName::from_static("x-api-key"));
//!     let app = Router::new().route("/orders", post(create_order)).layer(layer);
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! ```text
//! curl -i -X POST localhost:3000/orders -H 'Idempotency-Key: k1' -d '{"sku":"tea"}'   # 201
//! curl -i -X POST localhost:3000/orders -H 'Idempotency-Key: k1' -d '{"sku":"tea"}'   # 201, Idempotent-Replayed: true
//! curl -i -X POST localhost:3000/orders -H 'Idempotency-Key: k1' -d '{"sku":"milk"}'  # 409
//! ```
//!
//! # Which requests the layer touches
//!
//! Requests with a method the layer does not cover (by default anything but
//! `POST` and `PATCH`, see [`methods`](IdempotencyLayer::methods)) pass
//! through untouched, key or not. A covered request without a key passes
//! through too, unless the layer is set to
//! [`require_key`](IdempotencyLayer::require_key): then it gets 400
//! [`idempotency_key_missing`](#idempotency_key_missing).
//!
//! **Bodies.** The wrapped service receives a
//! [`server::RequestBody`] and the layer answers with a
//! [`server::ResponseBody`], which any server takes. An axum router boxes
//! every body that is not its own, so in axum each request pays two boxes
//! even when the layer lets it pass; with the `axum` feature,
//! [`axum_bodies`](IdempotencyLayer::axum_bodies) keeps axum's `Body` on
//! both sides and a request the layer does not protect passes unboxed.
//!
//! **Keys.** 1 to 256 characters of printable ASCII (0x20 to 0x7E). A key
//! written as an RFC 8941 sf-string (`"abc"`, with the escapes `\"` and
//! `\\`) is unquoted first, so `"abc"` and `abc` are one key. Spaces around
//! the whole field value are dropped, as RFC 8941 parsing does; spaces inside
//! a key are part of it. An empty key, a longer one, a non-ASCII or control
//! character, a malformed quoted form, or two `Idempotency-Key` headers get
//! 400 [`idempotency_key_invalid`](#idempotency_key_invalid), and nothing is
//! stored. See [`IdempotencyKey`].
//!
//! # What happens to a request with a key
//!
//! The body is read whole, up to the
//! [`request_body_limit`](IdempotencyLayer::request_body_limit) (a larger
//! one gets 413 [`idempotency_request_too_large`](#idempotency_request_too_large)
//! and never reaches the service). The request is fingerprinted, and its key
//! claimed in the store atomically:
//!
//! | the store holds for (scope, key) | answer |
//! | --- | --- |
//! | nothing, or an expired record | the key is claimed (in flight, with a lease), the service runs, its response is recorded |
//! | a completed record, same fingerprint | replay: the recorded status, headers and body, plus `Idempotent-Replayed: true`; the service does not run |
//! | a completed record, another fingerprint | 409 [`idempotency_key_payload_mismatch`](#idempotency_key_payload_mismatch) |
//! | an in-flight claim, same fingerprint | 409 [`idempotency_key_in_progress`](#idempotency_key_in_progress), with `Retry-After` (or, with [`wait_in_flight`](IdempotencyLayer::wait_in_flight), wait for the outcome and replay it) |
//! | an in-flight claim, another fingerprint | 409 [`idempotency_key_payload_mismatch`](#idempotency_key_payload_mismatch) |
//! | store unreachable, failing, or slower than the [`store_timeout`](IdempotencyLayer::store_timeout) | 503 [`idempotency_store_unavailable`](#idempotency_store_unavailable) (or, with [`fail_open`](IdempotencyLayer::fail_open), the request runs unprotected) |
//!
//! Of many concurrent requests with one key exactly one runs the service, in
//! one process or across replicas sharing a store.
//!
//! **The fingerprint** ([`Fingerprint`]) is SHA-256 over the method, the path
//! with query, any headers added with
//! [`fingerprint_header`](IdempotencyLayer::fingerprint_header), and the body
//! bytes (or, with [`canonical_json`](IdempotencyLayer::canonical_json), the
//! body's canonical JSON form), each field length-prefixed so that two
//! different requests never hash alike.
//!
//! **The service** receives the request unchanged (same head, same body
//! bytes), with its [`IdempotencyKey`] in the extensions, so a handler can
//! derive keys for its own downstream calls.
//!
//! # Scopes
//!
//! Records are keyed by (scope, key). With scoping, tenant B sending tenant
//! A's key runs its own request, never sees A's response and never learns the
//! key exists: [`scope_by_header`](IdempotencyLayer::scope_by_header) (an API
//! key), [`scope_by_extension`](IdempotencyLayer::scope_by_extension) (what
//! your authentication layer sets), or [`scope`](IdempotencyLayer::scope)
//! (any function of the request head). Stores keep a digest of (scope, key),
//! never the raw key.
//!
//! **Warning:** the default is one global scope. If two clients can pick the
//! same key, the second gets the first one's response. Scope by tenant
//! whenever clients are not one trusted party.
//!
//! # What is recorded
//!
//! - Status, headers and body. Not recorded: hop-by-hop headers (`Connection`
//!   and the headers it names, `Keep-Alive`, `TE`, `Trailer`,
//!   `Transfer-Encoding`, `Upgrade`), credentials (`Set-Cookie`,
//!   `WWW-Authenticate`, `Proxy-Authenticate`, `Authorization`), so a replay
//!   never hands out a session, and `Content-Length`, recomputed on replay.
//!   `Location`, `ETag`, `Content-Type` and the rest replay as sent,
//!   multi-valued headers kept whole.
//! - Not recorded at all, so a retry runs the service again: by default 1xx,
//!   5xx, 408, 425 and 429 responses, and 401 and 415, the refusals of a
//!   request's credentials or `Content-Type` (headers outside the
//!   fingerprint) that would otherwise stick to the key
//!   ([`default_record_policy`], changed with
//!   [`record_policy`](IdempotencyLayer::record_policy)), an `Err` from the
//!   service, a panic. The layer's own error responses are never recorded.
//! - Records live for the [`ttl`](IdempotencyLayer::ttl) (24 hours by
//!   default); then the key may be used again.
//! - **Streaming.** The response streams through as it is produced; the copy
//!   is recorded when the body ends, before the client sees the end, so a
//!   retry sent after the response arrived replays it (never a 409 in
//!   progress). If recording fails, the response is still delivered and the
//!   layer retries the record while it holds the lease.
//! - **Large responses.** A body over the
//!   [`response_record_limit`](IdempotencyLayer::response_record_limit) is
//!   delivered whole; its key then holds a tombstone until the TTL ends, and
//!   retries get 409
//!   [`idempotency_response_not_replayable`](#idempotency_response_not_replayable).
//!
//! # Leases, fencing and run to completion
//!
//! A claim holds its key for a short [`lease`](IdempotencyLayer::lease) (30
//! s), renewed every third of a lease while the work runs, so a ten-minute
//! handler keeps its key and a process that dies loses it within one lease.
//! Each claim has a fencing token: a late finisher whose lease ran out never
//! overwrites the new owner's record.
//!
//! [Run to completion](IdempotencyLayer::run_to_completion) is on by default:
//! a client that disconnects, or a timeout outside the layer, does not cancel
//! the work half-way. The outcome is recorded and the retry replays it. Only
//! a dropped request pays for this (a task); others run on the request's own
//! task.
//!
//! # Streaming responses: joining in flight
//!
//! A long generation streamed as server-sent events is retried while it
//! still streams. With [`join_in_flight`](IdempotencyLayer::join_in_flight)
//! the retry joins it: the same status and headers (marked
//! `Idempotent-Replayed: true`), everything produced so far at once, then
//! each chunk as it is produced, ending when the original ends; if the
//! original breaks off, the joined body ends with a
//! [`JoinInterrupted`](server::JoinInterrupted) error, never a clean end.
//! Joiners share one copy, bounded by the recording limit; a response nobody
//! joins pays a counter check per chunk. `RedisStore` carries the copy to
//! joiners on other replicas; with other stores, a retry on another replica
//! waits for the record.
//!
//! # Exactly-once effects: fenced completion
//!
//! The fencing token keeps a late finisher from overwriting a record, not
//! from committing its side effect. A handler whose effect lives in the
//! PostgreSQL of a `PostgresStore` can close that gap: it takes the request's
//! `PostgresClaim` from the extensions and completes the record with its
//! response inside the transaction of its effect. The completion is refused
//! (the handler rolls back) once the claim is no longer the request's, so a
//! replica frozen past its lease never commits a second payment; and once the
//! transaction commits, a crash leaves a key that replays, never one that
//! runs again. The layer then records nothing more. The rustdoc of
//! `PostgresClaim` (features `postgres`, `sqlx`) has the guarantees, the
//! isolation levels and an axum handler.
//!
//! # Options
//!
//! Every setter of [`IdempotencyLayer`] takes and returns the layer; its docs
//! list them all with their defaults. The conventions of the IETF draft
//! (422 for a payload mismatch) are one setter away: [`Profile::Ietf`].
//!
//! # Error codes
//!
//! Every error the layer answers itself is `application/problem+json` (RFC
//! 9457) with fixed text: it never echoes the request, a stored response or
//! another scope's data, and it is never recorded. `status` and `code` are
//! the contract; the `type` of each points at its entry here. Each also says
//! whether a retry can succeed, in `Stripe-Should-Retry` and `x-should-retry`
//! (`true` for `idempotency_key_in_progress` and
//! `idempotency_store_unavailable`, `false` for the rest but
//! `idempotency_request_body_unreadable`, which has none), so the big SDKs do
//! not retry a mismatch four times; see
//! [`retry_hints`](IdempotencyLayer::retry_hints).
//!
//! | status | code | when |
//! | --- | --- | --- |
//! | 400 | <a id="idempotency_key_missing"></a>`idempotency_key_missing` | `require_key` is on and a covered request has no key |
//! | 400 | <a id="idempotency_key_invalid"></a>`idempotency_key_invalid` | the key is empty, longer than 256 characters, not printable ASCII, a malformed quoted string, or sent twice |
//! | 400 | <a id="idempotency_request_body_unreadable"></a>`idempotency_request_body_unreadable` | the request body failed before its end (the client went away) |
//! | 409 | <a id="idempotency_key_payload_mismatch"></a>`idempotency_key_payload_mismatch` | the key was used with another method, path, body or fingerprinted header (422 with [`Profile::Ietf`]) |
//! | 409 | <a id="idempotency_key_in_progress"></a>`idempotency_key_in_progress` | a request with the key is still running; retry after `Retry-After` |
//! | 409 | <a id="idempotency_response_not_replayable"></a>`idempotency_response_not_replayable` | the key's response was too large to record |
//! | 413 | <a id="idempotency_request_too_large"></a>`idempotency_request_too_large` | the request body is over `request_body_limit` |
//! | 503 | <a id="idempotency_store_unavailable"></a>`idempotency_store_unavailable` | the store failed or timed out; nothing ran |
//!
//! # Stores
//!
//! - [`MemoryStore`] (the default): one process.
//! - `RedisStore` (feature `redis`): replicas sharing one Redis; one Lua
//!   script per operation, one round trip to claim, one to record, one to
//!   replay.
//! - `PostgresStore` (feature `postgres`): durable records, long retention,
//!   and *fenced completion*: the handler completes the record in its own
//!   transaction, beside its effect (`PostgresClaim`, below).
//!
//! Any type can be a store by implementing the small, atomic [`Store`] trait;
//! the public conformance suite (feature `conformance`,
//! `store::conformance`) checks one, and runs against every store here.
//!
//! # Client side
//!
//! With the `client` feature, [`client::SetIdempotencyKeyLayer`] gives every
//! `POST` and `PATCH` call a key that its retries keep, and
//! [`client::RetryPolicy`] retries what a retry can fix. See [`client`].
//!
//! # Features
//!
//! - `server` (default): the layer and [`MemoryStore`].
//! - `client`: the client layers, without the server's dependencies.
//! - `redis`, `postgres`: the networked stores.
//! - `sqlx`: fenced completion in an `sqlx` transaction.
//! - `redis-rustls`, `postgres-rustls`: TLS to the networked stores.
//! - `tracing`: a span per covered request and events for store failures;
//!   without it, [`on_outcome`](IdempotencyLayer::on_outcome) reports the same
//!   outcomes to any metrics system.
//! - `conformance`: the store conformance suite, for testing a store.
//!
//! # Runtime
//!
//! The layer runs on Tokio: its futures need a runtime with the time driver
//! (`#[tokio::main]` and axum's `serve` have it), since every store call is
//! bounded by the store timeout.
//!
//! # More
//!
//! The package's own files, readable on docs.rs:
//! [the threat model](https://docs.rs/crate/tower-idempotency/latest/source/SECURITY.md),
//! [the benchmarks](https://docs.rs/crate/tower-idempotency/latest/source/BENCHMARKS.md),
//! and runnable examples:
//! [an orders API](https://docs.rs/crate/tower-idempotency/latest/source/examples/orders.rs),
//! [a tower-http stack with the order of layers explained](https://docs.rs/crate/tower-idempotency/latest/source/examples/service_builder.rs),
//! [a plain hyper server](https://docs.rs/crate/tower-idempotency/latest/source/examples/hyper_server.rs),
//! [a retrying client](https://docs.rs/crate/tower-idempotency/latest/source/examples/client_retry.rs),
//! [metrics from the outcome hook](https://docs.rs/crate/tower-idempotency/latest/source/examples/metrics.rs).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod header;
#[cfg(feature = "server")]
mod header_values;
#[cfg(feature = "server")]
mod log;
#[cfg(any(feature = "server", feature = "client"))]
mod method_set;

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod store;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use header::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, STRIPE_SHOULD_RETRY, X_SHOULD_RETRY};
#[cfg(feature = "server")]
pub use server::{
    Idempotency, IdempotencyKey, IdempotencyLayer, InvalidKey, Outcome, OutcomeReport, Profile,
    Scope, ScopeFn, default_record_policy,
};
#[cfg(feature = "server")]
pub use store::{Fingerprint, MemoryStore, Store};

/// The README's Rust snippets, compiled as doc-tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
