//! Keeping a claim's lease alive while its work runs: a renewal every third of
//! a lease, driven by the polls of the request itself (no task of its own), so
//! renewal stops the moment the work ends, however it ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::log::warn_store_error;
use crate::store::{StoreError, StoreErrorKind};

/// One renewal call to the store, bounded by the store timeout.
pub(crate) type RenewCall = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// The renewal schedule of one claim.
pub(crate) struct LeaseKeeper {
    lease: Duration,
    /// When the next renewal is due.
    due: Instant,
    /// The timer for `due`, made on the first poll that needs it: work that
    /// ends on its first poll never registers a timer.
    timer: Option<Pin<Box<Sleep>>>,
    /// A renewal in flight, and when it was sent.
    call: Option<(Instant, RenewCall)>,
    /// The lease passed to another owner: renewing is over.
    lost: bool,
}

impl LeaseKeeper {
    pub(crate) fn new(claimed_at: Instant, lease: Duration) -> Self {
        Self {
            lease,
            due: claimed_at + Self::interval(lease),
            timer: None,
            call: None,
            lost: false,
        }
    }

    /// Renews when due, with calls made by `renew`. Returns the new end of the
    /// lease when a renewal lands. Registers the task's waker for the next
    /// renewal, so it must be called whenever the work it guards is pending.
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        mut renew: impl FnMut() -> RenewCall,
    ) -> Option<Instant> {
        let mut renewed = None;
        while !self.lost {
            if let Some((sent_at, call)) = &mut self.call {
                let Poll::Ready(result) = call.as_mut().poll(cx) else {
                    return renewed;
                };
                let sent_at = *sent_at;
                self.call = None;
                match result {
                    Ok(()) => {
                        renewed = Some(sent_at + self.lease);
                        self.due = sent_at + Self::interval(self.lease);
                    }
                    Err(error) if error.kind() == StoreErrorKind::LeaseLost => {
                        warn_store_error!(
                            error,
                            "idempotency lease lost: another owner has the key"
                        );
                        self.lost = true;
                    }
                    Err(error) => {
                        // Try again soon: a third of the usual interval.
                        warn_store_error!(error, "idempotency lease renewal failed; retrying");
                        self.due = Instant::now() + Self::interval(self.lease) / 3;
                    }
                }
                continue;
            }
            let due = self.due;
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if timer.as_mut().poll(cx).is_pending() {
                return renewed;
            }
            self.timer = None;
            self.call = Some((Instant::now(), renew()));
        }
        renewed
    }

    /// Tells whether a renewal found the key passed to another owner.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost
    }

    /// Time between renewals: a third of the lease, so two renewals can fail
    /// before the lease lapses.
    fn interval(lease: Duration) -> Duration {
        (lease / 3).max(Duration::from_millis(1))
    }
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("lease", &self.lease)
            .field("due", &self.due)
            .field("renewing", &self.call.is_some())
            .field("lost", &self.lost)
            .finish()
    }
}
