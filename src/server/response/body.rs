//! [`ResponseBody`]: streams a response through to the client and records a
//! copy, finishing the record before the client sees the end.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::server::BoxError;
use crate::server::join::{JoinedBody, RelayedBody};

pin_project! {
    /// The body of every response the layer returns: the service's own body
    /// (streamed as produced, with a copy kept for the record when the
    /// response is recorded), a replayed or rejection body, or the body of a
    /// response joined in flight.
    ///
    /// It is an [`http_body::Body`] of `Bytes`, so axum, hyper and tower-http
    /// take it as they take any body. Its error is a [`BoxError`](crate::server::BoxError): the
    /// service body's own error, or a
    /// [`JoinInterrupted`](crate::server::JoinInterrupted) that cuts a joined
    /// response whose original broke off.
    ///
    /// ```
    /// use http_body_util::{BodyExt, Empty};
    /// use tower_idempotency::server::ResponseBody;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let body = ResponseBody::<Empty<bytes::Bytes>>::default();
    /// assert!(body.collect().await.unwrap().to_bytes().is_empty());
    /// # });
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Full { data: Option<Bytes> },
        Inner { #[pin] body: B },
        Recording { recording: Recording<B> },
        Joined { joined: JoinedBody },
        Relayed { relayed: Box<RelayedBody> },
    }
}

/// The end of a recording, as the response body sees it: whatever owns the
/// claim (no store type in sight) renews its lease while the body streams
/// and records the body when it ends. Pinned, since it becomes the record's
/// future in place.
pub(crate) trait FinishRecording: Send {
    /// Renews the claim's lease while the body streams.
    fn poll_renew(self: Pin<&mut Self>, cx: &mut Context<'_>);

    /// The body produced `chunk`. `so_far` is every chunk until now, this
    /// one included (`None` once past the limit), `len` their bytes: what a
    /// joiner that comes now must be sent first.
    fn produced(self: Pin<&mut Self>, chunk: &Bytes, so_far: Option<&[Bytes]>, len: usize);

    /// The body waits for the service: a joiner that came meanwhile gets
    /// `so_far` (as in [`produced`](Self::produced)) at once.
    fn idle(self: Pin<&mut Self>, so_far: Option<&[Bytes]>, len: usize);

    /// Starts recording `body` (`None`: too large, record a tombstone).
    fn finish(self: Pin<&mut Self>, body: Option<Bytes>);

    /// Makes the record started by [`finish`](Self::finish); ready once it is
    /// made (or given up).
    fn poll_finished(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
}

/// The end of a recording, boxed and pinned.
pub(crate) type Finish = Pin<Box<dyn FinishRecording>>;

impl<B> ResponseBody<B> {
    /// A body of bytes the layer holds: a replay or a rejection.
    pub(crate) fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full {
                data: Some(data).filter(|data| !data.is_empty()),
            },
        }
    }

    /// The service's body, untouched.
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// The body of a response joined in flight.
    pub(crate) fn joined(joined: JoinedBody) -> Self {
        Self {
            kind: Kind::Joined { joined },
        }
    }

    /// The body of a response joined on another replica.
    pub(crate) fn relayed(relayed: Box<RelayedBody>) -> Self {
        Self {
            kind: Kind::Relayed { relayed },
        }
    }

    /// The service's body, recorded as it streams through. If it is dropped
    /// before its end, `detach` (run to completion) hands the rest to a task
    /// that reads and records it; without it, the claim is released.
    pub(crate) fn recording(
        body: B,
        limit: usize,
        expected_len: Option<u64>,
        finish: Finish,
        detach: Option<fn(Recording<B>)>,
    ) -> Self {
        Self {
            kind: Kind::Recording {
                recording: Recording {
                    body: Some(Box::pin(body)),
                    recorder: Recorder {
                        chunks: Chunks::None,
                        len: 0,
                        limit,
                        expected_len,
                        state: State::Streaming(finish),
                    },
                    detach,
                },
            },
        }
    }
}

