//! The service's work under a claim: the lease renewed while it runs, its
//! response set up for recording, and, with run to completion, the work
//! carried on by a task of its own when the request is dropped before the end.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::Body;

use super::held::{Claim, PendingRecord};
use crate::server::BoxError;
use crate::server::content_length::declared_len;
use crate::server::response::{Recording, ResponseBody};
use crate::store::{RecordedResponse, Store, recordable_headers};

/// Runs `future` (the service's answer to a claimed request) and sets up the
/// record of its response. The run is made before the future and awaited in
/// place, so the future holds it once (an async fn would keep the claim and
/// the service's future twice, as passed and as bound).
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would keep its arguments twice"
)]
pub(crate) fn execute<F, St, B, E>(
    claim: Claim<St>,
    future: F,
) -> impl Future<Output = Result<Response<ResponseBody<B>>, E>> + Send
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    St: Store,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Send + 'static,
{
    let detach = claim
        .config()
        .run_to_completion
        .then_some(complete_in_background::<F, St, B, E> as fn(_, _));
    let mut running = Running {
        future: Some(Box::pin(future)),
        claim: Some(claim),
        detach,
    };
    async move {
        let (result, claim) = (&mut running).await;
        let (response, settle) = respond(claim, result);
        if let Some(settle) = settle {
            settle.await;
        }
        response
    }
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
    let pending = Box::new(PendingRecord::new(claim, parts.status, headers));
    let body = ResponseBody::recording(body, limit, expected_len, pending, detach);
    (Ok(Response::from_parts(parts, body)), None)
}

/// The service's future under its claim, renewing the lease while it is
/// pending. Boxed, so that if the request is dropped before the service
/// answers, `detach` can hand it to a task of its own (run to completion);
/// without `detach`, dropping it releases the claim.
struct Running<F, St: Store> {
    future: Option<Pin<Box<F>>>,
    claim: Option<Claim<St>>,
    detach: Option<Detach<F, St>>,
}

/// Hands a dropped request's work to a task of its own.
type Detach<F, St> = fn(Pin<Box<F>>, Claim<St>);

impl<F: Future, St: Store> Future for Running<F, St> {
    type Output = (F::Output, Claim<St>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(future) = &mut this.future else {
            return Poll::Pending;
        };
        match future.as_mut().poll(cx) {
            Poll::Ready(output) => {
                this.future = None;
                match this.claim.take() {
                    Some(claim) => Poll::Ready((output, claim)),
                    None => Poll::Pending,
                }
            }
            Poll::Pending => {
                if let Some(claim) = &mut this.claim {
                    claim.poll_renew(cx);
                }
                Poll::Pending
            }
        }
    }
}

impl<F, St: Store> Drop for Running<F, St> {
    fn drop(&mut self) {
        // Never hand on a future that panicked: the claim is released instead.
        if std::thread::panicking() {
            return;
        }
        if let (Some(detach), Some(future), Some(claim)) =
            (self.detach, self.future.take(), self.claim.take())
        {
            detach(future, claim);
        }
    }
}

/// Run to completion: the service's future, dropped by the request, runs on
/// a task of its own; its response is read to the end and recorded, so the
/// client's retry gets it.
fn complete_in_background<F, St, B, E>(future: Pin<Box<F>>, claim: Claim<St>)
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    St: Store,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        // No runtime to carry the work: the claim is released (or lapses).
        return;
    };
    runtime.spawn(async move {
        let running = Running {
            future: Some(future),
            claim: Some(claim),
            detach: None,
        };
        let (result, claim) = running.await;
        let (response, settle) = respond(claim, result);
        if let Some(settle) = settle {
            settle.await;
        }
        if let Ok(response) = response {
            drain(response.into_body()).await;
        }
    });
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
