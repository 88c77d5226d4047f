//! The binary form of a recorded response, shared by the networked stores:
//! compact, byte-exact, and decoded defensively (a store's bytes may be
//! truncated or hostile; decoding never panics and never allocates more than
//! the input holds, plus room for the two headers a replay adds).
//!
//! Layout (integers big-endian):
//!
//! ```text
//! u8 version (1)
//! u8 kind: 0 = tombstone (nothing follows), 1 = response
//! u16 status
//! u32 header count, then per header: u16 name length, name, u32 value length, value
//! body: every remaining byte
//! ```

// PostgreSQL keeps the status and body in columns of their own and uses only
// the header block: built for it alone, the whole-record form goes unused.
#![cfg_attr(not(any(feature = "redis", feature = "fuzzing")), allow(dead_code))]

use bytes::{Buf, BufMut, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::{RecordedResponse, StoreError, StoreErrorKind};

const VERSION: u8 = 1;
const TOMBSTONE: u8 = 0;
const RESPONSE: u8 = 1;
/// The smallest encoded header: two length fields and a one-byte name.
const MIN_HEADER_LEN: usize = 2 + 1 + 4;

/// The exact length of `encode(response)`, so a buffer can be sized once.
pub(crate) fn encoded_len(response: Option<&RecordedResponse>) -> usize {
    let Some(response) = response else {
        return 2;
    };
    let headers: usize = response
        .headers
        .iter()
        .map(|(name, value)| 2 + name.as_str().len() + 4 + value.len())
        .sum();
    2 + 2 + 4 + headers + response.body.len()
}

/// Appends the encoded form of `response` (`None`: a tombstone) to `out`.
pub(crate) fn encode(response: Option<&RecordedResponse>, out: &mut Vec<u8>) {
    out.reserve_exact(encoded_len(response));
    out.put_u8(VERSION);
    let Some(response) = response else {
        out.put_u8(TOMBSTONE);
        return;
    };
    out.put_u8(RESPONSE);
    out.put_u16(response.status.as_u16());
    encode_headers(&response.headers, out);
    out.put_slice(&response.body);
}

/// Appends the header block: a count, then each name and value with its
/// length.
pub(crate) fn encode_headers(headers: &HeaderMap, out: &mut Vec<u8>) {
    out.put_u32(headers.len() as u32);
    for (name, value) in headers {
        out.put_u16(name.as_str().len() as u16);
        out.put_slice(name.as_str().as_bytes());
        out.put_u32(value.len() as u32);
        out.put_slice(value.as_bytes());
    }
}

/// Decodes a header block written by [`encode_headers`] from the front of
/// `bytes`, leaving the rest.
pub(crate) fn decode_headers(bytes: &mut Bytes) -> Result<HeaderMap, StoreError> {
    let corrupt = || StoreError::new(StoreErrorKind::Corrupt);
    if bytes.remaining() < 4 {
        return Err(corrupt());
    }
    let count = bytes.get_u32() as usize;
    if count > bytes.remaining() / MIN_HEADER_LEN {
        return Err(corrupt());
    }
    // Two slots more than the block holds: a replay adds its marker header,
    // and servers add `Content-Length` (axum's router, hyper) to a head
    // recorded without it; a map sized exactly would grow (reallocate) twice.
    let mut headers = HeaderMap::with_capacity(count + 2);
    for _ in 0..count {
        let name = take(bytes, 2)?;
        let name = HeaderName::from_bytes(&name).map_err(|_| corrupt())?;
        let value = take(bytes, 4)?;
        let value = HeaderValue::from_maybe_shared(value).map_err(|_| corrupt())?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Decodes what [`encode`] wrote. The body shares `bytes` (no copy).
pub(crate) fn decode(mut bytes: Bytes) -> Result<Option<RecordedResponse>, StoreError> {
    let corrupt = || StoreError::new(StoreErrorKind::Corrupt);
    if bytes.remaining() < 2 || bytes.get_u8() != VERSION {
        return Err(corrupt());
    }
    match bytes.get_u8() {
        TOMBSTONE if bytes.is_empty() => return Ok(None),
        RESPONSE => {}
        _ => return Err(corrupt()),
    }
    if bytes.remaining() < 2 {
        return Err(corrupt());
    }
    let status = StatusCode::from_u16(bytes.get_u16()).map_err(|_| corrupt())?;
    let headers = decode_headers(&mut bytes)?;
    Ok(Some(RecordedResponse {
        status,
        headers,
        body: bytes,
    }))
}

/// Takes a field prefixed by its length in `width` bytes (2 or 4).
fn take(bytes: &mut Bytes, width: usize) -> Result<Bytes, StoreError> {
    let corrupt = || StoreError::new(StoreErrorKind::Corrupt);
    if bytes.remaining() < width {
        return Err(corrupt());
    }
    let len = match width {
        2 => usize::from(bytes.get_u16()),
        _ => bytes.get_u32() as usize,
    };
    if bytes.remaining() < len {
        return Err(corrupt());
    }
    Ok(bytes.split_to(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordedResponse {
        let mut headers = HeaderMap::new();
        headers.insert("location", HeaderValue::from_static("/orders/1"));
        headers.append("vary", HeaderValue::from_static("a"));
        headers.append("vary", HeaderValue::from_static("b"));
        headers.insert("x-raw", HeaderValue::from_bytes(b"\x80\xff").unwrap());
        RecordedResponse {
            status: StatusCode::CREATED,
            headers,
            body: Bytes::from((0..=255u8).collect::<Vec<_>>()),
        }
    }

    fn round_trip(response: Option<&RecordedResponse>) -> Option<RecordedResponse> {
        let mut out = Vec::new();
        encode(response, &mut out);
        assert_eq!(out.len(), encoded_len(response), "the length is exact");
        assert_eq!(out.capacity(), out.len(), "the buffer is sized once");
        decode(Bytes::from(out)).unwrap()
    }

    #[test]
    fn responses_and_tombstones_round_trip_byte_for_byte() {
        let response = sample();
        assert_eq!(round_trip(Some(&response)), Some(response));
        assert_eq!(round_trip(None), None);
        let empty = RecordedResponse {
            status: StatusCode::NO_CONTENT,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        assert_eq!(round_trip(Some(&empty)), Some(empty));
    }

    #[test]
    fn a_decoded_head_has_room_for_what_a_replay_adds() {
        // One header: the shape where a map sized exactly has no spare slot.
        let mut response = sample();
        response.headers = HeaderMap::new();
        response
            .headers
            .insert("content-type", HeaderValue::from_static("text/plain"));
        let mut out = Vec::new();
        encode(Some(&response), &mut out);
        let mut headers = decode(Bytes::from(out)).unwrap().unwrap().headers;
        let capacity = headers.capacity();
        assert!(
            capacity >= headers.len() + 2,
            "{capacity} for {}",
            headers.len()
        );
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
        headers.insert("content-length", HeaderValue::from_static("256"));
        assert_eq!(headers.capacity(), capacity, "the map did not grow");
    }

    #[test]
    fn every_truncation_is_refused_without_panic() {
        let mut out = Vec::new();
        encode(Some(&sample()), &mut out);
        let head_len = out.len() - 256;
        for len in 0..head_len {
            let truncated = Bytes::copy_from_slice(&out[..len]);
            assert!(decode(truncated).is_err(), "accepted {len} bytes");
        }
    }

    #[test]
    fn hostile_counts_and_bytes_are_refused() {
        // A header count far beyond the input: no huge allocation, an error.
        let hostile = [1, 1, 0, 200, 0xff, 0xff, 0xff, 0xff, 0, 1, b'a'];
        assert!(decode(Bytes::copy_from_slice(&hostile)).is_err());
        // Another version, an unknown kind, trailing bytes after a tombstone.
        for bad in [
            &[2u8, 0][..],
            &[1, 7],
            &[1, 0, 0],
            &[1, 1, 0, 99, 0, 0, 0, 0],
        ] {
            assert!(decode(Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
        // A header name that is not a token.
        let bad_name = [1, 1, 0, 200, 0, 0, 0, 1, 0, 1, b' ', 0, 0, 0, 0];
        assert!(decode(Bytes::copy_from_slice(&bad_name)).is_err());
    }
}
