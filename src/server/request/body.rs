//! The request body the wrapped service receives: the buffered bytes of a
//! protected request, or the untouched body of any other request.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The body of a request as the wrapped service sees it.
    ///
    /// A request the layer protects was read whole to fingerprint it, so its
    /// body arrives as those same bytes (and trailers, if any); every other
    /// request keeps its original body, streamed as it comes.
    ///
    /// A tower service behind the layer takes it as its request body:
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use bytes::Bytes;
    /// use http::{Request, Response};
    /// use http_body_util::{BodyExt, Full};
    /// use tower_idempotency::server::RequestBody;
    ///
    /// let handler = tower::service_fn(|request: Request<RequestBody<Full<Bytes>>>| async move {
    ///     let body = request.into_body().collect().await?.to_bytes();
    ///     Ok::<_, Infallible>(Response::new(Full::new(body)))
    /// });
    /// ```
    #[derive(Debug)]
    pub struct RequestBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Buffered { data: Option<Bytes>, trailers: Option<HeaderMap> },
        Streaming { #[pin] body: B },
    }
}

impl<B> RequestBody<B> {
    pub(crate) fn streaming(body: B) -> Self {
        Self {
            kind: Kind::Streaming { body },
        }
    }

    pub(crate) fn buffered(buffered: BufferedBody) -> Self {
        Self {
            kind: Kind::Buffered {
                data: Some(buffered.data).filter(|data| !data.is_empty()),
                trailers: buffered.trailers,
            },
        }
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Buffered { data, trailers } => {
                let frame = data
                    .take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(Frame::trailers));
                Poll::Ready(frame.map(Ok))
            }
            KindProj::Streaming { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            Kind::Streaming { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |data| data.len() as u64))
            }
            Kind::Streaming { body } => body.size_hint(),
        }
    }
}

/// A request body read whole.
#[derive(Debug, Default)]
pub(crate) struct BufferedBody {
    pub(crate) data: Bytes,
    pub(crate) trailers: Option<HeaderMap>,
}

/// Why a body could not be buffered.
#[derive(Debug)]
pub(crate) enum BufferError {
    /// Longer than the limit: the rest was not read.
    TooLarge,
    /// The body failed before its end (the client went away, or sent a broken
    /// encoding).
    Unreadable,
}

/// Reads `body` whole, refusing to hold more than `limit` bytes. One chunk is
/// kept as it is (no copy); several are joined once.
pub(crate) async fn buffer<B>(body: B, limit: usize) -> Result<BufferedBody, BufferError>
where
    B: Body<Data = Bytes>,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(BufferError::TooLarge);
    }
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut len = 0usize;
    let mut trailers = None;
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|_| BufferError::Unreadable)?;
        let frame = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(frame_trailers) = frame.into_trailers() {
                    trailers = Some(frame_trailers);
                }
                continue;
            }
        };
        len = len.saturating_add(frame.len());
        if len > limit {
            return Err(BufferError::TooLarge);
        }
        match (&mut joined, first.take()) {
            (Some(joined), _) => joined.extend_from_slice(&frame),
            (None, None) => first = Some(frame),
            (None, Some(head)) => {
                let mut buf = BytesMut::with_capacity(len.max(body.size_hint().lower() as usize));
                buf.extend_from_slice(&head);
                buf.extend_from_slice(&frame);
                joined = Some(buf);
            }
        }
    }
    let data = match (joined, first) {
        (Some(joined), _) => joined.freeze(),
        (None, first) => first.unwrap_or_default(),
    };
    Ok(BufferedBody { data, trailers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::collections::VecDeque;
    use std::convert::Infallible;

    /// A body of several chunks and no size hint, like a chunked upload.
    struct Chunked(VecDeque<&'static [u8]>);

    impl Body for Chunked {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(
                self.0
                    .pop_front()
                    .map(|c| Ok(Frame::data(Bytes::from_static(c)))),
            )
        }
    }

    #[tokio::test]
    async fn joins_chunks_and_hands_them_on() {
        let chunks = Chunked(VecDeque::from([&b"ab"[..], b"cd", b"e"]));
        let buffered = buffer(chunks, 5).await.unwrap();
        assert_eq!(buffered.data, Bytes::from_static(b"abcde"));
        let body = RequestBody::<Chunked>::buffered(buffered);
        assert_eq!(body.size_hint().exact(), Some(5));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, Bytes::from_static(b"abcde"));
    }

    #[tokio::test]
    async fn stops_reading_past_the_limit() {
        let chunks = Chunked(VecDeque::from([&b"abc"[..], b"def", b"never read"]));
        assert!(matches!(
            buffer(chunks, 5).await,
            Err(BufferError::TooLarge)
        ));
    }

    #[tokio::test]
    async fn refuses_a_declared_length_over_the_limit_without_reading() {
        let body = http_body_util::Full::new(Bytes::from_static(b"abcdef"));
        assert!(matches!(buffer(body, 5).await, Err(BufferError::TooLarge)));
    }

    #[tokio::test]
    async fn one_chunk_is_kept_without_a_copy() {
        let data = Bytes::from(vec![7u8; 1024]);
        let body = http_body_util::Full::new(data.clone());
        let buffered = buffer(body, 4096).await.unwrap();
        assert_eq!(buffered.data.as_ptr(), data.as_ptr());
    }
}
