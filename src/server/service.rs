//! [`Idempotency`]: the middleware service. `call` reads as the decision
//! table: parse the key, fingerprint, claim, then run, replay or reject.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::BoxError;
use super::bodies::{LayerBodies, RequestBodies, ResponseBodies};
use super::claim::{Acquired, Claim, Run, acquire, execute};
use super::config::{Config, Shared};
use super::content_length::declared_len;
use super::decision::Decision;
use super::future::ResponseFuture;
use super::outcome::{Outcome, Stopwatch, report, timed};
use super::request::{BufferError, IdempotencyKey, RequestBody, buffer, key_from_headers};
use super::response::{Rejection, ResponseBody, joined, rejection_response, relayed, replay};
use crate::store::{ClaimLoan, KeyDigest, Store};

/// Middleware that runs the inner service once per idempotency key and
/// replays its response to retries. Made by [`IdempotencyLayer`](super::IdempotencyLayer).
///
/// The inner service receives the request unchanged (same head, same body
/// bytes) with its [`IdempotencyKey`] added to the extensions; its body type is
/// [`RequestBody`], which axum routers and `hyper` services accept as any other
/// body.
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::{BodyExt, Full};
/// use tower::{Layer, ServiceExt};
/// use tower_idempotency::server::RequestBody;
/// use tower_idempotency::{IdempotencyLayer, MemoryStore};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let handler = tower::service_fn(|_: Request<RequestBody<Full<Bytes>>>| async {
///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("created"))))
/// });
/// let service = IdempotencyLayer::new(MemoryStore::new()).layer(handler);
/// let request = || {
///     Request::post("/orders")
///         .header("idempotency-key", "k1")
///         .body(Full::new(Bytes::from("{}")))
///         .unwrap()
/// };
/// // The record is made as the body is read to its end.
/// let first = service.clone().oneshot(request()).await.unwrap();
/// first.into_body().collect().await.unwrap();
/// let retry = service.oneshot(request()).await.unwrap();
/// assert_eq!(retry.headers()["idempotent-replayed"], "true");
/// # });
/// ```
pub struct Idempotency<S, St, M = LayerBodies> {
    inner: S,
    shared: Arc<Shared<St>>,
    bodies: PhantomData<fn() -> M>,
}

impl<S, St, M> Idempotency<S, St, M> {
    pub(crate) fn new(inner: S, config: Config, store: Arc<St>) -> Self {
        Self {
            inner,
            shared: Arc::new(Shared { config, store }),
            bodies: PhantomData,
        }
    }

    /// Returns a reference to the wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Returns a mutable reference to the wrapped service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the middleware, returning the wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, St, M> Clone for Idempotency<S, St, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            bodies: PhantomData,
        }
    }
}

impl<S: fmt::Debug, St: fmt::Debug, M> fmt::Debug for Idempotency<S, St, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .field("store", &self.shared.store)
            .finish()
    }
}

impl<S, St, M> Idempotency<S, St, M> {
    /// A rejection of the layer's own, reported as such.
    fn reject<F, B, E>(&self, rejection: Rejection) -> ResponseFuture<F, B, E, M> {
        let hook = self.shared.config.on_outcome.as_ref();
        report(
            hook,
            Outcome::Rejected,
            Duration::ZERO,
            Duration::ZERO,
            None,
        );
        ResponseFuture::rejected(rejection, self.shared.config.rejections.retry_hints)
    }
}

impl<S, St, M, ReqB, ResB> Service<Request<ReqB>> for Idempotency<S, St, M>
where
    M: RequestBodies<ReqB> + ResponseBodies<ResB>,
    S: Service<Request<<M as RequestBodies<ReqB>>::Request>, Response = Response<ResB>>
        + Clone
        + Send
        + 'static,
    <M as RequestBodies<ReqB>>::Request: Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    St: Store,
    ReqB: Body<Data = Bytes> + Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<<M as ResponseBodies<ResB>>::Response>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB, S::Error, M>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let config = &self.shared.config;
        if !config.covers(request.method()) {
            return ResponseFuture::passthrough(
                self.inner
                    .call(request.map(<M as RequestBodies<ReqB>>::passed)),
            );
        }
        let key = match key_from_headers(request.headers(), &config.header) {
            Ok(Some(key)) => key,
            Ok(None) if config.require_key => {
                return self.reject(Rejection::KeyMissing);
            }
            Ok(None) => {
                return ResponseFuture::passthrough(
                    self.inner
                        .call(request.map(<M as RequestBodies<ReqB>>::passed)),
                );
            }
            Err(why) => return self.reject(Rejection::KeyInvalid(why)),
        };
        let (parts, body) = request.into_parts();
        if declared_len(&parts.headers).is_some_and(|len| len > config.request_body_limit as u64) {
            return self.reject(Rejection::RequestTooLarge);
        }
        // Take the service that `poll_ready` made ready, leave a clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let protected =
            protect::<S, St, M, ReqB, ResB>(Arc::clone(&self.shared), inner, parts, body, key);
        // One span per covered request; its outcome, store latency and key
        // digest (never the key itself) are recorded when the store answers.
        #[cfg(feature = "tracing")]
        let protected = tracing::Instrument::instrument(
            protected,
            tracing::info_span!(
                "idempotency",
                outcome = tracing::field::Empty,
                store_latency_us = tracing::field::Empty,
                key_digest = tracing::field::Empty,
            ),
        );
        ResponseFuture::protected(Box::pin(protected))
    }
}

