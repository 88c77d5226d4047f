//! [`JoinedBody`]: the body of a joined response, read from the live copy
//! every joiner of the key shares.

use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;

use super::board::Watcher;
use super::interrupted::JoinInterrupted;
use super::live::Progress;

/// A joiner's reading position in a live copy: everything produced so far at
/// once, then each chunk as it comes, then the original's end.
#[derive(Debug)]
pub(crate) struct JoinedBody {
    watcher: Watcher,
    next: usize,
}

impl JoinedBody {
    pub(crate) fn new(watcher: Watcher) -> Self {
        Self { watcher, next: 0 }
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, JoinInterrupted>>> {
        self.watcher
            .live()
            .poll_chunk(self.next, cx)
            .map(|chunk| match chunk? {
                Ok(chunk) => {
                    self.next += 1;
                    Some(Ok(Frame::data(chunk)))
                }
                Err(Progress::TooLarge) => Some(Err(JoinInterrupted::too_large())),
                Err(_) => Some(Err(JoinInterrupted::broke_off())),
            })
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.watcher.live().is_end(self.next)
    }
}
