//! The request fingerprint: what makes two requests under one key "the same".

use http::HeaderName;
use http::request::Parts;
use sha2::{Digest, Sha256};

use super::canonical_json::canonicalize;
use crate::store::Fingerprint;

impl Fingerprint {
    /// Computes the layer's default fingerprint (no extra headers, raw
    /// body) for a request with head `parts` and body `body`: to log it, or
    /// to check a record by hand.
    ///
    /// ```
    /// use tower_idempotency::Fingerprint;
    ///
    /// let (parts, ()) = http::Request::post("/orders").body(()).unwrap().into_parts();
    /// assert_eq!(Fingerprint::of(&parts, b"{}"), Fingerprint::of(&parts, b"{}"));
    /// assert_ne!(Fingerprint::of(&parts, b"{}"), Fingerprint::of(&parts, b"[]"));
    /// ```
    pub fn of(parts: &Parts, body: &[u8]) -> Self {
        FingerprintConfig::default().fingerprint(parts, body)
    }
}

/// Which parts of a request the fingerprint covers beyond method, path, query
/// and body.
#[derive(Debug, Clone, Default)]
pub(crate) struct FingerprintConfig {
    /// Headers whose values are part of the fingerprint, in this order.
    pub(crate) headers: Vec<HeaderName>,
    /// Fingerprint a JSON body by its canonical form.
    pub(crate) canonical_json: bool,
}

/// Domain separation: a fingerprint is never equal to any other SHA-256 the
/// crate computes, and a future format can change the tag. Short, so that the
/// framing of a 1 KiB request still fits the 17 blocks SHA-256 needs for the
/// body alone.
const FINGERPRINT_TAG: &[u8] = b"TIFP1";

impl FingerprintConfig {
    /// The fingerprint of a request head and its whole body.
    ///
    /// Every variable-length field is written with its length first, and the
    /// number and order of fields is fixed by the configuration, so two
    /// different requests never frame alike.
    pub(crate) fn fingerprint(&self, parts: &Parts, body: &[u8]) -> Fingerprint {
        let mut hasher = Framer(Sha256::new());
        hasher.0.update(FINGERPRINT_TAG);
        hasher.field(parts.method.as_str().as_bytes());
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        hasher.field(path.as_bytes());
        hasher.count(self.headers.len());
        for name in &self.headers {
            hasher.field(name.as_str().as_bytes());
            let values = parts.headers.get_all(name);
            hasher.count(values.iter().count());
            for value in values {
                hasher.field(value.as_bytes());
            }
        }
        // A tag says which form of the body follows: a canonical form is valid
        // JSON and a raw body that falls back is not, but the tag keeps the
        // two apart without relying on that.
        match self.canonical_json.then(|| canonicalize(body)).flatten() {
            Some(canonical) => {
                hasher.0.update([1]);
                hasher.field(&canonical);
            }
            None => {
                hasher.0.update([0]);
                hasher.field(body);
            }
        }
        Fingerprint::from_bytes(hasher.0.finalize().into())
    }
}

/// Writes length-prefixed fields into a SHA-256.
pub(crate) struct Framer(pub(crate) Sha256);

impl Framer {
    pub(crate) fn count(&mut self, n: usize) {
        self.0.update((n as u64).to_be_bytes());
    }

    pub(crate) fn field(&mut self, bytes: &[u8]) {
        self.count(bytes.len());
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn fp(config: &FingerprintConfig, request: Request<&'static [u8]>) -> Fingerprint {
        let (parts, body) = request.into_parts();
        config.fingerprint(&parts, body)
    }

    fn post(uri: &str, body: &'static [u8]) -> Request<&'static [u8]> {
        Request::post(uri).body(body).unwrap()
    }

    #[test]
    fn same_request_same_fingerprint() {
        let config = FingerprintConfig::default();
        assert_eq!(
            fp(&config, post("/orders?a=1", b"{}")),
            fp(&config, post("/orders?a=1", b"{}"))
        );
    }

    #[test]
    fn method_path_query_and_body_each_matter() {
        let config = FingerprintConfig::default();
        let base = fp(&config, post("/orders?a=1", b"{}"));
        assert_ne!(base, fp(&config, post("/orders?a=2", b"{}")));
        assert_ne!(base, fp(&config, post("/order?a=1", b"{}")));
        assert_ne!(base, fp(&config, post("/orders?a=1", b"{ }")));
        let patch = Request::patch("/orders?a=1").body(&b"{}"[..]).unwrap();
        assert_ne!(base, fp(&config, patch));
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        // Without framing, path "/ab" + body "c" would hash like path "/a" + body "bc".
        let config = FingerprintConfig::default();
        assert_ne!(
            fp(&config, post("/ab", b"c")),
            fp(&config, post("/a", b"bc"))
        );
    }

    #[test]
    fn chosen_headers_are_fingerprinted_others_are_not() {
        let config = FingerprintConfig {
            headers: vec![HeaderName::from_static("x-account")],
            ..FingerprintConfig::default()
        };
        let with = |account: &str, other: &str| {
            Request::post("/")
                .header("x-account", account)
                .header("x-other", other)
                .body(&b""[..])
                .unwrap()
        };
        assert_eq!(fp(&config, with("a", "1")), fp(&config, with("a", "2")));
        assert_ne!(fp(&config, with("a", "1")), fp(&config, with("b", "1")));
        // One header with two values differs from the joined value.
        let two = Request::post("/")
            .header("x-account", "a")
            .header("x-account", "b")
            .body(&b""[..])
            .unwrap();
        let joined = Request::post("/")
            .header("x-account", "ab")
            .body(&b""[..])
            .unwrap();
        assert_ne!(fp(&config, two), fp(&config, joined));
    }

    #[test]
    fn canonical_json_ignores_key_order_raw_mode_does_not() {
        let raw = FingerprintConfig::default();
        let canonical = FingerprintConfig {
            canonical_json: true,
            ..FingerprintConfig::default()
        };
        let a = || post("/", br#"{"a":1,"b":[true,null]}"#);
        let b = || post("/", b"{ \"b\": [true, null], \"a\": 1 }");
        assert_eq!(fp(&canonical, a()), fp(&canonical, b()));
        assert_ne!(fp(&raw, a()), fp(&raw, b()));
        // Not JSON: raw bytes, in either mode.
        let text = || post("/", b"a=1&b=2");
        assert_eq!(fp(&canonical, text()), fp(&raw, text()));
        assert_ne!(
            fp(&canonical, text()),
            fp(&canonical, post("/", b"b=2&a=1"))
        );
    }

    #[test]
    fn debug_shows_a_prefix_only() {
        let debug = format!("{:?}", Fingerprint::from_bytes([0xab; 32]));
        assert_eq!(debug, "Fingerprint(abababababababab..)");
    }
}
