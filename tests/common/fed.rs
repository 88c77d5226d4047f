//! A response body the test feeds chunk by chunk, and a service whose
//! responses stream one: a generation whose pace the test sets.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;
use tower_idempotency::server::{BoxError, RequestBody, ResponseBody};
use tower_idempotency::{IdempotencyLayer, Store};

/// One chunk, or an error that breaks the body off.
pub type Chunk = Result<Bytes, std::io::Error>;

/// A response body the test feeds: a chunk, an error, or (the sender
/// dropped) the end.
pub struct FedBody(pub mpsc::UnboundedReceiver<Chunk>);

impl http_body::Body for FedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| c.map(Frame::data)))
    }
}

/// The layered streaming service.
pub type Streaming = tower::util::BoxCloneSyncService<
    Request<Full<Bytes>>,
    Response<ResponseBody<FedBody>>,
    Infallible,
>;

/// A service under `layer` whose every run answers 200 `text/event-stream`
/// with a body fed through the sender it sends to the receiver returned.
pub fn streaming<St: Store>(
    layer: IdempotencyLayer<St>,
) -> (
    Streaming,
    mpsc::UnboundedReceiver<mpsc::UnboundedSender<Chunk>>,
) {
    let (feeders, fed) = mpsc::unbounded_channel();
    let handler = tower::service_fn(move |_: Request<RequestBody<Full<Bytes>>>| {
        let (feeder, chunks) = mpsc::unbounded_channel();
        let _ = feeders.send(feeder);
        async move {
            let response = Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(FedBody(chunks))
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    });
    (
        tower::util::BoxCloneSyncService::new(tower::Layer::layer(&layer, handler)),
        fed,
    )
}

/// A generation request with `key`.
pub fn generation(key: &str) -> Request<Full<Bytes>> {
    Request::post("/v1/generations")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from_static(b"{\"prompt\":\"tea\"}")))
        .unwrap()
}

/// The next data frame, or the end, or the error.
pub async fn next(body: &mut ResponseBody<FedBody>) -> Option<Result<Bytes, BoxError>> {
    match body.frame().await? {
        Ok(frame) => Some(Ok(frame.into_data().unwrap())),
        Err(error) => Some(Err(error)),
    }
}

/// Everything left in `body`.
pub async fn rest(body: ResponseBody<FedBody>) -> Result<Bytes, BoxError> {
    Ok(body.collect().await?.to_bytes())
}
