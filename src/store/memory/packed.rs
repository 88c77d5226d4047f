//! [`PackedRecord`]: a record of the memory store in one allocation, in a
//! form of its own (it never leaves the process, so it can be as small as
//! it likes and change between versions).
//!
//! Layout:
//!
//! ```text
//! [u8; 16] the map's key (a record is found by it: the map holds no copy)
//! u64 deadline, little-endian (ticks of the store's clock)
//! [u8; 32] fingerprint
//! u16 status, little-endian; 0 = tombstone (nothing follows)
//! varint header count, then per header, one of:
//!     u8 0x80 | i: the i-th common header line, name and value
//!     u8 i + 1: the i-th common header name, then a varint value length
//!        and the value
//!     u8 0: a varint name length, the name, a varint value length and the
//!        value
//! body: every remaining byte
//! ```
//!
//! Varints are LEB128 (7 bits a byte, low bits first), so a length under
//! 128 is one byte. A header line as common as `content-type:
//! application/json` is one byte in all, as in HTTP/2's static table; the
//! value then comes back as a static one, without a copy. Against the
//! networked stores' form, the head of a typical JSON response is about 40
//! bytes smaller.

use bytes::{Buf, Bytes};
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::{MapKey, Tick};
use crate::store::{Fingerprint, Record, RecordedResponse, StoreError, StoreErrorKind};

/// Where the fields of a [`PackedRecord`] start.
const KEY_AT: usize = 0;
const DEADLINE_AT: usize = KEY_AT + 16;
const FINGERPRINT_AT: usize = DEADLINE_AT + 8;
const STATUS_AT: usize = FINGERPRINT_AT + 32;

/// The status of a tombstone (no status code is 0).
const TOMBSTONE: u16 = 0;

/// A header name given in full, not by its index in [`COMMON`].
const LITERAL_NAME: u8 = 0;

/// The bit of a name byte that makes it an index in [`LINES`] instead.
const LINE: u8 = 0x80;

/// Response headers common enough to be written as one byte (their index
/// here, plus one). Appending to the list is free; reordering it is too,
/// since records never outlive the process. A `static`: a `const` array
/// would be made at every use.
static COMMON: [HeaderName; 20] = [
    header::CONTENT_TYPE,
    header::LOCATION,
    header::CACHE_CONTROL,
    header::ETAG,
    header::LAST_MODIFIED,
    header::VARY,
    header::DATE,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::CONTENT_DISPOSITION,
    header::EXPIRES,
    header::LINK,
    header::RETRY_AFTER,
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::STRICT_TRANSPORT_SECURITY,
    header::X_CONTENT_TYPE_OPTIONS,
    header::X_FRAME_OPTIONS,
    header::SERVER,
];

/// Response header lines common enough to be written as one byte in all
/// ([`LINE`] and their index here), name and value: what frameworks set by
/// themselves (axum's `Json`, a `String` body, a problem), and the usual
/// fixed security and caching headers. Appending is free, as for [`COMMON`].
static LINES: [(HeaderName, HeaderValue); 18] = [
    (
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    ),
    (
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    ),
    (
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    ),
    (
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    ),
    (
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    ),
    (
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    ),
    (
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    ),
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    (header::VARY, HeaderValue::from_static("accept-encoding")),
    (header::VARY, HeaderValue::from_static("origin")),
    (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
    (header::CONTENT_ENCODING, HeaderValue::from_static("br")),
    (
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    ),
    (
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    ),
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    ),
];

/// A record in as little memory as it takes: its key, deadline, fingerprint,
/// status, headers and body (unless the entry keeps the body apart).
#[derive(Debug)]
pub(super) struct PackedRecord(Box<[u8]>);

