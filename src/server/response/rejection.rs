//! The layer's own error responses: `application/problem+json` (RFC 9457).

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};

use super::body::ResponseBody;

/// Why the layer answered a request itself instead of running or replaying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    KeyMissing,
    KeyInvalid,
    PayloadMismatch,
    /// The IETF profile's payload mismatch: 422.
    PayloadMismatchUnprocessable,
    InProgress {
        retry_after: Duration,
    },
    NotReplayable,
    RequestTooLarge,
    RequestBodyUnreadable,
    StoreUnavailable,
}

/// A problem document, rendered at compile time.
struct Problem {
    status: StatusCode,
    json: &'static str,
}

/// Renders a problem document at compile time, so a rejection allocates no
/// JSON. Titles and details are fixed text: a rejection never echoes the
/// request, a stored response or another scope's data.
macro_rules! problem_json {
    ($status:literal, $code:literal, $title:literal, $detail:literal) => {
        concat!(
            r#"{"type":"https://docs.rs/tower-idempotency/latest/tower_idempotency/#"#,
            $code,
            r#"","title":""#,
            $title,
            r#"","status":"#,
            $status,
            r#","code":""#,
            $code,
            r#"","detail":""#,
            $detail,
            r#""}"#
        )
    };
}

macro_rules! problems {
    ($($name:ident => $status:literal $code:literal $title:literal $detail:literal;)*) => {
        $(
            const $name: Problem = Problem {
                status: match StatusCode::from_u16($status) {
                    Ok(status) => status,
                    Err(_) => panic!("invalid status"),
                },
                json: problem_json!($status, $code, $title, $detail),
            };
        )*
    };
}

problems! {
    KEY_MISSING => 400 "idempotency_key_missing"
        "Idempotency key missing"
        "This endpoint requires an Idempotency-Key header.";
    KEY_INVALID => 400 "idempotency_key_invalid"
        "Idempotency key invalid"
        "The Idempotency-Key header must appear once and hold 1 to 256 printable ASCII characters, bare or as a quoted string.";
    PAYLOAD_MISMATCH => 409 "idempotency_key_payload_mismatch"
        "Idempotency key reused with a different request"
        "This Idempotency-Key was already used with a different method, path or body.";
    PAYLOAD_MISMATCH_422 => 422 "idempotency_key_payload_mismatch"
        "Idempotency key reused with a different request"
        "This Idempotency-Key was already used with a different method, path or body.";
    IN_PROGRESS => 409 "idempotency_key_in_progress"
        "Request with this idempotency key in progress"
        "A request with this Idempotency-Key is still being processed. Retry after the time in Retry-After.";
    NOT_REPLAYABLE => 409 "idempotency_response_not_replayable"
        "Response too large to replay"
        "The request with this Idempotency-Key completed, but its response was too large to record, so it cannot be replayed.";
    REQUEST_TOO_LARGE => 413 "idempotency_request_too_large"
        "Request body too large"
        "The request body is larger than the limit for requests with an Idempotency-Key.";
    BODY_UNREADABLE => 400 "idempotency_request_body_unreadable"
        "Request body unreadable"
        "The request body could not be read in full.";
    STORE_UNAVAILABLE => 503 "idempotency_store_unavailable"
        "Idempotency store unavailable"
        "The idempotency store cannot be reached, so the request was not run. Retry later with the same Idempotency-Key.";
}

const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

impl Rejection {
    fn problem(self) -> &'static Problem {
        match self {
            Self::KeyMissing => &KEY_MISSING,
            Self::KeyInvalid => &KEY_INVALID,
            Self::PayloadMismatch => &PAYLOAD_MISMATCH,
            Self::PayloadMismatchUnprocessable => &PAYLOAD_MISMATCH_422,
            Self::InProgress { .. } => &IN_PROGRESS,
            Self::NotReplayable => &NOT_REPLAYABLE,
            Self::RequestTooLarge => &REQUEST_TOO_LARGE,
            Self::RequestBodyUnreadable => &BODY_UNREADABLE,
            Self::StoreUnavailable => &STORE_UNAVAILABLE,
        }
    }

    /// The problem document as a response with a body of `Bytes`.
    pub(crate) fn into_response(self) -> Response<Bytes> {
        let problem = self.problem();
        let mut response = Response::new(Bytes::from_static(problem.json.as_bytes()));
        *response.status_mut() = problem.status;
        response.headers_mut().insert(CONTENT_TYPE, PROBLEM_JSON);
        if let Self::InProgress { retry_after } = self {
            let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Answers with `rejection`, in the layer's body type.
pub(crate) fn rejection_response<B>(rejection: Rejection) -> Response<ResponseBody<B>> {
    rejection.into_response().map(ResponseBody::full)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [(Rejection, u16, &str); 9] = [
        (Rejection::KeyMissing, 400, "idempotency_key_missing"),
        (Rejection::KeyInvalid, 400, "idempotency_key_invalid"),
        (
            Rejection::PayloadMismatch,
            409,
            "idempotency_key_payload_mismatch",
        ),
        (
            Rejection::PayloadMismatchUnprocessable,
            422,
            "idempotency_key_payload_mismatch",
        ),
        (
            Rejection::InProgress {
                retry_after: Duration::from_secs(1),
            },
            409,
            "idempotency_key_in_progress",
        ),
        (
            Rejection::NotReplayable,
            409,
            "idempotency_response_not_replayable",
        ),
        (
            Rejection::RequestTooLarge,
            413,
            "idempotency_request_too_large",
        ),
        (
            Rejection::RequestBodyUnreadable,
            400,
            "idempotency_request_body_unreadable",
        ),
        (
            Rejection::StoreUnavailable,
            503,
            "idempotency_store_unavailable",
        ),
    ];

    #[test]
    fn every_problem_is_valid_json_with_its_status_and_code() {
        for (rejection, status, code) in ALL {
            let response = rejection.into_response();
            let doc: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
            assert_eq!(response.status(), status, "{rejection:?}");
            assert_eq!(doc["status"], status);
            assert_eq!(doc["code"], code);
            assert!(doc["type"].as_str().unwrap().ends_with(&format!("#{code}")));
            assert!(doc["title"].is_string() && doc["detail"].is_string());
            assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        }
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let response = Rejection::InProgress {
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(response.headers()[RETRY_AFTER], "2");
        let response = Rejection::InProgress {
            retry_after: Duration::ZERO,
        }
        .into_response();
        assert_eq!(response.headers()[RETRY_AFTER], "1");
    }
}
