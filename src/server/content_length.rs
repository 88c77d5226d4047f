//! The `Content-Length` a message declares, read the same way for requests
//! and responses.

use http::HeaderMap;
use http::header::CONTENT_LENGTH;

/// The `Content-Length` a message declares, if it declares a valid one.
pub(crate) fn declared_len(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