impl PackedRecord {
    pub(super) fn new(
        key: &MapKey,
        fingerprint: &Fingerprint,
        response: Option<&RecordedResponse>,
        deadline: Tick,
    ) -> Self {
        // Sized once: the boxed slice takes the buffer without reallocating.
        let mut packed = Vec::with_capacity(STATUS_AT + packed_len(response));
        packed.extend_from_slice(key.as_bytes());
        packed.extend_from_slice(&deadline.to_le_bytes());
        packed.extend_from_slice(&fingerprint.as_bytes()[..]);
        let Some(response) = response else {
            packed.extend_from_slice(&TOMBSTONE.to_le_bytes());
            return Self(packed.into_boxed_slice());
        };
        packed.extend_from_slice(&response.status.as_u16().to_le_bytes());
        put_varint(&mut packed, response.headers.len());
        for (name, value) in &response.headers {
            match packed_name(name, value) {
                PackedName::Line(index) => {
                    packed.push(index);
                    continue;
                }
                PackedName::Common(index) => packed.push(index),
                PackedName::Literal => {
                    packed.push(LITERAL_NAME);
                    put_varint(&mut packed, name.as_str().len());
                    packed.extend_from_slice(name.as_str().as_bytes());
                }
            }
            put_varint(&mut packed, value.len());
            packed.extend_from_slice(value.as_bytes());
        }
        packed.extend_from_slice(&response.body);
        Self(packed.into_boxed_slice())
    }

    pub(super) fn key(&self) -> MapKey {
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&self.0[KEY_AT..DEADLINE_AT]);
        MapKey::from_bytes(bytes)
    }

    pub(super) fn deadline(&self) -> Tick {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&self.0[DEADLINE_AT..FINGERPRINT_AT]);
        Tick::from_le_bytes(bytes)
    }

    pub(super) fn fingerprint(&self) -> Fingerprint {
        let mut bytes = [0; 32];
        bytes.copy_from_slice(&self.0[FINGERPRINT_AT..STATUS_AT]);
        Fingerprint::from_bytes(bytes)
    }

    /// The record, with `large_body` as its body if the entry keeps it apart.
    pub(super) fn unpack(&self, large_body: Option<&Bytes>) -> Result<Record, StoreError> {
        let mut response = unpack_response(&self.0[STATUS_AT..])?;
        if let (Some(body), Some(response)) = (large_body, &mut response) {
            response.body = body.clone();
        }
        Ok(Record {
            fingerprint: self.fingerprint(),
            response,
        })
    }
}

/// The bytes after the fingerprint that [`PackedRecord::new`] writes, its
/// status included.
fn packed_len(response: Option<&RecordedResponse>) -> usize {
    let Some(response) = response else {
        return 2;
    };
    let headers: usize = response
        .headers
        .iter()
        .map(|(name, value)| {
            let name = match packed_name(name, value) {
                PackedName::Line(_) => return 1,
                PackedName::Common(_) => 1,
                PackedName::Literal => 1 + varint_len(name.as_str().len()) + name.as_str().len(),
            };
            name + varint_len(value.len()) + value.len()
        })
        .sum();
    2 + varint_len(response.headers.len()) + headers + response.body.len()
}

/// How a header's name is written: its byte, for the first two.
enum PackedName {
    /// A common line: this byte is the whole header.
    Line(u8),
    /// A common name: the value follows.
    Common(u8),
    /// Neither: the name follows in full, then the value.
    Literal,
}

