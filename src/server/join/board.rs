//! [`JoinBoard`]: where joiners and the responses they join find each other,
//! one per layer. A joiner puts up a [`Live`] copy for its key; the response
//! in flight for that key finds it, feeds it through a [`Feed`], and takes
//! it down when it ends. Nothing is put up, and nothing fed, for a response
//! nobody joins.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use dashmap::DashMap;

use super::live::{HeadState, Live, LiveHead, Progress};
use crate::store::{Fingerprint, KeyDigest};

/// The live copies joiners wait on, by key.
#[derive(Debug, Default)]
pub(crate) struct JoinBoard {
    lives: DashMap<KeyDigest, Arc<Live>>,
    /// How many copies are up: a response checks this one number, and looks
    /// no further while it is zero.
    up: AtomicUsize,
}

impl JoinBoard {
    /// Registers a joiner of `key` for the request with `fingerprint`, on
    /// the copy already up or a new one. (A copy up for another request
    /// under the key is left alone: this joiner gets one of its own that
    /// nothing feeds, and falls back to the store's answer.)
    pub(crate) fn watch(self: &Arc<Self>, key: &KeyDigest, fingerprint: &Fingerprint) -> Watcher {
        // Counted under the map's lock, so the last joiner leaving cannot
        // take the copy down between this lookup and this count.
        let up = self.lives.entry(*key).or_insert_with(|| {
            self.up.fetch_add(1, Ordering::Relaxed);
            Arc::new(Live::new(*fingerprint))
        });
        let live = if up.is_for(fingerprint) {
            up.add_watcher();
            Arc::clone(up.value())
        } else {
            Arc::new(Live::new(*fingerprint))
        };
        drop(up);
        Watcher {
            board: Arc::clone(self),
            key: *key,
            live,
        }
    }

    /// For the response in flight for `key`, to the request with
    /// `fingerprint`: the copy its joiners wait on, now fed by it, if one is
    /// up for that request and nothing feeds it yet. `so_far` is what the
    /// response produced before (`None`: more than the limit).
    pub(crate) fn attach(
        self: &Arc<Self>,
        key: &KeyDigest,
        fingerprint: &Fingerprint,
        head: impl FnOnce() -> LiveHead,
        so_far: Option<&[Bytes]>,
        len: usize,
    ) -> Option<Feed> {
        if self.up.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let live = Arc::clone(self.lives.get(key)?.value());
        if !live.is_for(fingerprint) {
            return None;
        }
        live.attach(head(), so_far, len).then(|| Feed {
            board: Arc::clone(self),
            key: *key,
            live,
            ended: false,
        })
    }

