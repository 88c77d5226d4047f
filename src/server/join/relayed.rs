//! Joining across replicas, through a store's [`JoinRelay`]: the producing
//! replica forwards its live copy to the store, a joiner on another replica
//! finds the head there and reads the body as it grows.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body::Frame;
use tokio::time::{Instant, Sleep};

use super::board::Watcher;
use super::interrupted::JoinInterrupted;
use super::live::{HeadState, Progress};
use crate::store::relay::{Cursor, LiveEnd, LiveEntry};
use crate::store::{FencingToken, Fingerprint, JoinRelay, KeyDigest, StoreError};

/// How often a joiner tells the replicas again that it wants a key, until
/// the response starts.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(500);

/// The claim whose response a forwarder copies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Producer {
    pub(crate) key: KeyDigest,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) token: FencingToken,
    pub(crate) lease: Duration,
}

/// Copies the live copy `watcher` reads to the relay, batching what came
/// meanwhile into one write, until the copy ends. Runs on a task of its own,
/// started only once a joiner elsewhere asked.
pub(crate) async fn forward(relay: JoinRelay, watcher: Watcher, producer: Producer) {
    let relay = relay.get();
    let keep = producer.lease + Duration::from_secs(60);
    let mut entries = Vec::new();
    match watcher.head().await {
        HeadState::Joinable(head) => entries.push(LiveEntry::Head {
            status: head.status,
            headers: head.headers.clone(),
            fingerprint: producer.fingerprint,
            token: producer.token,
            lease: producer.lease,
        }),
        HeadState::TooLarge => entries.push(LiveEntry::End(LiveEnd::TooLarge)),
        HeadState::Gone => entries.push(LiveEntry::End(LiveEnd::Failed)),
    }
    let mut next = 0;
    let mut fresh = true;
    loop {
        let ended = matches!(entries.last(), Some(LiveEntry::End(_)));
        if !ended {
            let end = std::future::poll_fn(|cx| {
                let mut taken = false;
                loop {
                    match watcher.live().poll_chunk(next, cx) {
                        Poll::Ready(Some(Ok(chunk))) => {
                            next += 1;
                            taken = true;
                            entries.push(LiveEntry::Chunk(chunk));
                        }
                        Poll::Ready(None) => return Poll::Ready(Some(LiveEnd::Complete)),
                        Poll::Ready(Some(Err(Progress::TooLarge))) => {
                            return Poll::Ready(Some(LiveEnd::TooLarge));
                        }
                        Poll::Ready(Some(Err(_))) => return Poll::Ready(Some(LiveEnd::Failed)),
                        Poll::Pending if taken => return Poll::Ready(None),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            })
            .await;
            if let Some(end) = end {
                if end == LiveEnd::TooLarge {
                    // The relay lets go of what it holds; only the end stays.
                    entries.retain(|entry| !matches!(entry, LiveEntry::Chunk(_)));
                }
                entries.push(LiveEntry::End(end));
            }
        }
        let ended = matches!(entries.last(), Some(LiveEntry::End(_)));
        if append(relay, &producer.key, &entries, fresh, keep)
            .await
            .is_err()
        {
            // The joiners elsewhere see the copy go quiet, then its claim
            // end, and are cut: their retry replays the record.
            return;
        }
        if ended {
            return;
        }
        fresh = false;
        entries.clear();
    }
}

/// One write, tried three times over 150 ms.
async fn append(
    relay: &dyn crate::store::relay::Relay,
    key: &KeyDigest,
    entries: &[LiveEntry],
    fresh: bool,
    keep: Duration,
) -> Result<(), StoreError> {
    let mut result = relay.append(key, entries, fresh, keep).await;
    for _ in 0..2 {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        result = relay.append(key, entries, fresh, keep).await;
    }
    result
}

/// A response joined on another replica: its head, and a body that reads
/// the rest.
#[derive(Debug)]
pub(crate) struct RelayedResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: RelayedBody,
}

/// What a joiner found in the relay.
pub(crate) enum RelayedHead {
    /// The response, joinable.
    Joinable(Box<RelayedResponse>),
    /// The response outgrew the recording limit.
    TooLarge,
}

/// Asks the replicas for `key`'s response and waits until its copy starts
/// in the relay: a copy for `fingerprint` whose producer still holds the
/// key (a copy left by an earlier owner is passed over).
pub(crate) async fn relayed_head(
    relay: JoinRelay,
    key: KeyDigest,
    fingerprint: Fingerprint,
) -> RelayedHead {
    let mut announced: Option<Instant> = None;
    loop {
        let backend = relay.get();
        if announced.is_none_or(|at| at.elapsed() >= ANNOUNCE_EVERY) {
            // A lost announcement is made again; the record is the fallback.
            let _ = backend.want(&key).await;
            announced = Some(Instant::now());
        }
        if let Ok(entries) = backend.read(&key, &Cursor::default()).await
            && let Some(found) = usable(&relay, &key, &fingerprint, entries).await
        {
            return found;
        }
        tokio::time::sleep(backend.poll_interval() * 2).await;
    }
}

/// The copy in `entries`, if it is one this joiner may take.
async fn usable(
    relay: &JoinRelay,
    key: &KeyDigest,
    fingerprint: &Fingerprint,
    entries: Vec<(Cursor, LiveEntry)>,
) -> Option<RelayedHead> {
    if entries
        .iter()
        .any(|(_, entry)| *entry == LiveEntry::End(LiveEnd::TooLarge))
    {
        return Some(RelayedHead::TooLarge);
    }
    let mut entries = entries.into_iter();
    let (cursor, first) = entries.next()?;
    let LiveEntry::Head {
        status,
        headers,
        fingerprint: theirs,
        token,
        lease,
    } = first
    else {
        return None;
    };
    if theirs != *fingerprint || !relay.get().still_owned(key, token).await.ok()? {
        return None;
    }
    let mut body = RelayedBody {
        relay: relay.clone(),
        key: *key,
        token,
        lease,
        cursor,
        ready: VecDeque::new(),
        end: None,
        call: None,
        sleep: None,
        heard_at: Instant::now(),
        doomed: false,
    };
    body.take(entries.collect());
    Some(RelayedHead::Joinable(Box::new(RelayedResponse {
        status,
        headers,
        body,
    })))
}

/// A call to the relay a relayed body waits on.
type Pending<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// What a relayed body is waiting on.
enum Call {
    Read(Pending<Vec<(Cursor, LiveEntry)>>),
    Check(Pending<bool>),
}

/// The body of a response joined on another replica: read from the relay
/// every poll interval; cut when the copy ends badly, or goes quiet while
/// its producer no longer holds the key.
pub(crate) struct RelayedBody {
    relay: JoinRelay,
    key: KeyDigest,
    token: FencingToken,
    lease: Duration,
    cursor: Cursor,
    ready: VecDeque<Bytes>,
    end: Option<LiveEnd>,
    call: Option<Call>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// When the copy last grew, or its producer was last seen holding the key.
    heard_at: Instant,
    /// The producer lost the key: one last read, then the cut.
    doomed: bool,
}

impl std::fmt::Debug for RelayedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayedBody")
            .field("key", &self.key)
            .field("ready", &self.ready.len())
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl RelayedBody {
    fn take(&mut self, entries: Vec<(Cursor, LiveEntry)>) {
        if !entries.is_empty() {
            self.heard_at = Instant::now();
        }
        for (cursor, entry) in entries {
            self.cursor = cursor;
            match entry {
                LiveEntry::Chunk(chunk) => self.ready.push_back(chunk),
                LiveEntry::End(end) => self.end = Some(end),
                // A second head: a new owner's copy replaced the one read.
                LiveEntry::Head { .. } => self.end = Some(LiveEnd::Failed),
            }
            if self.end.is_some() {
                return;
            }
        }
    }

    fn read(&self) -> Call {
        let (relay, key, cursor) = (self.relay.clone(), self.key, self.cursor.clone());
        Call::Read(Box::pin(
            async move { relay.get().read(&key, &cursor).await },
        ))
    }

    fn check(&self) -> Call {
        let (relay, key, token) = (self.relay.clone(), self.key, self.token);
        Call::Check(Box::pin(async move {
            relay.get().still_owned(&key, token).await
        }))
    }

    /// How long the copy may stay quiet before its producer is checked.
    fn patience(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(500))
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, JoinInterrupted>>> {
        loop {
            if let Some(chunk) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            match self.end {
                Some(LiveEnd::Complete) => return Poll::Ready(None),
                Some(LiveEnd::TooLarge) => {
                    self.end = Some(LiveEnd::Complete);
                    return Poll::Ready(Some(Err(JoinInterrupted::too_large())));
                }
                Some(LiveEnd::Failed) => {
                    self.end = Some(LiveEnd::Complete);
                    return Poll::Ready(Some(Err(JoinInterrupted::broke_off())));
                }
                None => {}
            }
            if let Some(sleep) = &mut self.sleep {
                ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
            }
            let Some(call) = &mut self.call else {
                self.call = Some(self.read());
                continue;
            };
            let quiet = match call {
                Call::Read(read) => {
                    let read = ready!(read.as_mut().poll(cx));
                    self.call = None;
                    match read {
                        Ok(entries) if !entries.is_empty() => {
                            self.take(entries);
                            continue;
                        }
                        // Nothing new, or the store did not answer.
                        _ => true,
                    }
                }
                Call::Check(check) => {
                    let owned = ready!(check.as_mut().poll(cx));
                    self.call = None;
                    match owned {
                        Ok(true) => self.heard_at = Instant::now(),
                        Ok(false) => self.doomed = true,
                        // Unreachable for longer than a lease: the cut.
                        Err(_) if self.heard_at.elapsed() > self.lease => self.doomed = true,
                        Err(_) => {}
                    }
                    self.call = Some(self.read());
                    continue;
                }
            };
            if quiet && self.doomed {
                self.end = Some(LiveEnd::Failed);
                continue;
            }
            if self.heard_at.elapsed() >= self.patience() {
                self.call = Some(self.check());
                continue;
            }
            let interval = self.relay.get().poll_interval();
            self.sleep = Some(Box::pin(tokio::time::sleep(interval)));
        }
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.ready.is_empty() && self.end == Some(LiveEnd::Complete)
    }
}
