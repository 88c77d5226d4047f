//! Reading `Retry-After` (RFC 9110 section 10.2.3).

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::RETRY_AFTER;

/// How long the server asked the client to wait: `Retry-After` as
/// delay-seconds or as an HTTP date (a date in the past means now). `None`
/// when the header is absent, repeated or malformed.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let mut values = headers.get_all(RETRY_AFTER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        // Too many digits for a u64 is a wait longer than anyone allows.
        return Some(Duration::from_secs(text.parse().unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn parse(values: &[&'static str]) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(RETRY_AFTER, HeaderValue::from_static(value));
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        retry_after(&headers, now)
    }

    #[test]
    fn reads_delay_seconds() {
        assert_eq!(parse(&["1"]), Some(Duration::from_secs(1)));
        assert_eq!(parse(&["0"]), Some(Duration::ZERO));
        assert_eq!(parse(&[" 120 "]), Some(Duration::from_secs(120)));
        assert_eq!(
            parse(&["99999999999999999999999"]),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn reads_http_dates_relative_to_now() {
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        assert_eq!(
            parse(&["Sun, 06 Nov 1994 08:49:40 GMT"]),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse(&["Sun, 06 Nov 1994 08:00:00 GMT"]),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&["-1"]), None);
        assert_eq!(parse(&["1.5"]), None);
        assert_eq!(parse(&["soon"]), None);
        assert_eq!(parse(&[""]), None);
        assert_eq!(parse(&["1", "2"]), None);
    }
}
