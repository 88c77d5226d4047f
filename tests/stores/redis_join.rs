//! Joining across replicas through `RedisStore`'s relay, against the real
//! Redis: two stores on it, each under a layer of its own (two replicas that
//! share no memory). What the relay writes is read back from Redis itself.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libtest_mimic::Trial;
use tokio::sync::mpsc;
use tower::ServiceExt;
use tower_idempotency::server::JoinInterrupted;
use tower_idempotency::store::{KeyDigest, RedisStore};
use tower_idempotency::{IdempotencyKey, IdempotencyLayer, Scope};

use crate::common::fed::{Chunk, Streaming, generation, next, rest, streaming};
use crate::harness::{Flavor, trials};

fn prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tower-idempotency-test:join:{nanos}:")
}

/// Two replicas on one Redis, joining on, with `limit` as recording limit.
async fn replicas(
    prefix: &str,
    limit: usize,
) -> [(
    Streaming,
    mpsc::UnboundedReceiver<mpsc::UnboundedSender<Chunk>>,
); 2] {
    let url = crate::redis_store::redis_url();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let store = RedisStore::connect(&url)
            .await
            .unwrap()
            .prefix(prefix)
            .join_poll_interval(Duration::from_millis(2));
        let layer = IdempotencyLayer::new(store)
            .join_in_flight(Duration::from_secs(10))
            .response_record_limit(limit);
        replicas.push(streaming(layer));
    }
    replicas.try_into().ok().unwrap()
}

