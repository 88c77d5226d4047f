//! With the `tracing` feature: one span per covered request, recording the
//! outcome, the store latency and a key digest prefix, never the raw key.
#![cfg(feature = "tracing")]

use crate::common::logs::{capture_on_this_thread, captured};
use crate::common::{orders_app, post_json, send};
use tower_idempotency::{IdempotencyLayer, MemoryStore};

#[tokio::test]
async fn each_covered_request_gets_a_span_with_its_outcome() {
    capture_on_this_thread();
    let secret_key = "sk-secret-key-7f3e";
    let (app, _) = orders_app(IdempotencyLayer::new(MemoryStore::new()));
    send(&app, post_json(secret_key, "a")).await;
    send(&app, post_json(secret_key, "a")).await;
    send(&app, post_json(secret_key, "b")).await;
    let output = captured();
    for outcome in ["executed", "replayed", "mismatch"] {
        assert!(
            output.contains(&format!("outcome=\"{outcome}\""))
                || output.contains(&format!("outcome={outcome}")),
            "{outcome} missing in:\n{output}"
        );
    }
    assert!(output.contains("idempotency{"), "the span: {output}");
    assert!(output.contains("key_digest="), "{output}");
    assert!(output.contains("store_latency_us="), "{output}");
    assert!(
        !output.contains(secret_key),
        "the raw key leaked:\n{output}"
    );
}
