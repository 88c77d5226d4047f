//! Replays: the recorded response, sent again and marked as such.

use http::{HeaderValue, Response};

use super::body::ResponseBody;
use crate::IDEMPOTENT_REPLAYED;
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