/// A service body being recorded. Boxed, so that if the client goes away it
/// can move to a task of its own and be read to its end there.
pub(crate) struct Recording<B> {
    body: Option<Pin<Box<B>>>,
    recorder: Recorder,
    detach: Option<fn(Recording<B>)>,
}

impl<B> Recording<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    /// Reads the body to its end, recording it, and drops what it reads.
    pub(crate) async fn drain(mut self) {
        std::future::poll_fn(|cx| {
            loop {
                match ready!(self.poll_frame(cx)) {
                    Some(Ok(_)) => {}
                    // A failed body is abandoned (its claim released): stop.
                    Some(Err(_)) | None => return Poll::Ready(()),
                }
            }
        })
        .await;
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
    where
        B::Error: Into<BoxError>,
    {
        match &mut self.body {
            Some(body) => poll_recording(body.as_mut(), &mut self.recorder, cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.recorder.state {
            State::Ended => true,
            State::Done => self.body.as_ref().is_none_or(|body| body.is_end_stream()),
            State::Streaming(_) | State::Finishing { .. } => false,
        }
    }
}

impl<B> Drop for Recording<B> {
    fn drop(&mut self) {
        // Dropped while its record is being made, the record is finished in
        // the background too: the body was whole, and joiners wait on it.
        let unfinished = matches!(
            self.recorder.state,
            State::Streaming(_) | State::Finishing { .. }
        );
        // Never hand on a body whose poll panicked.
        if !unfinished || std::thread::panicking() {
            return;
        }
        if let (Some(detach), Some(body)) = (self.detach.take(), self.body.take()) {
            let recorder = std::mem::replace(&mut self.recorder, Recorder::finished());
            detach(Recording {
                body: Some(body),
                recorder,
                detach: None,
            });
        }
        // Otherwise the recorder drops its claim, which releases the key.
    }
}

/// The copy of a response body on its way to the store.
struct Recorder {
    /// Chunks seen so far, shared with the frames sent (no copy), emptied once
    /// the body outgrows the limit.
    chunks: Chunks,
    /// Bytes seen so far, recorded or not.
    len: usize,
    limit: usize,
    /// The length the client was told, if any: reaching it ends the body for
    /// the client even before the service says so.
    expected_len: Option<u64>,
    state: State,
}

enum State {
    Streaming(Finish),
    /// Recording; then `pending` (the last frame) goes to the client, or the
    /// end if there is none.
    Finishing {
        finish: Finish,
        pending: Option<Frame<Bytes>>,
    },
    /// Recorded or abandoned: the body streams on untouched.
    Done,
    /// Recorded after the service's body ended.
    Ended,
}

impl Recorder {
    /// A recorder with nothing left to do.
    fn finished() -> Self {
        Self {
            chunks: Chunks::None,
            len: 0,
            limit: 0,
            expected_len: None,
            state: State::Done,
        }
    }

    fn push(&mut self, data: &Bytes) {
        self.len = self.len.saturating_add(data.len());
        if self.len > self.limit {
            self.chunks = Chunks::None;
        } else if !data.is_empty() {
            self.chunks.push(data.clone());
        }
        let so_far = (self.len <= self.limit).then(|| self.chunks.as_slice());
        if let State::Streaming(finish) = &mut self.state {
            finish.as_mut().produced(data, so_far, self.len);
        }
    }

    /// The service has nothing new yet: renews the lease, and lets a joiner
    /// that came meanwhile have what was produced so far.
    fn idle(&mut self, cx: &mut Context<'_>) {
        let so_far = (self.len <= self.limit).then(|| self.chunks.as_slice());
        if let State::Streaming(finish) = &mut self.state {
            finish.as_mut().poll_renew(cx);
            finish.as_mut().idle(so_far, self.len);
        }
    }

    fn has_expected_len(&self) -> bool {
        self.expected_len == Some(self.len as u64)
    }

    /// Starts recording what was seen, then hands out `pending`.
    fn finish(&mut self, pending: Option<Frame<Bytes>>) {
        let State::Streaming(mut finish) = std::mem::replace(&mut self.state, State::Done) else {
            return;
        };
        let body = (self.len <= self.limit).then(|| std::mem::take(&mut self.chunks).join());
        finish.as_mut().finish(body);
        self.state = State::Finishing { finish, pending };
    }

    /// Gives up recording (the body failed): the claim is released.
    fn abandon(&mut self) {
        self.chunks = Chunks::None;
        self.state = State::Done;
    }
}

/// The chunks of a recorded body. Most bodies are one chunk, which needs no
/// list.
#[derive(Default)]
enum Chunks {
    #[default]
    None,
    One(Bytes),
    Many(Vec<Bytes>),
}

impl Chunks {
    fn as_slice(&self) -> &[Bytes] {
        match self {
            Self::None => &[],
            Self::One(chunk) => std::slice::from_ref(chunk),
            Self::Many(chunks) => chunks,
        }
    }

    fn push(&mut self, chunk: Bytes) {
        *self = match std::mem::take(self) {
            Self::None => Self::One(chunk),
            Self::One(first) => Self::Many(vec![first, chunk]),
            Self::Many(mut chunks) => {
                chunks.push(chunk);
                Self::Many(chunks)
            }
        };
    }

    /// One chunk as it is; several joined with one copy.
    fn join(self) -> Bytes {
        match self {
            Self::None => Bytes::new(),
            Self::One(chunk) => chunk,
            Self::Many(chunks) => {
                let mut joined = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
                for chunk in &chunks {
                    joined.extend_from_slice(chunk);
                }
                joined.freeze()
            }
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Full { data } => Poll::Ready(data.take().map(|data| Ok(Frame::data(data)))),
            KindProj::Inner { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Recording { recording } => recording.poll_frame(cx),
            KindProj::Joined { joined } => joined.poll_frame(cx).map_err(Into::into),
            KindProj::Relayed { relayed } => relayed.poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data } => data.is_none(),
            Kind::Inner { body } => body.is_end_stream(),
            // Never ends for the client before the record is made.
            Kind::Recording { recording } => recording.is_end_stream(),
            Kind::Joined { joined } => joined.is_end_stream(),
            Kind::Relayed { relayed } => relayed.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Inner { body } => body.size_hint(),
            Kind::Recording { recording } => recording
                .body
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), |body| body.size_hint()),
            Kind::Joined { .. } | Kind::Relayed { .. } => SizeHint::default(),
        }
    }
}

