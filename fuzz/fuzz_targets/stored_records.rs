//! Stored bytes, as Redis and Postgres hand them back, truncated or hostile:
//! decoding never panics and never allocates beyond the input; what encodes
//! decodes to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_idempotency::fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::decode_record(data);
    fuzzing::decode_headers(data);
    fuzzing::decode_redis_value(data);
    if data.len() >= 4 {
        let status = u16::from_be_bytes([data[0], data[1]]);
        let split = usize::from(data[2]).min(data.len() - 3);
        let rest = &data[3..];
        let (head, body) = rest.split_at(split.min(rest.len()));
        let (name, value) = head.split_at(head.len() / 2);
        assert!(fuzzing::round_trip(status, &[(name, value)], body));
    }
});
