//! The JSON canonicaliser on any bytes (it reads untrusted request bodies):
//! no panic, no stack overflow; its output is a fixed point; and wherever
//! `serde_json` reads the input as JSON, the canonical form is JSON too, of
//! the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_idempotency::fuzzing::canonicalize_json;

fuzz_target!(|data: &[u8]| {
    let canonical = canonicalize_json(data);
    if let Some(canonical) = &canonical {
        assert_eq!(
            canonicalize_json(canonical).as_ref(),
            Some(canonical),
            "the canonical form is its own canonical form"
        );
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let canonical = canonical.expect("what serde_json reads as JSON is JSON");
        let again: serde_json::Value =
            serde_json::from_slice(&canonical).expect("the canonical form is JSON");
        assert_eq!(again, value, "the canonical form is the same value");
    }
});
