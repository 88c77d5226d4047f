//! Which statuses the layer records (the headers a record keeps are the
//! store's rule: `crate::store::recordable_headers`).

use http::StatusCode;

/// Tells whether the default recording policy records `status`: every final
/// response except those a retry may well change.
///
/// Not recorded: 1xx (not a final answer), 408, 425 and 429 (the client is
/// asked to try again), and every 5xx (the server failed; the work may not be
/// done). The claim is released instead, so the retry runs the service again.
/// Every other 2xx, 3xx and 4xx is recorded and replayed.
///
/// ```
/// use http::StatusCode;
/// use tower_idempotency::default_record_policy;
///
/// assert!(default_record_policy(StatusCode::CREATED));
/// assert!(default_record_policy(StatusCode::UNPROCESSABLE_ENTITY));
/// assert!(!default_record_policy(StatusCode::TOO_MANY_REQUESTS));
/// assert!(!default_record_policy(StatusCode::BAD_GATEWAY));
/// ```
pub fn default_record_policy(status: StatusCode) -> bool {
    !(status.is_informational()
        || status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status.as_u16() == 425
        || status == StatusCode::TOO_MANY_REQUESTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_by_status() {
        for code in 100..600u16 {
            let status = StatusCode::from_u16(code).unwrap();
            let expected = (200..500).contains(&code) && ![408, 425, 429].contains(&code);
            assert_eq!(default_record_policy(status), expected, "{code}");
        }
    }
}
