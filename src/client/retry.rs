//! `RetryPolicy`: which answers a retry can fix, and how long to wait first.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode};
use tower::retry::Policy;

use super::random;
use super::retry_after::retry_after;
use crate::{IDEMPOTENCY_KEY, STRIPE_SHOULD_RETRY, X_SHOULD_RETRY};

/// A [`tower::retry::Policy`] that knows this crate's answers: it retries what
/// a retry can fix, never what it cannot, a bounded number of times, with
/// backoff and jitter.
///
/// | The attempt ended with | Retried? | After |
/// |---|---|---|
/// | a response saying `x-should-retry: false` or `Stripe-Should-Retry: false` (this crate's server sends it on the rejections no retry can fix) | no, whatever the status | |
/// | a response saying `x-should-retry: true` or `Stripe-Should-Retry: true` | yes | `Retry-After` if given, else backoff |
/// | an error from the client (connection refused or reset, a timeout layer's `Elapsed`, ...) | yes | backoff |
/// | `409` with `Retry-After` (`idempotency_key_in_progress`: the first attempt is still running) | yes | `Retry-After` |
/// | `429` with `Retry-After` (a rate limit that says when to come back) | yes | `Retry-After` |
/// | `502`, `503`, `504` | yes | `Retry-After` if given, else backoff |
/// | `409` or `429` without `Retry-After` (`idempotency_key_payload_mismatch`), `400`, `413`, `422`, any other status | no | |
///
/// A `409` is told apart by its `Retry-After`, so the policy reads no body:
/// this crate's server sends one with `idempotency_key_in_progress` and never
/// with a mismatch. A `409` from another server that gives no `Retry-After`
/// is returned, not retried: nothing says when trying again would help. A
/// `Retry-After` longer than [`max_retry_after`](Self::max_retry_after) is not
/// waited out either: the response is returned as it is.
///
/// It never repeats a request that is unsafe to repeat: a `POST`, `PATCH` or
/// other non-idempotent method without the key header is sent once and its
/// answer returned, whatever it is. So a stack with the layers in the wrong
/// order (a key set inside the retry) fails safe: no retries, never a second
/// execution.
///
/// | Setting | Default |
/// |---|---|
/// | [`max_attempts`](Self::max_attempts) | 4 (the first and 3 retries) |
/// | [`backoff`](Self::backoff) | from 100 ms, doubling, at most 5 s |
/// | [`max_retry_after`](Self::max_retry_after) | 30 s |
/// | [`header_name`](Self::header_name) | `Idempotency-Key` |
///
/// Backoff before retry *n* (from 1) is drawn uniformly from
/// `[d/2, d]`, where `d = min(max, base * 2^(n-1))`: never less than half the
/// step, so retries spread out without collapsing to zero. Waits run on
/// Tokio's clock (`tokio::time::sleep`).
///
/// The request body must be `Clone` (`String`, `Bytes`,
/// `http_body_util::Full<Bytes>`, ...): every attempt sends a clone of the
/// request, headers and key included.
///
/// ```
/// use std::time::Duration;
/// use tower::retry::RetryLayer;
/// use tower_idempotency::client::RetryPolicy;
///
/// let retry = RetryLayer::new(
///     RetryPolicy::new()
///         .max_attempts(5)
///         .backoff(Duration::from_millis(50), Duration::from_secs(2))
///         .max_retry_after(Duration::from_secs(10)),
/// );
/// ```
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    max_retry_after: Duration,
    header: HeaderName,
    /// Attempts finished in this call. tower's `Retry` clones the policy for
    /// each call, so this starts at zero every time.
    attempts_made: u32,
}

/// Why and how long to wait before the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Backoff,
    RetryAfter(Duration),
}

