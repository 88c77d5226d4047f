//! The key parser on any bytes: no panic, and what it accepts follows the
//! rules (1 to 256 printable ASCII characters), and its sf-string form parses
//! back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_idempotency::IdempotencyKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = IdempotencyKey::parse(data) {
        let text = key.as_str();
        assert!((1..=256).contains(&text.len()));
        assert!(text.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        let mut quoted = String::from("\"");
        for c in text.chars() {
            if c == '"' || c == '\\' {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        let again = IdempotencyKey::parse(quoted.as_bytes()).expect("the quoted form parses");
        assert_eq!(again, key);
    }
});
