//! The layer's own error responses: `application/problem+json` (RFC 9457).

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Response, StatusCode};

use super::body::ResponseBody;
use crate::header::{STRIPE_SHOULD_RETRY, X_SHOULD_RETRY};
use crate::server::request::InvalidKey;

/// Why the layer answered a request itself instead of running or replaying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    KeyMissing,
    KeyInvalid(InvalidKey),
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
    KEY_EMPTY => 400 "idempotency_key_invalid"
        "Idempotency key invalid"
        "The Idempotency-Key header is empty: a key holds 1 to 256 printable ASCII characters.";
    KEY_TOO_LONG => 400 "idempotency_key_invalid"
        "Idempotency key invalid"
        "The Idempotency-Key is longer than 256 characters.";
    KEY_BAD_CHARACTER => 400 "idempotency_key_invalid"
        "Idempotency key invalid"
        "The Idempotency-Key holds a character outside printable ASCII (a control character or a non-ASCII byte).";
    KEY_MALFORMED_QUOTED => 400 "idempotency_key_invalid"
        "Idempotency key invalid"
        "The Idempotency-Key starts with a double quote but is not a well-formed quoted string (end it with a quote; escape only quotes and backslashes).";
    KEY_TWICE => 400 "idempotency_key_invalid"
        "Idempotency key invalid"
        "The request carries more than one Idempotency-Key header; send exactly one.";
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

/// How the layer writes its rejections: with or without retry hints, and the
/// payload mismatch's detail when fingerprinted headers are part of it.
#[derive(Debug, Clone)]
pub(crate) struct RejectionFormat {
    /// `Stripe-Should-Retry` and `x-should-retry` on every rejection that
    /// has a clear answer.
    pub(crate) retry_hints: bool,
    /// The mismatch documents (409, 422) naming the fingerprinted headers;
    /// `None` when no header is fingerprinted.
    mismatch: Option<[Bytes; 2]>,
}

impl Default for RejectionFormat {
    fn default() -> Self {
        Self {
            retry_hints: true,
            mismatch: None,
        }
    }
}

impl RejectionFormat {
    /// The format of a rejection made before the request is read: hints or
    /// none, the default texts.
    pub(crate) fn hints_only(retry_hints: bool) -> Self {
        Self {
            retry_hints,
            mismatch: None,
        }
    }

    /// Writes the mismatch details for the fingerprinted `headers`.
    pub(crate) fn fingerprinted_headers(&mut self, headers: &[HeaderName]) {
        if headers.is_empty() {
            self.mismatch = None;
            return;
        }
        let names: Vec<&str> = headers.iter().map(HeaderName::as_str).collect();
        // Header names are tokens: no character of theirs needs escaping in JSON.
        let detail = format!(
            "This Idempotency-Key was already used with a different method, path, body or \
             value of the header{} {}.",
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        );
        let document = |status: u16| {
            Bytes::from(format!(
                r#"{{"type":"https://docs.rs/tower-idempotency/latest/tower_idempotency/#idempotency_key_payload_mismatch","title":"Idempotency key reused with a different request","status":{status},"code":"idempotency_key_payload_mismatch","detail":"{detail}"}}"#
            ))
        };
        self.mismatch = Some([document(409), document(422)]);
    }

    /// The problem document of `rejection` as a response with a body of
    /// `Bytes`.
    pub(crate) fn response(&self, rejection: Rejection) -> Response<Bytes> {
        let mut response = rejection.into_response();
        match (&self.mismatch, rejection) {
            (Some([conflict, _]), Rejection::PayloadMismatch) => {
                *response.body_mut() = conflict.clone();
            }
            (Some([_, unprocessable]), Rejection::PayloadMismatchUnprocessable) => {
                *response.body_mut() = unprocessable.clone();
            }
            _ => {}
        }
        if self.retry_hints
            && let Some(retry) = rejection.should_retry()
        {
            let hint = HeaderValue::from_static(if retry { "true" } else { "false" });
            response
                .headers_mut()
                .insert(STRIPE_SHOULD_RETRY, hint.clone());
            response.headers_mut().insert(X_SHOULD_RETRY, hint);
        }
        response
    }
}

