//! With the `tracing` feature: one span per covered request, recording the
//! outcome, the store latency and a key digest prefix, never the raw key.
#![cfg(feature = "tracing")]

use std::cell::RefCell;
use std::io::Write;
use std::sync::Once;

use crate::common::{orders_app, post_json, send};
use tower_idempotency::{IdempotencyLayer, MemoryStore};

thread_local! {
    /// What the subscriber writes on this thread, while a test captures it.
    static CAPTURED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Writes into the current thread's capture, or nowhere.
struct ThreadCapture;

impl Write for ThreadCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURED.with_borrow_mut(|captured| {
            if let Some(captured) = captured {
                captured.extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One global subscriber for the whole test binary, writing through
/// [`ThreadCapture`]. A scoped (`set_default`) subscriber would race with the
/// other tests of the binary, whose threads have none: tracing can cache
/// "never" for a callsite that one of them hit first.
fn capture_on_this_thread() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(|| ThreadCapture)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    CAPTURED.with_borrow_mut(|captured| *captured = Some(Vec::new()));
}

fn captured() -> String {
    CAPTURED.with_borrow_mut(|captured| String::from_utf8(captured.take().unwrap()).unwrap())
}

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
