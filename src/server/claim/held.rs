//! The claim a protected request holds while its service runs: it records the
//! outcome or releases the key, under its fencing token, however the request
//! ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::lease::LeaseKeeper;
use crate::log::warn_store_error;
use crate::server::config::{Config, Shared};
use crate::server::join::{Feed, LiveHead, Producer, Progress, forward};
use crate::server::response::FinishRecording;
use crate::store::{
    CompletionFlag, FencingToken, Fingerprint, JoinRelay, KeyDigest, Record, RecordedResponse,
    Store, StoreError, StoreErrorKind,
};

/// A won claim. Dropped without [`record`](Self::record) or
/// [`release`](Self::release) (a dropped future, a panic), it releases the key
/// in the background so the next retry runs.
#[derive(Debug)]
pub(crate) struct Claim<St: Store> {
    shared: Arc<Shared<St>>,
    key: KeyDigest,
    token: FencingToken,
    fingerprint: Fingerprint,
    /// When the lease ends, by this process's clock (measured before the claim
    /// or renewal was sent, so never later than the store's).
    lease_until: Instant,
    keeper: LeaseKeeper,
    settled: bool,
    /// Set by the service when it completed the record itself (in its own
    /// database transaction); `None` when the store lent it no such handle.
    completion: Option<CompletionFlag>,
}

impl<St: Store> Claim<St> {
    pub(crate) fn new(
        shared: Arc<Shared<St>>,
        key: KeyDigest,
        token: FencingToken,
        fingerprint: Fingerprint,
        claimed_at: Instant,
    ) -> Self {
        let lease = shared.config.lease;
        Self {
            shared,
            key,
            token,
            fingerprint,
            lease_until: claimed_at + lease,
            keeper: LeaseKeeper::new(claimed_at, lease),
            settled: false,
            completion: None,
        }
    }

    /// Watches `completion`, the flag the service sets once it completed the
    /// record itself.
    pub(crate) fn completed_by(mut self, completion: Option<CompletionFlag>) -> Self {
        self.completion = completion;
        self
    }

    /// Tells whether the service completed the record itself. From then on
    /// the key's row is the service's transaction's: the layer neither renews
    /// the lease (a renewal would wait for that transaction, then find the
    /// record complete) nor records again.
    pub(crate) fn completed_by_service(&self) -> bool {
        self.completion.as_ref().is_some_and(CompletionFlag::is_set)
    }

    /// Lets go of a claim whose record the service completed itself, for an
    /// answer the policy records: the record stands, nothing is left to do.
    pub(crate) fn dismiss(mut self) {
        self.settled = true;
    }

    /// Settles a claim whose record the service completed itself, for an
    /// answer the policy does not record (an error, a 5xx): the key is
    /// released in case the service's transaction rolled back; if it
    /// committed, the record stands and the release does nothing.
    pub(crate) async fn release_if_uncommitted(mut self) {
        self.settled = true;
        let store = &self.shared.store;
        match self
            .shared
            .bounded(store.release(&self.key, self.token))
            .await
        {
            // Released, or the record stands: the transaction committed.
            Ok(()) => {}
            Err(error) if error.kind() == StoreErrorKind::LeaseLost => {}
            Err(error) => warn_store_error!(
                error,
                "idempotency claim not released; it lapses with its lease"
            ),
        }
    }

    /// Renews the lease when due. Call it whenever the work under the claim is
    /// pending: it registers the waker for the next renewal.
    pub(crate) fn poll_renew(&mut self, cx: &mut Context<'_>) {
        if self.completed_by_service() {
            return;
        }
        let (shared, key, token) = (&self.shared, self.key, self.token);
        let renewed = self.keeper.poll(cx, || {
            let shared = Arc::clone(shared);
            Box::pin(async move {
                let lease = shared.config.lease;
                shared.bounded(shared.store.renew(&key, token, lease)).await
            })
        });
        if let Some(lease_until) = renewed {
            self.lease_until = lease_until;
        }
    }

    /// Tells whether a renewal found the key passed to another owner.
    pub(crate) fn lease_lost(&self) -> bool {
        self.keeper.is_lost()
    }

    /// The key the claim holds.
    pub(crate) fn key(&self) -> &KeyDigest {
        &self.key
    }

    /// The claim as a relayed copy of its response names it.
    fn producer(&self) -> Producer {
        Producer {
            key: self.key,
            fingerprint: self.fingerprint,
            token: self.token,
            lease: self.shared.config.lease,
        }
    }

    /// The configuration of the layer that made the claim.
    pub(crate) fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Gives the key up so the next request with it runs again.
    pub(crate) async fn release(mut self) {
        let store = &self.shared.store;
        if let Err(error) = self
            .shared
            .bounded(store.release(&self.key, self.token))
            .await
        {
            warn_store_error!(
                error,
                "idempotency claim not released; it lapses with its lease"
            );
        }
        self.settled = true;
    }

