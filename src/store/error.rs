//! [`StoreError`]: how a store call fails.

/// A store call that failed: a [kind](StoreErrorKind) to act on, and the
/// client's own error as its source.
///
/// ```
/// use tower_idempotency::store::{StoreError, StoreErrorKind};
///
/// let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "down");
/// let error = StoreError::with_source(StoreErrorKind::Unavailable, refused);
/// assert_eq!(error.kind(), StoreErrorKind::Unavailable);
/// assert!(std::error::Error::source(&error).is_some());
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct StoreError {
    kind: StoreErrorKind,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached or failed to answer.
    #[error("the idempotency store is unavailable")]
    Unavailable,
    /// The store did not answer within the store timeout.
    #[error("the idempotency store did not answer in time")]
    Timeout,
    /// The caller's fencing token is no longer the key's owner: the lease ran
    /// out and the key was released, claimed again or completed by another.
    #[error("the claim's lease was lost to another owner")]
    LeaseLost,
    /// The store is full and nothing could be evicted.
    #[error("the idempotency store is at capacity")]
    CapacityExhausted,
    /// The store holds bytes it cannot decode.
    #[error("the idempotency store holds a record it cannot decode")]
    Corrupt,
    /// The store does not offer the operation (a store of your own that
    /// implements no [`inspect`](super::Store::inspect) or
    /// [`forget`](super::Store::forget)).
    #[error("the idempotency store does not support this operation")]
    Unsupported,
}

impl StoreError {
    /// Creates an error of `kind` with no underlying cause.
    pub fn new(kind: StoreErrorKind) -> Self {
        Self { kind, source: None }
    }

    /// Creates an error of `kind` caused by `source` (a client or driver error).
    pub fn with_source(
        kind: StoreErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            source: Some(source.into()),
        }
    }

    /// Returns what kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl From<StoreErrorKind> for StoreError {
    fn from(kind: StoreErrorKind) -> Self {
        Self::new(kind)
    }
}
