//! [`Live`]: the copy of one response in flight that its joiners read,
//! shared by all of them: the head, the chunks produced so far (the very
//! buffers the original response sends, not copies), and how it ended.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::store::Fingerprint;

/// The head a joiner answers with: the original status and the headers a
/// replay would send.
#[derive(Debug)]
pub(crate) struct LiveHead {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
}

/// How far the original response has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Still streaming (or not started).
    Open,
    /// Ended, and its record stands: every chunk is here.
    Complete,
    /// Broke off: the body failed, the lease was lost, or the work was
    /// dropped. Its claim is released.
    Failed,
    /// Outgrew the recording limit: its chunks are gone and the key ends as
    /// a tombstone.
    TooLarge,
}

/// What a joiner waiting for the head learns.
#[derive(Debug)]
pub(crate) enum HeadState {
    /// The head is there: the joiner answers with it and reads the chunks.
    Joinable(Arc<LiveHead>),
    /// The response outgrew the recording limit: not replayable.
    TooLarge,
    /// The original broke off before a joiner could use it: claim again.
    Gone,
}

/// One response in flight as its joiners see it.
#[derive(Debug)]
pub(crate) struct Live {
    /// The request its joiners made: only a response to that request may
    /// feed it (another request under the same key is a mismatch).
    fingerprint: Fingerprint,
    state: Mutex<LiveState>,
}

#[derive(Debug)]
struct LiveState {
    head: Option<Arc<LiveHead>>,
    chunks: Vec<Bytes>,
    /// Bytes produced so far, kept or not.
    len: usize,
    progress: Progress,
    /// The original response feeds this copy.
    fed: bool,
    /// Joiners registered on it.
    watchers: usize,
    wakers: Vec<Waker>,
}

impl Default for LiveState {
    fn default() -> Self {
        Self {
            head: None,
            chunks: Vec::new(),
            len: 0,
            progress: Progress::Open,
            fed: false,
            watchers: 0,
            wakers: Vec::new(),
        }
    }
}

impl LiveState {
    fn wait(&mut self, cx: &Context<'_>) {
        if !self.wakers.iter().any(|waker| waker.will_wake(cx.waker())) {
            self.wakers.push(cx.waker().clone());
        }
    }

    fn wake_all(&mut self) {
        for waker in self.wakers.drain(..) {
            waker.wake();
        }
    }
}

impl Live {
    /// A copy for joiners of the request with `fingerprint`.
    pub(crate) fn new(fingerprint: Fingerprint) -> Self {
        Self {
            fingerprint,
            state: Mutex::default(),
        }
    }

    /// Tells whether this copy is for the request with `fingerprint`.
    pub(crate) fn is_for(&self, fingerprint: &Fingerprint) -> bool {
        self.fingerprint == *fingerprint
    }

    fn lock(&self) -> MutexGuard<'_, LiveState> {
        // A panic while holding the lock leaves the state whole: every
        // change is a single assignment or push.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more joiner.
    pub(crate) fn add_watcher(&self) {
        self.lock().watchers += 1;
    }

    /// Counts one joiner fewer; tells whether nobody watches a copy that
    /// nothing feeds (it can go).
    pub(crate) fn remove_watcher(&self) -> bool {
        let mut state = self.lock();
        state.watchers = state.watchers.saturating_sub(1);
        state.watchers == 0 && !state.fed
    }

    /// Lets the original response feed this copy, if nothing feeds it yet
    /// and it is still open: sets the head and what was produced so far
    /// (`None`: more than `limit` already, so the copy is too large).
    pub(crate) fn attach(&self, head: LiveHead, so_far: Option<&[Bytes]>, len: usize) -> bool {
        let mut state = self.lock();
        if state.fed || state.progress != Progress::Open {
            return false;
        }
        state.fed = true;
        state.head = Some(Arc::new(head));
        state.len = len;
        match so_far {
            Some(chunks) => state.chunks.extend(chunks.iter().cloned()),
            None => state.progress = Progress::TooLarge,
        }
        state.wake_all();
        true
    }

    /// Adds a chunk the original response produced, or marks the copy too
    /// large once it passes `limit` (its chunks are let go at once).
    pub(crate) fn push(&self, chunk: &Bytes, limit: usize) {
        let mut state = self.lock();
        if state.progress != Progress::Open {
            return;
        }
        state.len = state.len.saturating_add(chunk.len());
        if state.len > limit {
            state.progress = Progress::TooLarge;
            state.chunks = Vec::new();
        } else if !chunk.is_empty() {
            state.chunks.push(chunk.clone());
        }
        state.wake_all();
    }

