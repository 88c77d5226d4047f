//! Two requests built from the input: equal fingerprints only when the
//! requests are equal (framing is injective; SHA-256 does the rest).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_idempotency::Fingerprint;

/// Splits the input into (path, body) pairs at the given cut points.
fn request(data: &[u8], cut: usize) -> Option<(String, Vec<u8>)> {
    let cut = cut.min(data.len());
    let path: String = data[..cut]
        .iter()
        .map(|&b| char::from(b'a' + b % 26))
        .collect();
    Some((format!("/{path}"), data[cut..].to_vec()))
}

fuzz_target!(|input: (u8, u8, Vec<u8>)| {
    let (cut_a, cut_b, data) = input;
    let (Some(a), Some(b)) = (request(&data, cut_a.into()), request(&data, cut_b.into())) else {
        return;
    };
    let fingerprint = |(path, body): &(String, Vec<u8>)| {
        let (parts, ()) = http::Request::post(path.as_str()).body(()).expect("a valid path").into_parts();
        Fingerprint::of(&parts, body)
    };
    assert_eq!(a == b, fingerprint(&a) == fingerprint(&b));
});
