//! The `Content-Length` a message declares, read the same way for requests
//! and responses.

use http::HeaderMap;
use http::header::CONTENT_LENGTH;

use crate::header_values::header_values;

/// The `Content-Length` a message declares, if it declares a valid one.
pub(crate) fn declared_len(headers: &HeaderMap) -> Option<u64> {
    header_values(headers, &CONTENT_LENGTH)
        .next()?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