    /// Records the outcome: a response, or `None` for a tombstone. If the store
    /// fails, recording goes on in the background while the lease lasts.
    /// Then ends `joiners`, the copy joiners read, if there is one: complete
    /// if the record stands (or is still being tried), failed if the store
    /// refused it, the lease having passed to another owner. (One future for
    /// both: a wrapper awaiting this one would hold the claim and the
    /// response twice.)
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would keep its arguments twice"
    )]
    pub(crate) fn record(
        mut self,
        response: Option<RecordedResponse>,
        joiners: Option<Feed>,
    ) -> impl Future<Output = ()> + Send {
        // An async block, not an async fn: an async fn keeps its arguments
        // twice (as passed, and bound), the claim and the response among them.
        async move {
            let record = Record {
                fingerprint: self.fingerprint,
                response,
            };
            let result = record_once(&self.shared, &self.key, self.token, &record).await;
            self.settled = true;
            let stands = match result {
                Ok(()) => true,
                Err(error) if error.kind() == StoreErrorKind::LeaseLost => {
                    warn_store_error!(
                        error,
                        "idempotency record refused: the lease passed to another owner"
                    );
                    false
                }
                Err(error) => {
                    warn_store_error!(
                        error,
                        "idempotency record failed; retrying while the lease lasts"
                    );
                    self.keep_recording(record);
                    true
                }
            };
            if let Some(joiners) = joiners {
                // Joiners see the end when the original's client does: once the
                // record is made.
                joiners.end(if stands {
                    Progress::Complete
                } else {
                    Progress::Failed
                });
            }
        }
    }

    /// Retries the record with backoff until it lands, the lease is lost or
    /// it ends.
    fn keep_recording(&self, record: Record) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let retry = Self {
            shared: Arc::clone(&self.shared),
            keeper: LeaseKeeper::new(Instant::now(), self.shared.config.lease),
            settled: true,
            completion: None,
            ..*self
        };
        runtime.spawn(async move {
            let mut backoff = Duration::from_millis(50);
            loop {
                tokio::time::sleep(backoff).await;
                if Instant::now() >= retry.lease_until {
                    warn_store_error!(
                        StoreError::new(StoreErrorKind::LeaseLost),
                        "idempotency record abandoned: the lease ran out"
                    );
                    return;
                }
                match record_once(&retry.shared, &retry.key, retry.token, &record).await {
                    Ok(()) => return,
                    Err(error) if error.kind() == StoreErrorKind::LeaseLost => return,
                    Err(_) => backoff = (backoff * 2).min(Duration::from_secs(1)),
                }
            }
        });
    }
}

/// One record call, bounded by the store timeout. It takes the claim's parts,
/// not the claim, so the claim (whose lease keeper is `Send` but not `Sync`)
/// is never shared across an await.
fn record_once<'a, St: Store>(
    shared: &'a Shared<St>,
    key: &'a KeyDigest,
    token: FencingToken,
    record: &'a Record,
) -> impl Future<Output = Result<(), StoreError>> + Send + 'a {
    shared.bounded(shared.store.record(key, token, record, shared.config.ttl))
}

impl<St: Store> Drop for Claim<St> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to release from: the claim lapses with its lease.
            return;
        };
        let shared = Arc::clone(&self.shared);
        let (key, token) = (self.key, self.token);
        let completion = self.completion.take();
        runtime.spawn(async move {
            let result = shared.bounded(shared.store.release(&key, token)).await;
            // A record the service completed itself stands: nothing to release.
            let completed = completion.as_ref().is_some_and(CompletionFlag::is_set);
            if let Err(error) = result
                && !(completed && error.kind() == StoreErrorKind::LeaseLost)
            {
                warn_store_error!(
                    error,
                    "idempotency claim not released; it lapses with its lease"
                );
            }
        });
    }
}

pin_project! {
    /// A claim waiting for its response body to end, then the record of it:
    /// one allocation for both, the record's future made in the place the
    /// waiting claim leaves.
    pub(crate) struct PendingRecord<St: Store, R> {
        #[pin]
        stage: Stage<St, R>,
        // Makes the record's future (`Claim::record`, whose type has no name).
        record: fn(Claim<St>, Option<RecordedResponse>, Option<Feed>) -> R,
    }
}

