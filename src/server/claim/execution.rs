//! The service's work under a claim: the lease renewed while it runs, its
//! response set up for recording, and, with run to completion, the work
//! carried on by a task of its own when the request is dropped before the end.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use super::held::{Claim, PendingRecord};
use crate::server::BoxError;
use crate::server::content_length::declared_len;
use crate::server::response::{Recording, ResponseBody};
use crate::store::{RecordedResponse, Store, recordable_headers};

/// Runs `future` (the service's answer to a claimed request) and sets up the
/// record of its response, in a [`Run`] that hands itself on to a task of its
/// own if the request is dropped before the end (with run to completion on).
pub(crate) fn execute<F, St, B, E>(claim: Claim<St>, future: F) -> Run<B, E>
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    St: Store,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Send + 'static,
{
    let hand_on = claim
        .config()
        .run_to_completion
        .then_some(complete_in_background::<B, E> as fn(_));
    Run {
        future: Some(Box::pin(Execution::Running {
            future,
            claim: Some(claim),
        })),
        hand_on,
    }
}

/// The service's run under a protected request, boxed: awaited by the
/// request, or, if the request is dropped before the run ends and `hand_on`
/// is set (run to completion), handed to a task of its own, which also
/// reads the response body to its end so that it is recorded. The box itself
/// is handed on, so the run is never moved while it is pinned.
pub(crate) struct Run<B, E> {
    future: Option<BoxedRun<B, E>>,
    hand_on: Option<HandOn<B, E>>,
}

/// Hands a dropped request's run to a task of its own.
type HandOn<B, E> = fn(BoxedRun<B, E>);

/// What a [`Run`] awaits.
type BoxedRun<B, E> = Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

impl<B, E> Run<B, E> {
    /// A run that is never handed on: dropped, it is dropped (a request
    /// passed through unprotected).
    pub(crate) fn unprotected(
        future: impl Future<Output = Result<Response<ResponseBody<B>>, E>> + Send + 'static,
    ) -> Self {
        Self {
            future: Some(Box::pin(future)),
            hand_on: None,
        }
    }
}

impl<B, E> Future for Run<B, E> {
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(future) = &mut self.future else {
            return Poll::Pending;
        };
        let output = std::task::ready!(future.as_mut().poll(cx));
        self.future = None;
        Poll::Ready(output)
    }
}

impl<B, E> Drop for Run<B, E> {
    fn drop(&mut self) {
        // Never hand on a run that panicked: its claim is released instead.
        if std::thread::panicking() {
            return;
        }
        if let (Some(hand_on), Some(future)) = (self.hand_on, self.future.take()) {
            hand_on(future);
        }
    }
}

/// Run to completion: a run its request dropped goes on to the end on a task
/// of its own, and its response is read to the end and recorded, so the
/// client's retry gets it.
fn complete_in_background<B, E>(run: BoxedRun<B, E>)
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        // No runtime to carry the work: the claim is released (or lapses).
        return;
    };
    runtime.spawn(async move {
        if let Ok(response) = run.await {
            drain(response.into_body()).await;
        }
    });
}

/// A store call that must finish before the response goes out: a release, or
/// the record of an empty body. Boxed, so that the common path (a body that
/// records itself as it streams) carries no room for it.
type Settle = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Turns the service's answer into the layer's response: an error or a
/// status the policy does not record releases the claim; anything else streams
/// through a recording body.
fn respond<St, B, E>(
    claim: Claim<St>,
    result: Result<Response<B>, E>,
) -> (Result<Response<ResponseBody<B>>, E>, Option<Settle>)
where
    St: Store,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if claim.completed_by_service() {
        // The service completed the record in its own transaction: the
        // response goes out as it is, and nothing is recorded again.
        let recordable = result
            .as_ref()
            .is_ok_and(|response| (claim.config().record_policy)(response.status()));
        let response = result.map(|response| response.map(ResponseBody::inner));
        if recordable {
            claim.dismiss();
            return (response, None);
        }
        return (response, Some(Box::pin(claim.release_if_uncommitted())));
    }
    let response = match result {
        Ok(response) => response,
        Err(error) => return (Err(error), Some(Box::pin(claim.release()))),
    };
    let config = claim.config();
    if !(config.record_policy)(response.status()) {
        let response = response.map(ResponseBody::inner);
        return (Ok(response), Some(Box::pin(claim.release())));
    }
    let (parts, body) = response.into_parts();
    let headers = recordable_headers(&parts.headers);
    let expected_len = body
        .size_hint()
        .exact()
        .or_else(|| declared_len(&parts.headers));
    if body.is_end_stream() || expected_len == Some(0) {
        // The head alone tells the client the response is complete.
        let recorded = RecordedResponse {
            status: parts.status,
            headers,
            body: Bytes::new(),
        };
        let record = Box::pin(claim.record(Some(recorded), None));
        return (
            Ok(Response::from_parts(parts, ResponseBody::inner(body))),
            Some(record),
        );
    }
    let limit = config.response_record_limit;
    let detach = config
        .run_to_completion
        .then_some(drain_in_background::<B> as fn(_));
    let pending = Box::pin(PendingRecord::new(
        claim,
        parts.status,
        headers,
        Claim::record,
    ));
    let body = ResponseBody::recording(body, limit, expected_len, pending, detach);
    (Ok(Response::from_parts(parts, body)), None)
}

pin_project! {
    /// The service's future under its claim, then the store call its answer
    /// needs before it goes out (if any). Written out rather than an async
    /// block so that the service's future is polled in place, inside the
    /// [`Run`]'s one box: an async block would keep it twice (as captured, and
    /// as awaited), or need a box of its own.
    #[project = ExecutionProj]
    enum Execution<F, St: Store, B, E> {
        /// The service runs; the lease is renewed while it is pending.
        /// Dropped now, the claim releases the key (unless the whole run is
        /// handed on first).
        Running {
            #[pin]
            future: F,
            claim: Option<Claim<St>>,
        },
        /// The service answered; a release or the record of an empty body
        /// must end before the answer goes out.
        Settling {
            response: Option<Result<Response<ResponseBody<B>>, E>>,
            settle: Settle,
        },
    }
}

impl<F, St, B, E> Future for Execution<F, St, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    St: Store,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.as_mut().project() {
            ExecutionProj::Running { future, claim } => {
                let Some(held) = claim else {
                    return Poll::Pending;
                };
                let Poll::Ready(result) = future.poll(cx) else {
                    held.poll_renew(cx);
                    return Poll::Pending;
                };
                let Some(claim) = claim.take() else {
                    return Poll::Pending;
                };
                let (response, settle) = respond(claim, result);
                let Some(settle) = settle else {
                    return Poll::Ready(response);
                };
                self.set(Self::Settling {
                    response: Some(response),
                    settle,
                });
                self.poll(cx)
            }
            ExecutionProj::Settling { response, settle } => {
                std::task::ready!(settle.as_mut().poll(cx));
                match response.take() {
                    Some(response) => Poll::Ready(response),
                    None => Poll::Pending,
                }
            }
        }
    }
}

/// Run to completion: the rest of a response body the client dropped is read
/// and recorded on a task of its own.
fn drain_in_background<B>(recording: Recording<B>)
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(recording.drain());
    }
}

/// Reads a response body to its end, for its record's sake.
async fn drain<B>(body: ResponseBody<B>)
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        if frame.is_err() {
            return;
        }
    }
}
