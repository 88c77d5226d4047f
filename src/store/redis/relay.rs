//! The Redis relay: responses in flight carried to joiners on other
//! replicas.
//!
//! - A joiner publishes the key's digest on the channel `<prefix>join` (and
//!   again every half second until the response starts). Every replica of
//!   the store listens on that channel with one connection of its own
//!   (Redis Cluster propagates a publish to every node), and notes the key
//!   as wanted.
//! - The replica producing that key's response, seeing it wanted at its next
//!   chunk, copies the response into a Redis stream, `<prefix><digest>:live`:
//!   a head entry, one entry per batch of chunks, an end entry. Each write
//!   keeps the stream for a lease and a minute at most, and the copy stops at the
//!   recording limit. A response nobody wants costs nothing here.
//! - A joiner reads the stream from its start with `XRANGE`, a batch per
//!   poll interval (5 ms by default), and while it goes quiet checks that
//!   the producer still holds the key (a dead producer loses it within a
//!   lease).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use dashmap::DashMap;
use http::StatusCode;
use redis::{Client, RedisError};
use tokio::time::Instant;

use super::call::{Connection, ScriptCall, millis, record_key};
use super::scripts::OWNED_SCRIPT;
use crate::store::codec;
use crate::store::relay::{Cursor, LiveEnd, LiveEntry, Relay, RelayCall};
use crate::store::{FencingToken, Fingerprint, KeyDigest, StoreError, StoreErrorKind};

/// How long a key stays wanted after a joiner asked for it.
const WANTED_FOR: Duration = Duration::from_secs(60);
/// Entries read per poll.
const BATCH: usize = 256;

/// The relay of one [`RedisStore`](super::RedisStore).
pub(crate) struct RedisRelay {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    prefix: String,
    timeout: Duration,
    poll_interval: Duration,
    /// Where to listen for joiners: the Redis, or the cluster's seed nodes.
    listen_on: Vec<Client>,
    /// Names this relay in its announcements, so it does not answer its
    /// own (a joiner here joins a response made here in memory).
    id: [u8; 8],
    started: AtomicBool,
    wanted: DashMap<KeyDigest, Instant>,
    /// How many keys are in `wanted`: owners look no further while it is 0.
    wanted_count: AtomicUsize,
}

impl RedisRelay {
    pub(super) fn new(
        connection: Connection,
        prefix: String,
        timeout: Duration,
        poll_interval: Duration,
        listen_on: Vec<Client>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                connection,
                prefix,
                timeout,
                poll_interval,
                listen_on,
                id: crate::store::new_token().get().to_be_bytes(),
                started: AtomicBool::new(false),
                wanted: DashMap::new(),
                wanted_count: AtomicUsize::new(0),
            }),
        }
    }
}

impl Inner {
    fn channel(&self) -> String {
        format!("{}join", self.prefix)
    }

    fn live_key(&self, key: &KeyDigest) -> String {
        format!("{}{key:x}:live", self.prefix)
    }

    /// Notes the key an announcement (its 32-byte digest, then the
    /// announcing relay's id) asks for, unless this relay made it.
    fn mark_wanted(&self, payload: &[u8]) {
        let Some((digest, id)) = payload.split_first_chunk::<32>() else {
            return;
        };
        if id == self.id {
            return;
        }
        let bytes = *digest;
        let now = Instant::now();
        if self.wanted.len() > 1024 {
            self.wanted
                .retain(|_, at| now.duration_since(*at) < WANTED_FOR);
        }
        self.wanted.insert(KeyDigest::from_bytes(bytes), now);
        self.wanted_count
            .store(self.wanted.len(), Ordering::Relaxed);
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        pipeline: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        self.connection.pipeline(pipeline, self.timeout).await
    }
}