impl Rejection {
    /// Whether a retry of the same request can succeed: `false` when only a
    /// new key or another request can (a retry with the key is refused the
    /// same way), `true` when a retry soon can, and `None` when it depends
    /// (an unreadable body: the client has usually gone anyway).
    pub(crate) fn should_retry(self) -> Option<bool> {
        match self {
            Self::KeyMissing
            | Self::KeyInvalid(_)
            | Self::PayloadMismatch
            | Self::PayloadMismatchUnprocessable
            | Self::NotReplayable
            | Self::RequestTooLarge => Some(false),
            Self::InProgress { .. } | Self::StoreUnavailable => Some(true),
            Self::RequestBodyUnreadable => None,
        }
    }

    fn problem(self) -> &'static Problem {
        match self {
            Self::KeyMissing => &KEY_MISSING,
            Self::KeyInvalid(why) => match why {
                InvalidKey::Empty => &KEY_EMPTY,
                InvalidKey::TooLong => &KEY_TOO_LONG,
                InvalidKey::InvalidCharacter => &KEY_BAD_CHARACTER,
                InvalidKey::MalformedQuotedString => &KEY_MALFORMED_QUOTED,
                InvalidKey::MultipleHeaders => &KEY_TWICE,
            },
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

/// Answers with `rejection`, written as `format` says, in the layer's body
/// type.
pub(crate) fn rejection_response<B>(
    rejection: Rejection,
    format: &RejectionFormat,
) -> Response<ResponseBody<B>> {
    format.response(rejection).map(ResponseBody::full)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [(Rejection, u16, &str); 9] = [
        (Rejection::KeyMissing, 400, "idempotency_key_missing"),
        (
            Rejection::KeyInvalid(InvalidKey::Empty),
            400,
            "idempotency_key_invalid",
        ),
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
    fn every_rejection_carries_its_retry_hint_in_both_headers() {
        let format = RejectionFormat::default();
        for (rejection, _, code) in ALL {
            let response = format.response(rejection);
            let expected = match code {
                "idempotency_key_in_progress" | "idempotency_store_unavailable" => Some("true"),
                "idempotency_request_body_unreadable" => None,
                _ => Some("false"),
            };
            for name in [STRIPE_SHOULD_RETRY, X_SHOULD_RETRY] {
                let hint = response.headers().get(&name).map(|v| v.to_str().unwrap());
                assert_eq!(hint, expected, "{code}: {name}");
            }
            let off = RejectionFormat::hints_only(false).response(rejection);
            assert!(!off.headers().contains_key(STRIPE_SHOULD_RETRY), "{code}");
            assert!(!off.headers().contains_key(X_SHOULD_RETRY), "{code}");
        }
    }

    #[test]
    fn each_invalid_key_rule_has_its_own_detail() {
        let details: std::collections::HashSet<String> = [
            InvalidKey::Empty,
            InvalidKey::TooLong,
            InvalidKey::InvalidCharacter,
            InvalidKey::MalformedQuotedString,
            InvalidKey::MultipleHeaders,
        ]
        .into_iter()
        .map(|why| {
            let response = Rejection::KeyInvalid(why).into_response();
            let doc: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
            assert_eq!(doc["code"], "idempotency_key_invalid");
            doc["detail"].as_str().unwrap().to_owned()
        })
        .collect();
        assert_eq!(details.len(), 5, "{details:?}");
    }

    #[test]
    fn a_mismatch_names_the_fingerprinted_headers() {
        let mut format = RejectionFormat::default();
        format.fingerprinted_headers(&[
            HeaderName::from_static("x-currency"),
            HeaderName::from_static("x-region"),
        ]);
        for (rejection, status) in [
            (Rejection::PayloadMismatch, 409),
            (Rejection::PayloadMismatchUnprocessable, 422),
        ] {
            let response = format.response(rejection);
            assert_eq!(response.status(), status);
            let doc: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
            assert_eq!(doc["status"], status);
            assert_eq!(doc["code"], "idempotency_key_payload_mismatch");
            let detail = doc["detail"].as_str().unwrap();
            assert!(detail.contains("headers x-currency, x-region"), "{detail}");
        }
        format.fingerprinted_headers(&[]);
        let plain = format.response(Rejection::PayloadMismatch);
        assert_eq!(plain.body(), PAYLOAD_MISMATCH.json.as_bytes());
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