impl RetryPolicy {
    /// Creates the policy with its defaults: four attempts, backoff from 100 ms
    /// to 5 s, `Retry-After` up to 30 s.
    pub fn new() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
            header: IDEMPOTENCY_KEY,
            attempts_made: 0,
        }
    }

    /// Sets how many attempts one call may make in all, the first included.
    /// Default: 4. `1` (or `0`) means no retries.
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the backoff after an error or a 5xx without `Retry-After`: starts at
    /// `base`, doubles per retry, never above `max`, jittered (see above).
    /// Default: 100 ms and 5 s.
    #[must_use]
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_delay = base;
        self.max_delay = max.max(base);
        self
    }

    /// Sets the longest `Retry-After` the policy waits out; above it, the response
    /// is returned instead. Default: 30 s.
    #[must_use]
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Sets the header that carries the key, as set on
    /// [`SetIdempotencyKeyLayer::header_name`](super::SetIdempotencyKeyLayer::header_name).
    /// Default: `Idempotency-Key`.
    #[must_use]
    pub fn header_name(mut self, name: HeaderName) -> Self {
        self.header = name;
        self
    }

    /// Whether repeating this request is safe: its method is idempotent
    /// (RFC 9110 section 9.2.2), or it carries a key.
    fn repeatable<B>(&self, request: &Request<B>) -> bool {
        let method = request.method();
        let idempotent = [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ]
        .contains(method);
        idempotent || request.headers().contains_key(&self.header)
    }

    /// The wait before retry number `retry` (from 1).
    fn backoff_delay(&self, retry: u32) -> Duration {
        let step = self
            .base_delay
            .saturating_mul(
                1u32.checked_shl(retry.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_delay);
        let half = step / 2;
        half.saturating_add(half.mul_f64(random::unit_fraction()))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

/// What the server says of a retry, in either hint header: a `false` in
/// either wins.
fn hinted(headers: &HeaderMap) -> Option<bool> {
    let mut hint = None;
    for name in [X_SHOULD_RETRY, STRIPE_SHOULD_RETRY] {
        for value in headers.get_all(name) {
            match value.as_bytes() {
                b"false" => return Some(false),
                b"true" => hint = Some(true),
                _ => {}
            }
        }
    }
    hint
}

/// Whether an answer is worth another attempt, and after what.
fn classify(status: StatusCode, headers: &HeaderMap) -> Option<Wait> {
    let asked = || retry_after(headers, SystemTime::now());
    match hinted(headers) {
        Some(false) => return None,
        Some(true) => return Some(asked().map_or(Wait::Backoff, Wait::RetryAfter)),
        None => {}
    }
    match status {
        StatusCode::CONFLICT | StatusCode::TOO_MANY_REQUESTS => asked().map(Wait::RetryAfter),
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            Some(asked().map_or(Wait::Backoff, Wait::RetryAfter))
        }
        _ => None,
    }
}

impl<B, ResBody, E> Policy<Request<B>, Response<ResBody>, E> for RetryPolicy
where
    B: Clone,
{
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _request: &mut Request<B>,
        result: &mut Result<Response<ResBody>, E>,
    ) -> Option<Self::Future> {
        self.attempts_made = self.attempts_made.saturating_add(1);
        if self.attempts_made >= self.max_attempts {
            return None;
        }
        let wait = match result {
            Ok(response) => classify(response.status(), response.headers())?,
            Err(_) => Wait::Backoff,
        };
        let delay = match wait {
            Wait::Backoff => self.backoff_delay(self.attempts_made),
            Wait::RetryAfter(asked) if asked <= self.max_retry_after => asked,
            Wait::RetryAfter(_) => return None,
        };
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, request: &Request<B>) -> Option<Request<B>> {
        self.repeatable(request).then(|| request.clone())
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use http::header::RETRY_AFTER;

    use super::*;

    fn headers(retry_after: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn classifies_the_answers_a_retry_can_fix() {
        let in_progress = classify(StatusCode::CONFLICT, &headers(Some("1")));
        assert_eq!(in_progress, Some(Wait::RetryAfter(Duration::from_secs(1))));
        let limited = classify(StatusCode::TOO_MANY_REQUESTS, &headers(Some("2")));
        assert_eq!(limited, Some(Wait::RetryAfter(Duration::from_secs(2))));
        for status in [502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(classify(status, &headers(None)), Some(Wait::Backoff));
            assert_eq!(
                classify(status, &headers(Some("7"))),
                Some(Wait::RetryAfter(Duration::from_secs(7)))
            );
        }
    }

    #[test]
    fn never_retries_what_a_retry_cannot_fix() {
        for status in [200, 201, 400, 401, 404, 409, 413, 422, 429, 500, 501] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(classify(status, &headers(None)), None, "{status}");
        }
        assert_eq!(classify(StatusCode::BAD_REQUEST, &headers(Some("1"))), None);
        assert_eq!(classify(StatusCode::CONFLICT, &headers(Some("soon"))), None);
    }

    #[test]
    fn a_hint_of_false_wins_over_the_status_and_true_retries() {
        for (name, status) in [("x-should-retry", 503), ("stripe-should-retry", 409)] {
            let mut refused = headers(Some("1"));
            refused.insert(name, HeaderValue::from_static("false"));
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(classify(status, &refused), None, "{name}");
        }
        // Both headers, one false: false wins.
        let mut both = headers(None);
        both.insert("x-should-retry", HeaderValue::from_static("true"));
        both.insert("stripe-should-retry", HeaderValue::from_static("false"));
        assert_eq!(classify(StatusCode::SERVICE_UNAVAILABLE, &both), None);
        let mut asked = headers(None);
        asked.insert("x-should-retry", HeaderValue::from_static("true"));
        assert_eq!(classify(StatusCode::CONFLICT, &asked), Some(Wait::Backoff));
        // Anything but `true` or `false` is no hint.
        let mut garbled = headers(Some("1"));
        garbled.insert("x-should-retry", HeaderValue::from_static("maybe"));
        assert_eq!(
            classify(StatusCode::CONFLICT, &garbled),
            Some(Wait::RetryAfter(Duration::from_secs(1)))
        );
    }

    #[test]
    fn backoff_doubles_within_its_jitter_and_stops_at_the_maximum() {
        let policy =
            RetryPolicy::new().backoff(Duration::from_millis(100), Duration::from_millis(1000));
        for (retry, step) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            for _ in 0..200 {
                let delay = policy.backoff_delay(retry);
                let step = Duration::from_millis(step);
                assert!(
                    delay >= step / 2 && delay <= step,
                    "retry {retry}: {delay:?}"
                );
            }
        }
    }

    #[test]
    fn only_repeats_requests_that_are_safe_to_repeat() {
        let policy = RetryPolicy::new();
        let request = |method: Method, key: bool| {
            let mut request = Request::builder().method(method);
            if key {
                request = request.header("idempotency-key", "k");
            }
            request.body(()).unwrap()
        };
        assert!(!policy.repeatable(&request(Method::POST, false)));
        assert!(!policy.repeatable(&request(Method::PATCH, false)));
        assert!(policy.repeatable(&request(Method::POST, true)));
        assert!(policy.repeatable(&request(Method::PATCH, true)));
        assert!(policy.repeatable(&request(Method::GET, false)));
        assert!(policy.repeatable(&request(Method::PUT, false)));
        assert!(policy.repeatable(&request(Method::DELETE, false)));
    }
}