/// Listens for joiners on `channel` while the relay lives, reconnecting
/// (to the next seed, on a cluster) when the connection drops.
async fn listen(relay: Weak<Inner>, clients: Vec<Client>, channel: String) {
    let mut backoff = Duration::from_millis(100);
    for client in clients.iter().cycle() {
        if relay.strong_count() == 0 {
            return;
        }
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, RedisError>(pubsub)
        };
        let Ok(Ok(pubsub)) = tokio::time::timeout(Duration::from_secs(2), subscribed).await else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        };
        backoff = Duration::from_millis(100);
        let mut messages = pubsub.into_on_message();
        loop {
            let next = std::future::poll_fn(|cx| {
                futures_core::Stream::poll_next(std::pin::Pin::new(&mut messages), cx)
            });
            match tokio::time::timeout(Duration::from_secs(1), next).await {
                Ok(Some(message)) => match relay.upgrade() {
                    Some(relay) => relay.mark_wanted(message.get_payload_bytes()),
                    None => return,
                },
                // The connection dropped: subscribe again.
                Ok(None) => break,
                Err(_) if relay.strong_count() == 0 => return,
                Err(_) => {}
            }
        }
    }
}

const HEAD: &str = "h";
const CHUNK: &str = "c";
const END: &str = "e";

fn encode(entry: &LiveEntry) -> (&'static str, Vec<u8>) {
    match entry {
        LiveEntry::Head {
            status,
            headers,
            fingerprint,
            token,
            lease,
        } => {
            let mut value = Vec::new();
            value.put_u16(status.as_u16());
            value.put_slice(fingerprint.as_bytes());
            value.put_u64(token.get());
            value.put_u64(millis(*lease));
            codec::encode_headers(headers, &mut value);
            (HEAD, value)
        }
        LiveEntry::Chunk(chunk) => (CHUNK, chunk.to_vec()),
        LiveEntry::End(end) => {
            let code = match end {
                LiveEnd::Complete => b'c',
                LiveEnd::Failed => b'f',
                LiveEnd::TooLarge => b't',
            };
            (END, vec![code])
        }
    }
}

fn decode(field: &[u8], value: Vec<u8>) -> Result<LiveEntry, StoreError> {
    let corrupt = || StoreError::new(StoreErrorKind::Corrupt);
    match field {
        b"h" => {
            let mut value = Bytes::from(value);
            if value.remaining() < 50 {
                return Err(corrupt());
            }
            let status = StatusCode::from_u16(value.get_u16()).map_err(|_| corrupt())?;
            let mut fingerprint = [0; 32];
            value.copy_to_slice(&mut fingerprint);
            let fingerprint = Fingerprint::from_bytes(fingerprint);
            let token = FencingToken::new(value.get_u64());
            let lease = Duration::from_millis(value.get_u64());
            let headers = codec::decode_headers(&mut value)?;
            Ok(LiveEntry::Head {
                status,
                headers,
                fingerprint,
                token,
                lease,
            })
        }
        b"c" => Ok(LiveEntry::Chunk(Bytes::from(value))),
        b"e" => match value.as_slice() {
            b"c" => Ok(LiveEntry::End(LiveEnd::Complete)),
            b"f" => Ok(LiveEntry::End(LiveEnd::Failed)),
            b"t" => Ok(LiveEntry::End(LiveEnd::TooLarge)),
            _ => Err(corrupt()),
        },
        _ => Err(corrupt()),
    }
}

