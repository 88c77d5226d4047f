//! The headers a record keeps: those a replay may hand out again.

use http::header::{self, HeaderMap, HeaderName};

use crate::header_values::header_values;

/// Headers never recorded: hop-by-hop headers (RFC 9110 section 7.6.1), which
/// describe one connection, not the response, and credentials, so that a replay
/// never hands out a session. `Content-Length` is recomputed from the recorded
/// body on replay.
///
/// A `static`: a `const` array would be made (and dropped) at every use.
static NOT_RECORDED: [HeaderName; 12] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::SET_COOKIE,
    header::WWW_AUTHENTICATE,
    header::PROXY_AUTHENTICATE,
    header::AUTHORIZATION,
    header::CONTENT_LENGTH,
];

/// The headers of `headers` that a replay sends again, multi-valued headers
/// kept whole and in order.
pub(crate) fn recordable_headers(headers: &HeaderMap) -> HeaderMap {
    let named_by_connection = |name: &HeaderName| {
        header_values(headers, &header::CONNECTION).any(|value| {
            value.to_str().is_ok_and(|names| {
                names
                    .split(',')
                    .any(|named| named.trim().eq_ignore_ascii_case(name.as_str()))
            })
        })
    };
    let has_connection = header_values(headers, &header::CONNECTION).next().is_some();
    let mut kept = HeaderMap::with_capacity(headers.keys_len());
    for (name, value) in headers {
        // Most responses carry no Connection header: one look at the fixed list.
        if NOT_RECORDED.contains(name) || (has_connection && named_by_connection(name)) {
            continue;
        }
        kept.append(name.clone(), value.clone());
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_credentials_keeps_the_rest() {
        let mut headers = HeaderMap::new();
        headers.insert(header::LOCATION, "/orders/1".parse().unwrap());
        headers.append(header::SET_COOKIE, "session=secret".parse().unwrap());
        headers.append(header::VARY, "accept".parse().unwrap());
        headers.append(header::VARY, "accept-encoding".parse().unwrap());
        headers.insert(header::CONNECTION, "close, x-hop".parse().unwrap());
        headers.insert("x-hop", "1".parse().unwrap());
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        headers.insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
        let kept = recordable_headers(&headers);
        assert_eq!(kept[header::LOCATION], "/orders/1");
        let vary: Vec<_> = kept.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["accept", "accept-encoding"]);
        for gone in [
            "set-cookie",
            "connection",
            "x-hop",
            "transfer-encoding",
            "www-authenticate",
        ] {
            assert!(!kept.contains_key(gone), "{gone} was kept");
        }
    }
}
