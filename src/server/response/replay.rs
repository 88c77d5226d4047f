//! Replays: the recorded response, sent again and marked as such, or the
//! response in flight, joined as it streams.

use http::{HeaderValue, Response};

use super::body::ResponseBody;
use crate::IDEMPOTENT_REPLAYED;
use crate::server::join::{JoinedBody, LiveHead, Watcher};
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
    let mut response = Response::new(ResponseBody::joined(JoinedBody::new(watcher)));
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers.clone();
    response
        .headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}
