//! A streaming HTTP client for the generations example: posts a generation
//! and reads its server-sent events one at a time, telling a clean end from
//! a cut connection.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A streamed response being read.
pub struct EventStream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    buffer: BytesMut,
    /// Every byte read so far, as it came.
    pub raw: BytesMut,
}

/// How a stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The body ended cleanly.
    Clean,
    /// The connection was cut (a body error).
    Cut,
}

/// Posts `body` to `/v1/generations` with `key`, and returns once the head
/// arrives.
pub async fn post_generation(addr: &str, key: &str, body: &str) -> EventStream {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let request = Request::post(format!("http://{addr}/v1/generations"))
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    EventStream {
        status: parts.status,
        headers: parts.headers,
        body,
        buffer: BytesMut::new(),
        raw: BytesMut::new(),
    }
}

impl EventStream {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The next event's data (`data: ` taken off), or how the stream ended.
    pub async fn next_event(&mut self) -> Result<String, End> {
        loop {
            if let Some(at) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let event = self.buffer.split_to(at + 2);
                let text = String::from_utf8(event.to_vec()).unwrap();
                let data = text.trim_end().strip_prefix("data: ").unwrap_or(&text);
                return Ok(data.to_owned());
            }
            match self.body.frame().await {
                None => return Err(End::Clean),
                Some(Err(_)) => return Err(End::Cut),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.raw.extend_from_slice(&data);
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// Reads every event left, and how the stream ended.
    pub async fn rest(&mut self) -> (Vec<String>, End) {
        let mut events = Vec::new();
        loop {
            match self.next_event().await {
                Ok(event) => events.push(event),
                Err(end) => return (events, end),
            }
        }
    }
}

/// The index of a token event (`None` for `[DONE]`).
pub fn index_of(event: &str) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_str(event).ok()?;
    value["index"].as_u64()
}

/// The generation id of a token event.
pub fn generation_of(event: &str) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_str(event).ok()?;
    value["generation"].as_u64()
}

/// Asserts the events of a whole generation: indexes 0 to 19 of
/// `generation`, then `[DONE]`.
#[track_caller]
pub fn assert_whole(events: &[String], generation: u64) {
    assert_eq!(events.len(), 21, "{events:?}");
    for (i, event) in events[..20].iter().enumerate() {
        assert_eq!(index_of(event), Some(i as u64), "{event}");
        assert_eq!(generation_of(event), Some(generation), "{event}");
    }
    assert_eq!(events[20], "[DONE]");
}
