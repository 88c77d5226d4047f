//! What the layer logs through `tracing`, captured per thread.
//!
//! One global subscriber for the whole test binary writes into the capture
//! of the thread that logs. A scoped (`set_default`) subscriber would race
//! with the binary's other tests, whose threads have none: tracing can cache
//! "never" for a callsite that one of them hit first. A test that captures
//! runs on one thread (a current-thread runtime), so that what its spawned
//! tasks log is captured too.
#![cfg(feature = "tracing")]

use std::cell::RefCell;
use std::io::Write;
use std::sync::Once;

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

/// Starts capturing what is logged on this thread.
pub fn capture_on_this_thread() {
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

/// What was logged on this thread since the capture began; ends it.
pub fn captured() -> String {
    CAPTURED.with_borrow_mut(|captured| String::from_utf8(captured.take().unwrap()).unwrap())
}