    /// Takes `live` down, if it is still the copy up for `key`.
    fn take_down(&self, key: &KeyDigest, live: &Arc<Live>) {
        if self
            .lives
            .remove_if(key, |_, up| Arc::ptr_eq(up, live))
            .is_some()
        {
            self.up.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A joiner's hold on a live copy. Dropped, it counts the joiner out, and
/// takes the copy down if nobody else waits and nothing feeds it.
#[derive(Debug)]
pub(crate) struct Watcher {
    board: Arc<JoinBoard>,
    key: KeyDigest,
    live: Arc<Live>,
}

impl Watcher {
    /// Waits for the head of the response, or for the end of the copy.
    pub(crate) async fn head(&self) -> HeadState {
        std::future::poll_fn(|cx| self.live.poll_head(cx)).await
    }

    /// The copy this joiner reads.
    pub(crate) fn live(&self) -> &Live {
        &self.live
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Counted out under the map's lock when the copy is still up (see
        // `JoinBoard::watch`).
        let mut counted = false;
        let taken_down = self.board.lives.remove_if(&self.key, |_, up| {
            if !Arc::ptr_eq(up, &self.live) {
                return false;
            }
            counted = true;
            self.live.remove_watcher()
        });
        if taken_down.is_some() {
            self.board.up.fetch_sub(1, Ordering::Relaxed);
        }
        if !counted {
            self.live.remove_watcher();
        }
    }
}

/// The response in flight feeding a live copy. Dropped before
/// [`end`](Self::end) (the body failed, the work was dropped or panicked),
/// it ends the copy as failed, so every joiner sees the break.
#[derive(Debug)]
pub(crate) struct Feed {
    board: Arc<JoinBoard>,
    key: KeyDigest,
    live: Arc<Live>,
    ended: bool,
}

impl Feed {
    /// Adds a chunk the response produced.
    pub(crate) fn push(&self, chunk: &Bytes, limit: usize) {
        self.live.push(chunk, limit);
    }

    /// Ends the copy and takes it down: joiners that come later find the
    /// record (or claim the key again).
    pub(crate) fn end(mut self, progress: Progress) {
        self.finish(progress);
    }

    fn finish(&mut self, progress: Progress) {
        if self.ended {
            return;
        }
        self.ended = true;
        // Down first: a joiner that comes now starts a copy of its own and
        // asks the store, never this ended one.
        self.board.take_down(&self.key, &self.live);
        self.live.end(progress);
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.finish(Progress::Failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;
    use crate::server::request::IdempotencyKey;
    use http::{HeaderMap, StatusCode};

    fn key(name: &str) -> KeyDigest {
        let key = IdempotencyKey::parse(name.as_bytes()).unwrap();
        KeyDigest::new(&Scope::new("t"), &key)
    }

    const FP: Fingerprint = Fingerprint::from_bytes([1; 32]);

    fn head() -> LiveHead {
        LiveHead {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
        }
    }

    #[test]
    fn nothing_is_up_until_a_joiner_comes() {
        let board = Arc::new(JoinBoard::default());
        assert!(board.attach(&key("a"), &FP, head, Some(&[]), 0).is_none());
        let watcher = board.watch(&key("a"), &FP);
        assert!(board.attach(&key("b"), &FP, head, Some(&[]), 0).is_none());
        let feed = board.attach(&key("a"), &FP, head, Some(&[]), 0).unwrap();
        assert!(board.attach(&key("a"), &FP, head, Some(&[]), 0).is_none());
        drop(watcher);
        assert_eq!(board.lives.len(), 1, "fed: stays up for later joiners");
        drop(feed);
        assert_eq!(board.lives.len(), 0);
        assert_eq!(board.up.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_last_joiner_takes_down_an_unfed_copy() {
        let board = Arc::new(JoinBoard::default());
        let first = board.watch(&key("a"), &FP);
        let second = board.watch(&key("a"), &FP);
        drop(first);
        assert_eq!(board.lives.len(), 1);
        drop(second);
        assert_eq!(board.lives.len(), 0);
        assert_eq!(board.up.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_response_to_another_request_never_feeds_the_copy() {
        let board = Arc::new(JoinBoard::default());
        let other = Fingerprint::from_bytes([2; 32]);
        let watcher = board.watch(&key("a"), &FP);
        assert!(
            board
                .attach(&key("a"), &other, head, Some(&[]), 0)
                .is_none()
        );
        // A joiner of the other request gets a copy of its own, unfed.
        let stray = board.watch(&key("a"), &other);
        assert!(!Arc::ptr_eq(&stray.live, &watcher.live));
        drop(stray);
        assert_eq!(board.lives.len(), 1);
        assert!(board.attach(&key("a"), &FP, head, Some(&[]), 0).is_some());
    }

    #[test]
    fn a_dropped_feed_fails_its_joiners() {
        let board = Arc::new(JoinBoard::default());
        let watcher = board.watch(&key("a"), &FP);
        let feed = board.attach(&key("a"), &FP, head, Some(&[]), 0).unwrap();
        drop(feed);
        let cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(matches!(
            watcher.live().poll_head(&cx),
            std::task::Poll::Ready(HeadState::Gone)
        ));
    }
}