fn poll_recording<B>(
    mut body: Pin<&mut B>,
    recorder: &mut Recorder,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    loop {
        match &mut recorder.state {
            State::Streaming(_) => {}
            State::Finishing { finish, pending } => {
                ready!(finish.as_mut().poll_finished(cx));
                let pending = pending.take();
                recorder.state = if pending.is_some() {
                    State::Done
                } else {
                    State::Ended
                };
                return Poll::Ready(pending.map(Ok));
            }
            State::Done => return body.poll_frame(cx).map_err(Into::into),
            State::Ended => return Poll::Ready(None),
        }
        let frame = match body.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                // Waiting for the service: keep its lease alive meanwhile.
                recorder.idle(cx);
                return Poll::Pending;
            }
        };
        match frame {
            None => recorder.finish(None),
            Some(Err(error)) => {
                recorder.abandon();
                return Poll::Ready(Some(Err(error.into())));
            }
            Some(Ok(frame)) => {
                let Some(data) = frame.data_ref() else {
                    // Trailers come last: record before they go out.
                    recorder.finish(Some(frame));
                    continue;
                };
                recorder.push(data);
                if body.is_end_stream() || recorder.has_expected_len() {
                    // The client will see the end with this frame.
                    recorder.finish(Some(frame));
                    continue;
                }
                return Poll::Ready(Some(Ok(frame)));
            }
        }
    }
}

/// An empty body, for layers that make responses of their own (tower-http's
/// `TimeoutLayer` outside this one, say).
impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::full(Bytes::new())
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Full { .. } => "Full",
            Kind::Inner { .. } => "Inner",
            Kind::Recording { .. } => "Recording",
            Kind::Joined { .. } => "Joined",
            Kind::Relayed { .. } => "Relayed",
        };
        f.debug_struct("ResponseBody").field("kind", &kind).finish()
    }
}