impl Relay for RedisRelay {
    fn start(&self) {
        if self.inner.started.load(Ordering::Relaxed)
            || self.inner.started.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.started.store(false, Ordering::Relaxed);
            return;
        };
        let relay = Arc::downgrade(&self.inner);
        runtime.spawn(listen(
            relay,
            self.inner.listen_on.clone(),
            self.inner.channel(),
        ));
    }

    fn want<'a>(&'a self, key: &'a KeyDigest) -> RelayCall<'a, ()> {
        Box::pin(async move {
            let mut publish = redis::pipe();
            let mut announcement = key.as_bytes().to_vec();
            announcement.extend_from_slice(&self.inner.id);
            publish
                .cmd("PUBLISH")
                .arg(self.inner.channel())
                .arg(announcement)
                .ignore();
            self.inner.query::<()>(&publish).await
        })
    }

    fn is_wanted(&self, key: &KeyDigest) -> bool {
        if self.inner.wanted_count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.inner
            .wanted
            .get(key)
            .is_some_and(|at| at.elapsed() < WANTED_FOR)
    }

    fn served(&self, key: &KeyDigest) {
        self.inner.wanted.remove(key);
        self.inner
            .wanted_count
            .store(self.inner.wanted.len(), Ordering::Relaxed);
    }

    fn append<'a>(
        &'a self,
        key: &'a KeyDigest,
        entries: &'a [LiveEntry],
        fresh: bool,
        keep: Duration,
    ) -> RelayCall<'a, ()> {
        Box::pin(async move {
            let live = self.inner.live_key(key);
            let mut pipeline = redis::pipe();
            if fresh {
                pipeline.cmd("DEL").arg(&live).ignore();
            }
            if entries.contains(&LiveEntry::End(LiveEnd::TooLarge)) {
                // Past the recording limit: the chunks go at once. Trimmed,
                // not deleted, so the end's id still follows every id a
                // joiner has read.
                pipeline
                    .cmd("XTRIM")
                    .arg(&live)
                    .arg("MAXLEN")
                    .arg(0)
                    .ignore();
            }
            for entry in entries {
                let (field, value) = encode(entry);
                pipeline
                    .cmd("XADD")
                    .arg(&live)
                    .arg("*")
                    .arg(field)
                    .arg(value)
                    .ignore();
            }
            pipeline
                .cmd("PEXPIRE")
                .arg(&live)
                .arg(millis(keep))
                .ignore();
            self.inner.query::<()>(&pipeline).await
        })
    }

    fn read<'a>(
        &'a self,
        key: &'a KeyDigest,
        cursor: &'a Cursor,
    ) -> RelayCall<'a, Vec<(Cursor, LiveEntry)>> {
        Box::pin(async move {
            let start = match &cursor.0 {
                Some(id) => format!("({id}"),
                None => "-".to_owned(),
            };
            let mut pipeline = redis::pipe();
            pipeline
                .cmd("XRANGE")
                .arg(self.inner.live_key(key))
                .arg(start)
                .arg("+")
                .arg("COUNT")
                .arg(BATCH);
            let (entries,): (Vec<(String, Vec<Vec<u8>>)>,) = self.inner.query(&pipeline).await?;
            entries
                .into_iter()
                .map(|(id, mut fields)| {
                    let value = fields.pop().ok_or(StoreErrorKind::Corrupt)?;
                    let field = fields.pop().ok_or(StoreErrorKind::Corrupt)?;
                    Ok((Cursor(Some(id)), decode(&field, value)?))
                })
                .collect()
        })
    }

    fn still_owned<'a>(&'a self, key: &'a KeyDigest, token: FencingToken) -> RelayCall<'a, bool> {
        Box::pin(async move {
            let name = record_key(&self.inner.prefix, key);
            let call = ScriptCall::new(&OWNED_SCRIPT, &name).arg(token.get().to_string());
            let inner = &self.inner;
            let (owned, _): (i64, _) = inner.connection.script(&call, None, inner.timeout).await?;
            Ok(owned == 1)
        })
    }

    fn poll_interval(&self) -> Duration {
        self.inner.poll_interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn entries_round_trip() {
        let mut headers = HeaderMap::new();
        headers.append("content-type", "text/event-stream".parse().unwrap());
        for entry in [
            LiveEntry::Head {
                status: StatusCode::OK,
                headers,
                fingerprint: Fingerprint::from_bytes([7; 32]),
                token: FencingToken::new(42),
                lease: Duration::from_secs(30),
            },
            LiveEntry::Chunk(Bytes::from_static(b"data: 1\n\n")),
            LiveEntry::End(LiveEnd::Complete),
            LiveEntry::End(LiveEnd::Failed),
            LiveEntry::End(LiveEnd::TooLarge),
        ] {
            let (field, value) = encode(&entry);
            assert_eq!(decode(field.as_bytes(), value).unwrap(), entry);
        }
        assert!(decode(b"h", vec![0; 3]).is_err());
        assert!(decode(b"x", vec![]).is_err());
        assert!(decode(b"e", b"?".to_vec()).is_err());
    }
}
