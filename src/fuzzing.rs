//! Hooks for the fuzz targets in `fuzz/` (feature `fuzzing`): the decoders of
//! stored bytes, which are private otherwise. Not a public API.

use bytes::Bytes;

/// Decodes a record as the networked stores write it; never panics.
pub fn decode_record(bytes: &[u8]) -> bool {
    crate::store::codec::decode(Bytes::copy_from_slice(bytes)).is_ok()
}

/// Decodes a header block as `PostgresStore` writes it; never panics.
pub fn decode_headers(bytes: &[u8]) -> bool {
    let mut bytes = Bytes::copy_from_slice(bytes);
    crate::store::codec::decode_headers(&mut bytes).is_ok()
}

/// Encodes then decodes a record: the bytes come back the same.
pub fn round_trip(status: u16, headers: &[(&[u8], &[u8])], body: &[u8]) -> bool {
    use crate::store::RecordedResponse;
    let Ok(status) = http::StatusCode::from_u16(status) else {
        return true;
    };
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) else {
            return true;
        };
        map.append(name, value);
    }
    let response = RecordedResponse {
        status,
        headers: map,
        body: Bytes::copy_from_slice(body),
    };
    let mut encoded = Vec::new();
    crate::store::codec::encode(Some(&response), &mut encoded);
    crate::store::codec::decode(Bytes::from(encoded)).ok() == Some(Some(response))
}

/// Decodes a Redis value of `RedisStore` (a claim's answer); never panics.
#[cfg(feature = "redis")]
pub fn decode_redis_value(bytes: &[u8]) -> bool {
    crate::store::redis::decode_held(bytes.to_vec()).is_ok()
}

/// Returns the canonical form of a JSON body, as `canonical_json(true)` fingerprints
/// it; `None` for a body that is not JSON. Never panics.
pub fn canonicalize_json(bytes: &[u8]) -> Option<Vec<u8>> {
    crate::server::canonicalize(bytes)
}
