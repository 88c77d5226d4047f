//! Joining a response in flight: a retry that finds its key in flight, with
//! the response already streaming, gets that same response (status, headers
//! and every byte of the body, as produced) instead of a 409.
//!
//! The parts: the [`JoinBoard`] where joiners and responses meet, the
//! [`Live`](live::Live) copy a response feeds and its joiners share, the
//! joiner's [`JoinedBody`], and the [`JoinInterrupted`] error that ends it
//! when the original breaks off. A response nobody joins never meets any of
//! them beyond one look at a counter per chunk.

mod board;
mod interrupted;
mod joined_body;
mod live;

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

pub(crate) use self::board::{Feed, JoinBoard, Watcher};
pub use self::interrupted::JoinInterrupted;
pub(crate) use self::joined_body::JoinedBody;
pub(crate) use self::live::{HeadState, LiveHead, Progress};

/// Waits for the head of the response `watcher` waits on, or for `other`,
/// whichever comes first.
pub(crate) async fn head_or<F: Future>(
    watcher: &Watcher,
    other: F,
) -> Result<HeadState, F::Output> {
    let mut head = pin!(watcher.head());
    let mut other = pin!(other);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(state) = head.as_mut().poll(cx) {
            return Poll::Ready(Ok(state));
        }
        other.as_mut().poll(cx).map(Err)
    })
    .await
}
