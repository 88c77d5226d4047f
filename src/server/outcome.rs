//! What became of each covered request: reported to the `on_outcome` hook
//! and, with the `tracing` feature, on the request's span.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::decision::Decision;
use super::response::Rejection;
use crate::store::KeyDigest;

/// What the layer did with a covered request.
///
/// ```
/// use tower_idempotency::Outcome;
///
/// assert_eq!(Outcome::InProgress.as_str(), "in_progress");
/// assert_eq!(Outcome::Replayed.to_string(), "replayed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The key was claimed and the service ran.
    Executed,
    /// The recorded response was sent again.
    Replayed,
    /// The key was in flight with its response streaming: the request
    /// joined it (see
    /// [`join_in_flight`](crate::IdempotencyLayer::join_in_flight)).
    Joined,
    /// The key was used with another request: 409 (or 422).
    Mismatch,
    /// The key is in flight: 409 with `Retry-After`.
    InProgress,
    /// The layer answered with an error of its own: an invalid or missing
    /// key, a body too large or unreadable, a response not replayable.
    Rejected,
    /// The store failed or timed out: 503, or the request ran unprotected
    /// with `fail_open`.
    StoreError,
}

impl Outcome {
    /// Returns the outcome as a short label, for metrics: `executed`, `replayed`,
    /// `joined`, `mismatch`, `in_progress`, `rejected`, `store_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Executed => "executed",
            Self::Replayed => "replayed",
            Self::Joined => "joined",
            Self::Mismatch => "mismatch",
            Self::InProgress => "in_progress",
            Self::Rejected => "rejected",
            Self::StoreError => "store_error",
        }
    }

    pub(crate) fn of(decision: &Decision) -> Self {
        match decision {
            Decision::Run(_) => Self::Executed,
            Decision::Replay(_) => Self::Replayed,
            Decision::RunUnprotected | Decision::Reject(Rejection::StoreUnavailable) => {
                Self::StoreError
            }
            Decision::Reject(
                Rejection::PayloadMismatch | Rejection::PayloadMismatchUnprocessable,
            ) => Self::Mismatch,
            Decision::Reject(Rejection::InProgress { .. }) => Self::InProgress,
            Decision::Reject(_) => Self::Rejected,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An outcome with its timings, as the `on_outcome` hook receives it.
///
/// ```
/// use tower_idempotency::{IdempotencyLayer, MemoryStore, OutcomeReport};
///
/// let layer = IdempotencyLayer::new(MemoryStore::new()).on_outcome(|report: &OutcomeReport| {
///     let millis = report.store_latency.as_secs_f64() * 1000.0;
///     println!("{} after {millis:.2} ms in the store", report.outcome);
/// });
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OutcomeReport {
    /// What the layer did.
    pub outcome: Outcome,
    /// Time spent in the store deciding (claiming, and waiting if set); zero
    /// when the store was not asked.
    pub store_latency: Duration,
    /// Time from the request reaching the layer to the decision (the body
    /// read and fingerprinted, the store asked); the service's own time is not
    /// included.
    pub elapsed: Duration,
}

/// Times a request for its report. The clock is read only when a report
/// carries times to someone: a hook, or a span with the `tracing` feature;
/// otherwise every time is zero and no clock is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopwatch(Option<Instant>);

impl Stopwatch {
    /// Starts now, if `timed`.
    pub(crate) fn start(timed: bool) -> Self {
        Self(timed.then(Instant::now))
    }

    /// The time since the start (zero when untimed).
    pub(crate) fn elapsed(self) -> Duration {
        self.0.map_or(Duration::ZERO, |started| started.elapsed())
    }
}

/// Whether reports go anywhere that reads their times.
pub(crate) fn timed(hook: Option<&OutcomeHook>) -> bool {
    hook.is_some() || cfg!(feature = "tracing")
}

/// The hook the layer calls with every report.
pub(crate) type OutcomeHook = Arc<dyn Fn(&OutcomeReport) + Send + Sync>;

/// Hands a report to the hook and, with `tracing`, to the current span.
pub(crate) fn report(
    hook: Option<&OutcomeHook>,
    outcome: Outcome,
    store_latency: Duration,
    elapsed: Duration,
    digest: Option<&KeyDigest>,
) {
    #[cfg(feature = "tracing")]
    {
        let span = tracing::Span::current();
        span.record("outcome", outcome.as_str());
        span.record("store_latency_us", store_latency.as_micros() as u64);
        if let Some(digest) = digest {
            span.record("key_digest", tracing::field::display(DigestPrefix(digest)));
        }
        match outcome {
            Outcome::Executed | Outcome::Replayed | Outcome::Joined => {
                tracing::debug!(%outcome, "idempotency")
            }
            Outcome::Mismatch | Outcome::InProgress | Outcome::Rejected => {
                tracing::info!(%outcome, "idempotency")
            }
            Outcome::StoreError => tracing::warn!(%outcome, "idempotency"),
        }
    }
    #[cfg(not(feature = "tracing"))]
    let _ = digest;
    if let Some(hook) = hook {
        hook(&OutcomeReport {
            outcome,
            store_latency,
            elapsed,
        });
    }
}

/// The first 8 bytes of a digest in hex: enough to follow one key through
/// the logs, too little to stand for the record's name.
#[cfg(feature = "tracing")]
struct DigestPrefix<'a>(&'a KeyDigest);

#[cfg(feature = "tracing")]
impl fmt::Display for DigestPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_bytes()[..8]
            .iter()
            .try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}
