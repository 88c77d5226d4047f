//! With the `tracing` feature: one span per covered request, recording the
//! outcome, the store latency and a key digest prefix, never the raw key.
#![cfg(feature = "tracing")]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{orders_app, post_json, send};
use tower_idempotency::{IdempotencyLayer, MemoryStore};

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn each_covered_request_gets_a_span_with_its_outcome() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let secret_key = "sk-secret-key-7f3e";
    let (app, _) = orders_app(IdempotencyLayer::new(MemoryStore::new()));
    send(&app, post_json(secret_key, "a")).await;
    send(&app, post_json(secret_key, "a")).await;
    send(&app, post_json(secret_key, "b")).await;
    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
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
