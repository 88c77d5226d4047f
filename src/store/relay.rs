//! [`JoinRelay`]: how a store that can carries a response in flight from the
//! replica producing it to joiners on other replicas.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::{FencingToken, Fingerprint, KeyDigest, StoreError};

/// A store's way of sharing a response in flight with joiners on other
/// replicas (see `IdempotencyLayer::join_in_flight`), handed out by
/// [`Store::join_relay`](super::Store::join_relay).
///
/// It is opaque: [`RedisStore`](super::RedisStore) makes one; a store that
/// wraps another passes its inner store's on. A store without one still
/// joins responses in its own process, and its other replicas wait for the
/// record instead.
#[derive(Clone)]
pub struct JoinRelay {
    relay: Arc<dyn Relay>,
}

impl JoinRelay {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn new(relay: Arc<dyn Relay>) -> Self {
        Self { relay }
    }

    pub(crate) fn get(&self) -> &dyn Relay {
        &*self.relay
    }
}

impl fmt::Debug for JoinRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinRelay").finish_non_exhaustive()
    }
}

/// A call to the relay's backend.
pub(crate) type RelayCall<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One entry of a response's live copy as the relay carries it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LiveEntry {
    /// The head, and the claim that produces the response: a joiner checks
    /// that it still holds its key when the copy goes quiet.
    Head {
        status: StatusCode,
        headers: HeaderMap,
        /// The request the response answers: a joiner takes only its own.
        fingerprint: Fingerprint,
        token: FencingToken,
        lease: Duration,
    },
    /// A chunk of the body.
    Chunk(Bytes),
    /// The end.
    End(LiveEnd),
}

/// How a relayed response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LiveEnd {
    /// Whole, and recorded.
    Complete,
    /// Broke off.
    Failed,
    /// Outgrew the recording limit.
    TooLarge,
}

/// Where a joiner is in a relayed copy: after the entry of this id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Cursor(pub(crate) Option<String>);

/// What a store's relay does.
pub(crate) trait Relay: Send + Sync {
    /// Starts listening for joiners elsewhere, once per relay; needs a
    /// runtime.
    fn start(&self);

    /// Tells the replicas that a joiner here wants `key`'s response.
    fn want<'a>(&'a self, key: &'a KeyDigest) -> RelayCall<'a, ()>;

    /// Tells whether a joiner elsewhere asked for `key`'s response lately.
    /// One atomic load while nobody asks for anything.
    fn is_wanted(&self, key: &KeyDigest) -> bool;

    /// Forgets that `key` was wanted: its response is relayed now.
    fn served(&self, key: &KeyDigest);

    /// Appends `entries` to `key`'s copy; `fresh` starts a new copy,
    /// dropping any left by an earlier owner. Each write keeps the copy for
    /// `keep`.
    fn append<'a>(
        &'a self,
        key: &'a KeyDigest,
        entries: &'a [LiveEntry],
        fresh: bool,
        keep: Duration,
    ) -> RelayCall<'a, ()>;

    /// Reads the entries of `key`'s copy after `cursor`, up to a batch.
    fn read<'a>(
        &'a self,
        key: &'a KeyDigest,
        cursor: &'a Cursor,
    ) -> RelayCall<'a, Vec<(Cursor, LiveEntry)>>;

    /// Tells whether `token` still holds `key` in flight.
    fn still_owned<'a>(&'a self, key: &'a KeyDigest, token: FencingToken) -> RelayCall<'a, bool>;

    /// How often a joiner reads its copy while it waits for more.
    fn poll_interval(&self) -> Duration;
}