async fn redis() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(crate::redis_store::redis_url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// The Redis key of `key`'s live copy.
fn live_key(prefix: &str, key: &str) -> String {
    let key = IdempotencyKey::parse(key.as_bytes()).unwrap();
    let digest = KeyDigest::new(&Scope::global(), &key);
    format!("{prefix}{digest:x}:live")
}

/// Waits until `n` connections listen for joiners under `prefix`.
async fn listening(prefix: &str, n: i64) {
    let mut redis = redis().await;
    let channel = format!("{prefix}join");
    for _ in 0..200 {
        let (_, count): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async::<Vec<(String, i64)>>(&mut redis)
            .await
            .unwrap()
            .pop()
            .unwrap();
        if count >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{n} listeners never subscribed to {channel}");
}

/// Starts a streaming response on `service` and makes both replicas
/// listen (a first response starts a replica's listener).
async fn warm(services: [&Streaming; 2], prefix: &str) {
    for (i, service) in services.into_iter().enumerate() {
        let response = service
            .clone()
            .oneshot(generation(&format!("warm-{i}")))
            .await;
        drop(response);
    }
    listening(prefix, 2).await;
}

/// Produces one-byte chunks on `feeder` (read off by `original`) until the
/// joiner's head arrives, and answers it with the bytes produced so far.
async fn produce_until_joined(
    feeder: &mpsc::UnboundedSender<Chunk>,
    original: &mut tower_idempotency::server::ResponseBody<crate::common::fed::FedBody>,
    joiner: tokio::task::JoinHandle<
        http::Response<tower_idempotency::server::ResponseBody<crate::common::fed::FedBody>>,
    >,
) -> (
    http::Response<tower_idempotency::server::ResponseBody<crate::common::fed::FedBody>>,
    Vec<u8>,
) {
    let mut produced = Vec::new();
    for _ in 0..500 {
        feeder.send(Ok(bytes::Bytes::from_static(b"a"))).unwrap();
        next(original).await.unwrap().unwrap();
        produced.push(b'a');
        if joiner.is_finished() {
            return (joiner.await.unwrap(), produced);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the joiner never got its head");
}

/// A streaming response nobody joins leaves nothing in Redis but its
/// record: no live copy is written.
async fn a_response_nobody_joins_writes_no_copy() {
    let prefix = prefix();
    let [(one, mut fed_one), (two, _)] = replicas(&prefix, 1 << 20).await;
    warm([&one, &two], &prefix).await;
    let _ = fed_one.recv().await;
    let original = one.clone().oneshot(generation("k1")).await.unwrap();
    let feeder = fed_one.recv().await.unwrap();
    for chunk in ["a", "b", "c"] {
        feeder.send(Ok(chunk.into())).unwrap();
    }
    drop(feeder);
    assert_eq!(rest(original.into_body()).await.unwrap(), "abc");
    let exists: i64 = redis::cmd("EXISTS")
        .arg(live_key(&prefix, "k1"))
        .query_async(&mut redis().await)
        .await
        .unwrap();
    assert_eq!(exists, 0, "no copy for a response nobody joined");
}

/// Twenty joiners on the other replica read one copy: identical bodies, and
/// the stream in Redis holds one entry per batch, not per joiner.
async fn twenty_joiners_elsewhere_share_one_copy() {
    let prefix = prefix();
    let [(one, mut fed_one), (two, _)] = replicas(&prefix, 1 << 20).await;
    warm([&one, &two], &prefix).await;
    let _ = fed_one.recv().await;
    let mut original = one
        .clone()
        .oneshot(generation("k1"))
        .await
        .unwrap()
        .into_body();
    let feeder = fed_one.recv().await.unwrap();
    let first = tokio::spawn(two.clone().oneshot(generation("k1")));
    let first = tokio::spawn(async move { first.await.unwrap().unwrap() });
    let (first, mut produced) = produce_until_joined(&feeder, &mut original, first).await;
    assert_eq!(first.headers()["idempotent-replayed"], "true");
    let mut joiners = vec![tokio::spawn(rest(first.into_body()))];
    for _ in 0..19 {
        let joiner = two.clone().oneshot(generation("k1"));
        joiners.push(tokio::spawn(async move {
            rest(joiner.await.unwrap().into_body()).await
        }));
    }
    for chunk in ["b", "c", "d"] {
        feeder.send(Ok(chunk.into())).unwrap();
        next(&mut original).await.unwrap().unwrap();
        produced.extend_from_slice(chunk.as_bytes());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(feeder);
    assert!(next(&mut original).await.is_none());
    for joiner in joiners {
        assert_eq!(joiner.await.unwrap().unwrap(), produced);
    }
    let entries: i64 = redis::cmd("XLEN")
        .arg(live_key(&prefix, "k1"))
        .query_async(&mut redis().await)
        .await
        .unwrap();
    // A head, at most one entry per chunk, an end: whatever the joiners.
    assert!(entries <= produced.len() as i64 + 2, "{entries} entries");
}

/// A response outgrowing the recording limit cuts the joiner elsewhere (as
/// too large), later joiners get 409 not replayable, and Redis keeps only
/// the end of the copy.
async fn past_the_limit_a_joiner_elsewhere_is_cut_and_the_copy_let_go() {
    let prefix = prefix();
    let [(one, mut fed_one), (two, _)] = replicas(&prefix, 4096).await;
    warm([&one, &two], &prefix).await;
    let _ = fed_one.recv().await;
    let mut original = one
        .clone()
        .oneshot(generation("k1"))
        .await
        .unwrap()
        .into_body();
    let feeder = fed_one.recv().await.unwrap();
    let joiner = tokio::spawn(two.clone().oneshot(generation("k1")));
    let joiner = tokio::spawn(async move { joiner.await.unwrap().unwrap() });
    let (joined, produced) = produce_until_joined(&feeder, &mut original, joiner).await;
    let mut joined = joined.into_body();
    let mut received = Vec::new();
    while received.len() < produced.len() {
        received.extend_from_slice(&next(&mut joined).await.unwrap().unwrap());
    }
    feeder.send(Ok(vec![b'x'; 4096].into())).unwrap();
    assert_eq!(next(&mut original).await.unwrap().unwrap().len(), 4096);
    let error = loop {
        match next(&mut joined).await {
            Some(Ok(_)) => {}
            Some(Err(error)) => break error,
            None => panic!("a clean end past the limit"),
        }
    };
    assert!(
        error
            .downcast_ref::<JoinInterrupted>()
            .unwrap()
            .is_too_large()
    );
    let late = two.clone().oneshot(generation("k1")).await.unwrap();
    assert_eq!(late.status(), 409);
    let late = rest(late.into_body()).await.unwrap();
    assert!(String::from_utf8_lossy(&late).contains("idempotency_response_not_replayable"));
    let entries: i64 = redis::cmd("XLEN")
        .arg(live_key(&prefix, "k1"))
        .query_async(&mut redis().await)
        .await
        .unwrap();
    assert_eq!(entries, 1, "only the end is kept");
    drop(feeder);
    assert!(next(&mut original).await.is_none());
}

pub fn trials() -> Vec<Trial> {
    trials!["redis_join";
        Flavor::MultiThread(2) => a_response_nobody_joins_writes_no_copy,
        Flavor::MultiThread(2) => twenty_joiners_elsewhere_share_one_copy,
        Flavor::MultiThread(2) => past_the_limit_a_joiner_elsewhere_is_cut_and_the_copy_let_go,
    ]
}
