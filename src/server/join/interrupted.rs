//! [`JoinInterrupted`]: how the body of a joined response ends when the
//! response it joined breaks off.

/// The error that ends the body of a response a retry joined in flight (see
/// [`join_in_flight`](crate::IdempotencyLayer::join_in_flight)) when the
/// original response broke off before its end: its body failed, its claim's
/// lease was lost, its work was dropped, or it outgrew the recording limit.
///
/// A server cuts the connection on it, so the client never takes the part it
/// got for the whole response. Except for a response too large to record,
/// the key was released, and the next retry runs the service again.
///
/// ```
/// use tower_idempotency::server::JoinInterrupted;
///
/// fn explain(error: &(dyn std::error::Error + 'static)) -> String {
///     match error.downcast_ref::<JoinInterrupted>() {
///         Some(cut) if cut.is_too_large() => "too large to share; not replayable".into(),
///         Some(_) => "the original broke off; retry".into(),
///         None => error.to_string(),
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", if *too_large {
    "the joined response outgrew the recording limit and was cut"
} else {
    "the joined response broke off before its end"
})]
pub struct JoinInterrupted {
    too_large: bool,
}

impl JoinInterrupted {
    pub(crate) fn broke_off() -> Self {
        Self { too_large: false }
    }

    pub(crate) fn too_large() -> Self {
        Self { too_large: true }
    }

    /// Tells whether the response was cut for outgrowing the recording limit
    /// (its key then holds a tombstone: retries get 409
    /// `idempotency_response_not_replayable`), rather than for breaking off
    /// (its key was released: the next retry runs again).
    pub fn is_too_large(&self) -> bool {
        self.too_large
    }
}