pin_project! {
    #[project = StageProj]
    #[project_replace = StageReplace]
    enum Stage<St: Store, R> {
        /// The body streams.
        Streaming { streaming: Streaming<St> },
        /// The body ended: its record is being made.
        Recording { #[pin] future: R },
        /// Recorded, or given up.
        Done,
    }
}

/// The claim of a response whose body streams, and what joiners need of it.
#[derive(Debug)]
struct Streaming<St: Store> {
    claim: Claim<St>,
    status: StatusCode,
    headers: HeaderMap,
    joining: Joining,
    /// The store's relay, for joiners on other replicas, until the response
    /// is forwarded to it.
    relay: Option<JoinRelay>,
}

/// Where a streaming response stands with its joiners.
#[derive(Debug)]
enum Joining {
    /// Joining is off, or over for this response.
    Off,
    /// On, and nobody has joined yet.
    Open,
    /// Feeding the copy its joiners read.
    Feeding(Feed),
}

impl<St: Store, R> PendingRecord<St, R> {
    /// The record to make of a response with this head once its body ends,
    /// with `record` (`Claim::record`).
    pub(crate) fn new(
        claim: Claim<St>,
        status: StatusCode,
        headers: HeaderMap,
        record: fn(Claim<St>, Option<RecordedResponse>, Option<Feed>) -> R,
    ) -> Self {
        let (joining, relay) = match claim.config().joins {
            Some(_) => (Joining::Open, claim.shared.store.join_relay()),
            None => (Joining::Off, None),
        };
        if let Some(relay) = &relay {
            relay.get().start();
        }
        let mut streaming = Streaming {
            claim,
            status,
            headers,
            joining,
            relay,
        };
        // A joiner waiting already gets the head at once.
        streaming.idle(Some(&[]), 0);
        Self {
            stage: Stage::Streaming { streaming },
            record,
        }
    }

    /// The claim while the body streams.
    fn streaming(self: Pin<&mut Self>) -> Option<&mut Streaming<St>> {
        match self.project().stage.project() {
            StageProj::Streaming { streaming } => Some(streaming),
            StageProj::Recording { .. } | StageProj::Done => None,
        }
    }
}

impl<St: Store> Streaming<St> {
    fn limit(&self) -> usize {
        self.claim.config().response_record_limit
    }

    fn head(&self) -> LiveHead {
        LiveHead {
            status: self.status,
            headers: self.headers.clone(),
        }
    }

    /// If a joiner on another replica asked for this response, forwards it
    /// to the store's relay from a task of its own (with a live copy here,
    /// made for it if no joiner here made one).
    fn relay_if_wanted(&mut self, so_far: Option<&[Bytes]>, len: usize) {
        let (Some(relay), Some(board)) = (&self.relay, &self.claim.config().joins) else {
            return;
        };
        let key = *self.claim.key();
        if matches!(self.joining, Joining::Off) || !relay.get().is_wanted(&key) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let fingerprint = self.claim.fingerprint;
        let watcher = board.watch(&key, &fingerprint);
        if matches!(self.joining, Joining::Open) {
            match board.attach(&key, &fingerprint, || self.head(), so_far, len) {
                Some(feed) => self.joining = Joining::Feeding(feed),
                None => return,
            }
        }
        relay.get().served(&key);
        runtime.spawn(forward(relay.clone(), watcher, self.claim.producer()));
        self.relay = None;
    }

    fn poll_renew(&mut self, cx: &mut Context<'_>) {
        self.claim.poll_renew(cx);
        if self.claim.lease_lost() {
            // Another owner has the key: this response is no longer its
            // outcome, and joiners must not take it for one.
            if let Joining::Feeding(feed) = std::mem::replace(&mut self.joining, Joining::Off) {
                feed.end(Progress::Failed);
            }
        }
    }

    fn produced(&mut self, chunk: &Bytes, so_far: Option<&[Bytes]>, len: usize) {
        match &self.joining {
            Joining::Off => {}
            Joining::Open => self.idle(so_far, len),
            Joining::Feeding(feed) => {
                feed.push(chunk, self.limit());
                self.relay_if_wanted(so_far, len);
            }
        }
    }

    fn idle(&mut self, so_far: Option<&[Bytes]>, len: usize) {
        if let (Joining::Open, Some(board)) = (&self.joining, &self.claim.config().joins)
            && let Some(feed) = board.attach(
                self.claim.key(),
                &self.claim.fingerprint,
                || self.head(),
                so_far,
                len,
            )
        {
            self.joining = Joining::Feeding(feed);
        }
        self.relay_if_wanted(so_far, len);
    }
}

impl<St, R> FinishRecording for PendingRecord<St, R>
where
    St: Store,
    R: Future<Output = ()> + Send,
{
    fn poll_renew(self: Pin<&mut Self>, cx: &mut Context<'_>) {
        if let Some(streaming) = self.streaming() {
            streaming.poll_renew(cx);
        }
    }

    fn produced(self: Pin<&mut Self>, chunk: &Bytes, so_far: Option<&[Bytes]>, len: usize) {
        if let Some(streaming) = self.streaming() {
            streaming.produced(chunk, so_far, len);
        }
    }

    fn idle(self: Pin<&mut Self>, so_far: Option<&[Bytes]>, len: usize) {
        if let Some(streaming) = self.streaming() {
            streaming.idle(so_far, len);
        }
    }

    fn finish(self: Pin<&mut Self>, body: Option<Bytes>) {
        let mut this = self.project();
        let StageReplace::Streaming { streaming } =
            this.stage.as_mut().project_replace(Stage::Done)
        else {
            return;
        };
        let Streaming {
            claim,
            status,
            headers,
            joining,
            relay: _,
        } = streaming;
        let response = body.map(|body| RecordedResponse {
            status,
            headers,
            body,
        });
        let joiners = match joining {
            Joining::Feeding(feed) => Some(feed),
            Joining::Off | Joining::Open => None,
        };
        let future = (this.record)(claim, response, joiners);
        this.stage.set(Stage::Recording { future });
    }

    fn poll_finished(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project().stage.project() {
            StageProj::Recording { future } => future.poll(cx),
            StageProj::Streaming { .. } | StageProj::Done => Poll::Ready(()),
        }
    }
}