    /// Ends the copy (no effect on one that already ended). A failed copy
    /// keeps its chunks, so each joiner gets what the original's client got
    /// before the break; they go with the last joiner.
    pub(crate) fn end(&self, progress: Progress) {
        let mut state = self.lock();
        if state.progress == Progress::Open {
            state.progress = progress;
            if progress == Progress::TooLarge {
                state.chunks = Vec::new();
            }
        }
        state.wake_all();
    }

    /// Polls for the head.
    pub(crate) fn poll_head(&self, cx: &Context<'_>) -> Poll<HeadState> {
        let mut state = self.lock();
        match (state.progress, &state.head) {
            (Progress::TooLarge, _) => Poll::Ready(HeadState::TooLarge),
            (Progress::Failed, _) | (Progress::Complete, None) => Poll::Ready(HeadState::Gone),
            (Progress::Open | Progress::Complete, Some(head)) => {
                Poll::Ready(HeadState::Joinable(Arc::clone(head)))
            }
            (Progress::Open, None) => {
                state.wait(cx);
                Poll::Pending
            }
        }
    }

    /// Polls for chunk `index`: `Some(Ok)` with it, `None` at a complete end,
    /// `Some(Err)` with how the original broke off.
    pub(crate) fn poll_chunk(
        &self,
        index: usize,
        cx: &Context<'_>,
    ) -> Poll<Option<Result<Bytes, Progress>>> {
        let mut state = self.lock();
        if let Some(chunk) = state.chunks.get(index) {
            return Poll::Ready(Some(Ok(chunk.clone())));
        }
        match state.progress {
            Progress::Open => {
                state.wait(cx);
                Poll::Pending
            }
            Progress::Complete => Poll::Ready(None),
            broken @ (Progress::Failed | Progress::TooLarge) => Poll::Ready(Some(Err(broken))),
        }
    }

    /// Tells whether chunk `index` and everything after it are known to be
    /// the end (the copy is complete and holds fewer chunks).
    pub(crate) fn is_end(&self, index: usize) -> bool {
        let state = self.lock();
        state.progress == Progress::Complete && index >= state.chunks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn head() -> LiveHead {
        LiveHead {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
        }
    }

    #[test]
    fn chunks_then_a_complete_end() {
        let live = Live::new(Fingerprint::from_bytes([1; 32]));
        let cx = Context::from_waker(Waker::noop());
        assert!(live.poll_head(&cx).is_pending());
        assert!(live.attach(head(), Some(&[Bytes::from_static(b"a")]), 1));
        assert!(!live.attach(head(), Some(&[]), 0), "one feed only");
        live.push(&Bytes::from_static(b"b"), 10);
        assert_eq!(
            live.poll_chunk(0, &cx),
            Poll::Ready(Some(Ok(Bytes::from("a"))))
        );
        assert_eq!(
            live.poll_chunk(1, &cx),
            Poll::Ready(Some(Ok(Bytes::from("b"))))
        );
        assert!(live.poll_chunk(2, &cx).is_pending());
        live.end(Progress::Complete);
        assert_eq!(live.poll_chunk(2, &cx), Poll::Ready(None));
        assert!(live.is_end(2) && !live.is_end(1));
    }

    #[test]
    fn past_the_limit_the_chunks_go() {
        let live = Live::new(Fingerprint::from_bytes([1; 32]));
        let cx = Context::from_waker(Waker::noop());
        live.attach(head(), Some(&[]), 0);
        live.push(&Bytes::from_static(b"12345"), 8);
        live.push(&Bytes::from_static(b"6789"), 8);
        assert_eq!(
            live.poll_chunk(0, &cx),
            Poll::Ready(Some(Err(Progress::TooLarge)))
        );
        assert!(matches!(
            live.poll_head(&cx),
            Poll::Ready(HeadState::TooLarge)
        ));
        live.end(Progress::Complete);
        assert!(matches!(
            live.poll_head(&cx),
            Poll::Ready(HeadState::TooLarge)
        ));
    }

    #[test]
    fn a_failure_after_chunks_is_an_error() {
        let live = Live::new(Fingerprint::from_bytes([1; 32]));
        let cx = Context::from_waker(Waker::noop());
        live.attach(head(), Some(&[Bytes::from_static(b"a")]), 1);
        live.end(Progress::Failed);
        assert_eq!(
            live.poll_chunk(0, &cx),
            Poll::Ready(Some(Ok(Bytes::from("a"))))
        );
        assert_eq!(
            live.poll_chunk(1, &cx),
            Poll::Ready(Some(Err(Progress::Failed)))
        );
        assert!(matches!(live.poll_head(&cx), Poll::Ready(HeadState::Gone)));
    }
}
