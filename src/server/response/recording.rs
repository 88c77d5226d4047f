//! Which statuses the layer records (the headers a record keeps are the
//! store's rule: `crate::store::recordable_headers`).

use http::StatusCode;

/// Tells whether the default recording policy records `status`: every final
/// response except those a retry may well change.
///
/// Not recorded: 1xx (not a final answer), 408, 425 and 429 (the client is
/// asked to try again), every 5xx (the server failed; the work may not be
/// done), and 401 and 415: a request refused for its credentials or its
/// `Content-Type`, headers outside the fingerprint, before any handler ran
/// (an auth layer, or axum's `Json` extractor answering a request without
/// `content-type: application/json`). Recorded, they would stick to the key:
/// the retry with the header fixed is the same request to the fingerprint,
/// and would get the refusal replayed. The claim is released instead, so the
/// retry runs the service again. Every other 2xx, 3xx and 4xx is recorded
/// and replayed: a 400 or 422 for a body the framework could not parse is
/// the answer to that body, and a retry with another body is another request
/// (a mismatch), which wants a new key.
///
/// ```
/// use http::StatusCode;
/// use tower_idempotency::default_record_policy;
///
/// assert!(default_record_policy(StatusCode::CREATED));
/// assert!(default_record_policy(StatusCode::UNPROCESSABLE_ENTITY));
/// assert!(!default_record_policy(StatusCode::TOO_MANY_REQUESTS));
/// assert!(!default_record_policy(StatusCode::BAD_GATEWAY));
/// assert!(!default_record_policy(StatusCode::UNSUPPORTED_MEDIA_TYPE));
/// ```
pub fn default_record_policy(status: StatusCode) -> bool {
    !(status.is_informational()
        || status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status.as_u16() == 425
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::UNAUTHORIZED
        || status == StatusCode::UNSUPPORTED_MEDIA_TYPE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_by_status() {
        for code in 100..600u16 {
            let status = StatusCode::from_u16(code).unwrap();
            let expected = (200..500).contains(&code) && ![401, 408, 415, 425, 429].contains(&code);
            assert_eq!(default_record_policy(status), expected, "{code}");
        }
    }
}
