//! Replays: the recorded response, sent again and marked as such, or the
//! response in flight, joined as it streams.

use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::body::ResponseBody;
use crate::IDEMPOTENT_REPLAYED;
use crate::server::join::{JoinedBody, LiveHead, RelayedResponse, Watcher};
use crate::store::RecordedResponse;

/// Replays the recorded response, with `Idempotent-Replayed: true`.
pub(crate) fn replay<B>(recorded: RecordedResponse) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::full(recorded.body));
    *response.status_mut() = recorded.status;
    *response.headers_mut() = recorded.headers;
    response
        .headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

/// Answers with the head of the response in flight that `watcher` joined,
/// with `Idempotent-Replayed: true`, and its body as it streams.
pub(crate) fn joined<B>(head: &LiveHead, watcher: Watcher) -> Response<ResponseBody<B>> {
    let body = ResponseBody::joined(JoinedBody::new(watcher));
    marked(head.status, head.headers.clone(), body)
}

/// Answers with the head of a response joined on another replica, with
/// `Idempotent-Replayed: true`, and its body as it streams.
pub(crate) fn relayed<B>(response: RelayedResponse) -> Response<ResponseBody<B>> {
    let RelayedResponse {
        status,
        headers,
        body,
    } = response;
    marked(status, headers, ResponseBody::relayed(Box::new(body)))
}

fn marked<B>(
    status: StatusCode,
    headers: HeaderMap,
    body: ResponseBody<B>,
) -> Response<ResponseBody<B>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
        .headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}