fn packed_name(name: &HeaderName, value: &HeaderValue) -> PackedName {
    if let Some(index) = LINES
        .iter()
        .position(|(line_name, line_value)| line_name == name && line_value == value)
        .and_then(|index| u8::try_from(index).ok())
    {
        return PackedName::Line(LINE | index);
    }
    match COMMON
        .iter()
        .position(|common| common == name)
        .and_then(|index| u8::try_from(index + 1).ok())
    {
        Some(index) => PackedName::Common(index),
        None => PackedName::Literal,
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

/// Reads what follows the fingerprint. The bytes are the store's own, so
/// they are well formed unless the store has a bug; even then this answers
/// [`StoreErrorKind::Corrupt`], never a panic.
fn unpack_response(packed: &[u8]) -> Result<Option<RecordedResponse>, StoreError> {
    let corrupt = || StoreError::new(StoreErrorKind::Corrupt);
    // One copy, which the header values and the body then share.
    let mut reader = Reader(Bytes::copy_from_slice(packed));
    let status = u16::from_le_bytes([reader.byte()?, reader.byte()?]);
    if status == TOMBSTONE {
        return if reader.0.is_empty() {
            Ok(None)
        } else {
            Err(corrupt())
        };
    }
    let status = StatusCode::from_u16(status).map_err(|_| corrupt())?;
    let count = reader.varint()?;
    // Each header takes a byte at least: a bound before sizing the map.
    if count > reader.0.len() {
        return Err(corrupt());
    }
    // Room for two more headers: a replay adds its marker, and servers add
    // `Content-Length` to a head recorded without it.
    let mut headers = HeaderMap::with_capacity(count + 2);
    for _ in 0..count {
        let name = match reader.byte()? {
            line if line & LINE != 0 => {
                let (name, value) = LINES.get(usize::from(line & !LINE)).ok_or_else(corrupt)?;
                headers.append(name.clone(), value.clone());
                continue;
            }
            LITERAL_NAME => {
                let len = reader.varint()?;
                HeaderName::from_bytes(&reader.take(len)?).map_err(|_| corrupt())?
            }
            index => COMMON
                .get(usize::from(index) - 1)
                .cloned()
                .ok_or_else(corrupt)?,
        };
        let len = reader.varint()?;
        let value = HeaderValue::from_maybe_shared(reader.take(len)?).map_err(|_| corrupt())?;
        headers.append(name, value);
    }
    Ok(Some(RecordedResponse {
        status,
        headers,
        body: reader.0,
    }))
}

/// Reads a packed record from the front, failing on a short one; what it
/// takes shares the record's bytes.
struct Reader(Bytes);

impl Reader {
    fn byte(&mut self) -> Result<u8, StoreError> {
        let first = *self
            .0
            .first()
            .ok_or_else(|| StoreError::new(StoreErrorKind::Corrupt))?;
        self.0.advance(1);
        Ok(first)
    }

    fn take(&mut self, len: usize) -> Result<Bytes, StoreError> {
        if len > self.0.len() {
            return Err(StoreError::new(StoreErrorKind::Corrupt));
        }
        Ok(self.0.split_to(len))
    }

    /// A varint of at most 9 bytes (63 bits, more than any length here).
    fn varint(&mut self) -> Result<usize, StoreError> {
        let mut n: u64 = 0;
        for shift in (0..63).step_by(7) {
            let byte = self.byte()?;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return usize::try_from(n).map_err(|_| StoreError::new(StoreErrorKind::Corrupt));
            }
        }
        Err(StoreError::new(StoreErrorKind::Corrupt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: MapKey = MapKey::from_bytes([3; 16]);

    fn fingerprint() -> Fingerprint {
        Fingerprint::from_bytes([7; 32])
    }

    fn response(headers: &[(&str, &[u8])], body: &[u8]) -> RecordedResponse {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        RecordedResponse {
            status: StatusCode::CREATED,
            headers: map,
            body: Bytes::copy_from_slice(body),
        }
    }

    fn round_trip(response: Option<RecordedResponse>) {
        let packed = PackedRecord::new(&KEY, &fingerprint(), response.as_ref(), 123_456_789);
        assert_eq!(packed.0.len(), STATUS_AT + packed_len(response.as_ref()));
        assert_eq!(packed.key(), KEY);
        assert_eq!(packed.deadline(), 123_456_789);
        let record = packed.unpack(None).unwrap();
        assert_eq!(record.fingerprint, fingerprint());
        assert_eq!(record.response, response);
    }

    #[test]
    fn every_kind_of_record_comes_back_as_it_went_in() {
        round_trip(None);
        round_trip(Some(response(&[], b"")));
        let every_byte: Vec<u8> = (0..=255).collect();
        let long_value = vec![b'v'; 300];
        round_trip(Some(response(
            &[
                ("content-type", b"application/json"),
                ("x-custom", b"one"),
                ("vary", b"accept"),
                ("vary", b"accept-encoding"),
                ("x-opaque", &[0x80, 0xff, b'a']),
                ("x-long", &long_value),
                ("server", b""),
            ],
            &every_byte,
        )));
        let many: Vec<(String, Vec<u8>)> = (0..200)
            .map(|i| (format!("x-header-{i}"), i.to_string().into_bytes()))
            .collect();
        let many: Vec<(&str, &[u8])> = many
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_slice()))
            .collect();
        round_trip(Some(response(&many, b"{}")));
    }

    #[test]
    fn every_common_name_packs_to_one_byte_and_back() {
        for name in &COMMON {
            // No common line has this value.
            let one = response(&[(name.as_str(), b"x")], b"");
            let packed = PackedRecord::new(&KEY, &fingerprint(), Some(&one), 0);
            // Status, count, name, value length, value.
            assert_eq!(packed.0.len(), STATUS_AT + 2 + 1 + 1 + 1 + 1, "{name}");
            let back = packed.unpack(None).unwrap().response.unwrap();
            assert_eq!(back.headers, one.headers, "{name}");
        }
    }

    #[test]
    fn every_common_line_packs_to_one_byte_and_back() {
        assert!(COMMON.len() < usize::from(LINE) && LINES.len() <= usize::from(LINE));
        for (name, value) in &LINES {
            let one = response(&[(name.as_str(), value.as_bytes())], b"");
            let packed = PackedRecord::new(&KEY, &fingerprint(), Some(&one), 0);
            // Status, count, line.
            assert_eq!(packed.0.len(), STATUS_AT + 2 + 1 + 1, "{name}: {value:?}");
            let back = packed.unpack(None).unwrap().response.unwrap();
            assert_eq!(back.headers, one.headers, "{name}: {value:?}");
        }
        // The same name with another value, or another case, is written out.
        let other = response(&[("x-frame-options", b"deny")], b"");
        let packed = PackedRecord::new(&KEY, &fingerprint(), Some(&other), 0);
        assert_eq!(packed.0.len(), STATUS_AT + 2 + 1 + 1 + 1 + 4);
        assert_eq!(packed.unpack(None).unwrap().response.unwrap(), other);
    }

    /// The shape the memory benchmarks record: a 109-byte body with axum's
    /// text content type. Its head takes 4 bytes after the fingerprint (the
    /// networked stores' form takes 51).
    #[test]
    fn a_small_response_packs_small() {
        let body = [b'x'; 109];
        let small = response(&[("content-type", b"text/plain; charset=utf-8")], &body);
        let packed = PackedRecord::new(&KEY, &fingerprint(), Some(&small), 0);
        assert_eq!(packed.0.len() - STATUS_AT, 2 + 1 + 1 + 109);
    }

    #[test]
    fn a_large_body_kept_apart_is_put_back() {
        let head = response(&[("location", b"/orders/1")], b"");
        let packed = PackedRecord::new(&KEY, &fingerprint(), Some(&head), 0);
        let body = Bytes::from(vec![1; 5000]);
        let back = packed.unpack(Some(&body)).unwrap().response.unwrap();
        assert_eq!(back.body.as_ptr(), body.as_ptr());
        assert_eq!(back.headers, head.headers);
    }

    /// Cut short or altered anywhere, a record reads as corrupt or as some
    /// record: never a panic.
    #[test]
    fn damaged_bytes_never_panic() {
        let full = response(
            &[("content-type", b"application/json"), ("x-custom", b"one")],
            b"{\"id\":1}",
        );
        let packed = PackedRecord::new(&KEY, &fingerprint(), Some(&full), 0);
        let tail = &packed.0[STATUS_AT..];
        for len in 0..tail.len() {
            let _ = unpack_response(&tail[..len]);
        }
        assert!(unpack_response(&tail[..1]).is_err());
        for at in 0..tail.len() {
            for byte in 0..=255u8 {
                let mut damaged = tail.to_vec();
                damaged[at] = byte;
                let _ = unpack_response(&damaged);
            }
        }
        // A count that promises more headers than the bytes can hold.
        assert!(unpack_response(&[201, 0, 0xff, 0xff, 0x03, 1]).is_err());
        // A tombstone with bytes after it.
        assert!(unpack_response(&[0, 0, 1]).is_err());
        // A varint that never ends.
        assert!(
            unpack_response(&[
                201, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ])
            .is_err()
        );
    }
}