/// A protected request, from its body to its answer.
///
/// It takes the request's head and body apart and keeps them where they
/// are: every value a future is made with stays in it to the end, so a
/// helper future taking the request would hold its head twice.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would keep its arguments twice"
)]
fn protect<S, St, M, ReqB, ResB>(
    shared: Arc<Shared<St>>,
    mut inner: S,
    mut parts: Parts,
    body: ReqB,
    key: IdempotencyKey,
) -> impl Future<Output = Result<Response<ResponseBody<ResB>>, S::Error>>
where
    M: RequestBodies<ReqB>,
    M::Request: Send,
    S: Service<Request<M::Request>, Response = Response<ResB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    St: Store,
    ReqB: Body<Data = Bytes>,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    // An async block, not an async fn: an async fn keeps each argument twice
    // (as passed, and bound), the head of the request among them.
    async move {
        // The body, the store and the decision, in a block of their own that
        // ends in the service's run, boxed: what the block holds is gone before
        // the run starts, and the run (the largest state of all) takes no room
        // in the future of a request that never reaches it (a replay, a
        // rejection). One await point after the block, so nothing of it is kept.
        let run: Run<ResB, S::Error> = {
            let config = &shared.config;
            let timed = timed(config.on_outcome.as_ref());
            let started = Stopwatch::start(timed);
            // The body, read whole (within the limit): the fingerprint and the
            // record's name are made from it and the head.
            let body = match buffer(body, config.request_body_limit).await {
                Ok(body) => body,
                Err(error) => {
                    let rejection = match error {
                        BufferError::TooLarge => Rejection::RequestTooLarge,
                        BufferError::Unreadable => Rejection::RequestBodyUnreadable,
                    };
                    let hook = config.on_outcome.as_ref();
                    report(
                        hook,
                        Outcome::Rejected,
                        Duration::ZERO,
                        started.elapsed(),
                        None,
                    );
                    return Ok(rejection_response(rejection, &config.rejections));
                }
            };
            let fingerprint = config.fingerprint.fingerprint(&parts, &body.data);
            let digest = KeyDigest::new(&config.scope.scope(&parts), &key);
            let asked = Stopwatch::start(timed);
            let acquired = acquire(&shared, &digest, &fingerprint).await;
            let store_latency = asked.elapsed();
            let hook = config.on_outcome.as_ref();
            let (claim, claimed_at) = match acquired {
                Acquired::Answered(claim, claimed_at) => (claim, claimed_at),
                Acquired::Joined(head, watcher) => {
                    let elapsed = started.elapsed();
                    report(hook, Outcome::Joined, store_latency, elapsed, Some(&digest));
                    return Ok(joined(&head, watcher));
                }
                Acquired::Relayed(response) => {
                    let elapsed = started.elapsed();
                    report(hook, Outcome::Joined, store_latency, elapsed, Some(&digest));
                    return Ok(relayed(*response));
                }
                Acquired::TooLargeToJoin => {
                    let elapsed = started.elapsed();
                    report(
                        hook,
                        Outcome::Rejected,
                        store_latency,
                        elapsed,
                        Some(&digest),
                    );
                    let rejection = Rejection::NotReplayable;
                    return Ok(rejection_response(rejection, &config.rejections));
                }
            };
            let decision = config.decision.decide(claim, &fingerprint);
            let outcome = Outcome::of(&decision);
            report(
                hook,
                outcome,
                store_latency,
                started.elapsed(),
                Some(&digest),
            );
            // The request the service gets, if it gets one. The key goes in
            // its extensions only then (inserting it may grow the map).
            let service_request = move || {
                parts.extensions.insert(key);
                Request::from_parts(parts, M::buffered(RequestBody::buffered(body)))
            };
            match decision {
                Decision::Run(token) => {
                    let mut request = service_request();
                    let mut completion = None;
                    let loan = ClaimLoan::new(
                        &digest,
                        token,
                        config.ttl,
                        config.response_record_limit,
                        &mut completion,
                    );
                    shared.store.lend_claim(loan, request.extensions_mut());
                    let claim =
                        Claim::new(Arc::clone(&shared), digest, token, fingerprint, claimed_at)
                            .completed_by(completion);
                    execute(claim, inner.call(request))
                }
                Decision::Replay(response) => return Ok(replay(response)),
                Decision::Reject(rejection) => {
                    return Ok(rejection_response(rejection, &config.rejections));
                }
                Decision::RunUnprotected => {
                    let future = inner.call(service_request());
                    Run::unprotected(async move { Ok(future.await?.map(ResponseBody::inner)) })
                }
            }
        };
        run.await
    }
}
