//! Properties, over generated inputs (`proptest`): the fingerprint framing
//! is injective, sf-string unquoting round-trips, the key parser never
//! panics, and the recording policy never records a status it should not.

use axum::body::Body;
use http::{Method, Request, StatusCode};
use proptest::prelude::*;
use tower_idempotency::{
    Fingerprint, IdempotencyKey, IdempotencyLayer, MemoryStore, default_record_policy,
};

fn fingerprint(method: &Method, uri: &str, body: &[u8]) -> Fingerprint {
    let (parts, ()) = Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(())
        .unwrap()
        .into_parts();
    Fingerprint::of(&parts, body)
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::POST),
        Just(Method::PATCH),
        Just(Method::PUT),
        Just(Method::DELETE),
    ]
}

/// Paths with queries, drawn from a small alphabet so that near-misses
/// (a byte moved between path and body) come up often.
fn uri() -> impl Strategy<Value = String> {
    "/[ab/?=&]{0,8}"
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![Just(b'a'), Just(b'b'), Just(b'/'), any::<u8>()],
        0..12,
    )
}

/// The sf-string form of `key`: quoted, with `"` and `\` escaped.
fn quote(key: &str) -> String {
    let mut quoted = String::from("\"");
    for c in key.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn different_requests_never_fingerprint_alike(
        a in (method(), uri(), body()),
        b in (method(), uri(), body()),
    ) {
        let same_request = a == b;
        let same_fingerprint = fingerprint(&a.0, &a.1, &a.2) == fingerprint(&b.0, &b.1, &b.2);
        prop_assert_eq!(same_request, same_fingerprint);
    }

    #[test]
    fn moving_bytes_between_path_and_body_changes_the_fingerprint(
        path in "/[ab]{0,6}",
        body in "[ab]{1,6}",
    ) {
        // "/a" + "bc" and "/ab" + "c": without framing these would hash alike.
        let moved = format!("{path}{}", &body[..1]);
        prop_assert_ne!(
            fingerprint(&Method::POST, &path, body.as_bytes()),
            fingerprint(&Method::POST, &moved, &body.as_bytes()[1..])
        );
    }

    #[test]
    fn sf_string_unquoting_round_trips(key in "[ -~]{1,256}") {
        let parsed = IdempotencyKey::parse(quote(&key).as_bytes()).unwrap();
        prop_assert_eq!(parsed.as_str(), key.as_str());
    }

    #[test]
    fn a_bare_key_is_itself(key in "[!-~]([ -~]{0,254}[!-~])?") {
        prop_assume!(!key.starts_with('"'));
        let parsed = IdempotencyKey::parse(key.as_bytes()).unwrap();
        prop_assert_eq!(parsed.as_str(), key.as_str());
    }

    #[test]
    fn the_key_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(key) = IdempotencyKey::parse(&bytes) {
            prop_assert!((1..=256).contains(&key.as_str().len()));
            prop_assert!(key.as_str().bytes().all(|b| (0x20..=0x7e).contains(&b)));
        }
    }

    #[test]
    fn the_default_policy_never_records_what_a_retry_may_change(code in 100u16..=599) {
        let status = StatusCode::from_u16(code).unwrap();
        // A retry may change these: a retry-later status, or a refusal of
        // credentials or Content-Type, headers outside the fingerprint.
        let retryable = status.is_informational()
            || status.is_server_error()
            || [401, 408, 415, 425, 429].contains(&code);
        prop_assert_eq!(default_record_policy(status), !retryable);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Through the layer: a status is replayed exactly when the policy
    /// records it; otherwise the retry runs the handler again.
    #[test]
    fn the_layer_replays_exactly_what_the_policy_records(code in 200u16..=599) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (handler, runs) =
                crate::common::counted_post(move |_| async move { StatusCode::from_u16(code).unwrap() });
            let app = axum::Router::new()
                .route("/", handler)
                .layer(IdempotencyLayer::new(MemoryStore::new()));
            let request = || {
                Request::post("/").header("idempotency-key", "k").body(Body::empty()).unwrap()
            };
            crate::common::send(&app, request()).await;
            let retry = crate::common::send(&app, request()).await;
            let recorded = default_record_policy(StatusCode::from_u16(code).unwrap());
            assert_eq!(retry.is_replay(), recorded, "{code}");
            assert_eq!(runs.count(), if recorded { 1 } else { 2 }, "{code}");
        });
    }
}
