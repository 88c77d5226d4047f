//! Logging through `tracing` when the `tracing` feature is on; nothing otherwise.

/// Logs a store failure at `warn` level.
macro_rules! warn_store_error {
    ($error:expr, $message:literal) => {{
        #[cfg(feature = "tracing")]
        tracing::warn!(error = %$error, $message);
        #[cfg(not(feature = "tracing"))]
        let _ = &$error;
    }};
}

pub(crate) use warn_store_error;
