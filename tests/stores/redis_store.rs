//! `RedisStore` against a real Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`): the conformance suite, round trips counted by
//! the server, two replicas sharing one Redis, outages and binary bodies.
//!
//! Without a Redis (or, for the tests that start their own, `redis-server`)
//! the harness marks these tests ignored, unless
//! `TOWER_IDEMPOTENCY_REQUIRE_SERVICES=1` (as in CI): then they fail.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use libtest_mimic::Trial;

use crate::common::{Runs, post_json, send};
use crate::harness::{Flavor, trials};
use bytes::Bytes;
use http::StatusCode;
use tower_idempotency::IdempotencyLayer;
use tower_idempotency::store::RedisStore;

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other test or run uses.
fn unique_prefix(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "tower-idempotency-test:{name}:{}:{nanos}:",
        std::process::id()
    )
}

/// A store on the shared Redis with a prefix of its own.
pub async fn store(name: &str) -> RedisStore {
    match RedisStore::connect(&redis_url()).await {
        Ok(store) => store.prefix(unique_prefix(name)),
        Err(error) => panic!("Redis required at {}: {error}", redis_url()),
    }
}

/// Deletes every key under `prefix` (tests leave nothing behind). By `SCAN`,
/// not `KEYS`: the Redis is shared, and `KEYS` over a large keyspace (a
/// bench's leftovers, say) blocks the server for every test at once and ran
/// past the client's timeout.
async fn cleanup(url: &str, prefix: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut connection)
                .await
                .unwrap();
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

async fn two_replicas_on_one_redis_run_a_key_once() {
    let prefix = unique_prefix("replicas");
    let store_a = store("replicas").await;
    let store_b = store("replicas").await;
    crate::common::replicas::two_replicas_run_a_key_once(
        store_a.prefix(&prefix),
        store_b.prefix(&prefix),
    )
    .await;
    cleanup(&redis_url(), &prefix).await;
}

async fn a_one_mebibyte_body_of_every_byte_value_replays_byte_for_byte() {
    let prefix = unique_prefix("binary");
    let store = store("binary").await;
    let body: Bytes = (0..=255u8)
        .cycle()
        .take(1024 * 1024)
        .collect::<Vec<_>>()
        .into();
    let served = body.clone();
    let app = Router::new()
        .route(
            "/blob",
            axum::routing::post(move || {
                let served = served.clone();
                async move { (StatusCode::CREATED, served) }
            }),
        )
        .layer(
            IdempotencyLayer::new(store.prefix(&prefix))
                .ttl(Duration::from_secs(60))
                .response_record_limit(2 * 1024 * 1024),
        );
    let request = || crate::common::request("POST", "/blob", Some("blob-1"), "");
    let first = send(&app, request()).await;
    assert_eq!(first.body, body);
    let replay = send(&app, request()).await;
    assert!(replay.is_replay());
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.body, body, "byte-identical");
    cleanup(&redis_url(), &prefix).await;
}

async fn an_unreachable_redis_answers_503_within_the_timeout() {
    // Port 1 is closed: the connection is refused.
    let store = RedisStore::open("redis://127.0.0.1:1").unwrap();
    let runs = Runs::default();
    let timeout = Duration::from_secs(2);
    let app = crate::common::replicas::app(store, &runs, Duration::ZERO);
    let started = std::time::Instant::now();
    let answer = send(&app, post_json("k1", "a")).await;
    answer.assert_problem(503, "idempotency_store_unavailable");
    assert!(
        started.elapsed() < timeout + Duration::from_secs(1),
        "no hang"
    );
    assert_eq!(runs.count(), 0);
}

/// A Redis of this test's own, on a free port, stopped when dropped.
pub struct PrivateRedis {
    pub port: u16,
    process: std::process::Child,
}

impl PrivateRedis {
    async fn start(port: Option<u16>) -> Self {
        Self::start_with(port, &[]).await
    }

    /// A replica of `primary`.
    async fn replica_of(primary: &PrivateRedis) -> Self {
        let primary_port = primary.port.to_string();
        let redis = Self::start_with(None, &["--replicaof", "127.0.0.1", &primary_port]).await;
        // Wait until the primary sees it online (a condition, polled; the
        // bound only ends a wait that will never succeed).
        for _ in 0..800 {
            let mut connection = primary.connection().await.unwrap();
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut connection)
                .await
                .unwrap();
            if info.contains("connected_slaves:1") && info.contains("state=online") {
                // Online, and acknowledging writes: what replicated claims
                // need of it.
                let acknowledged: i64 = redis::cmd("WAIT")
                    .arg(1)
                    .arg(100)
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                if acknowledged == 1 {
                    return redis;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the replica did not come online");
    }

    pub async fn start_with(port: Option<u16>, extra: &[&str]) -> Self {
        let port = port.unwrap_or_else(|| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        });
        // A directory of its own: a replica's full sync writes an RDB file
        // there, never into the working tree.
        let dir = std::env::temp_dir().join(format!("tower-idempotency-redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let process = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn();
        let process = process.unwrap_or_else(|error| panic!("redis-server required: {error}"));
        let redis = Self { port, process };
        for _ in 0..100 {
            if redis.connection().await.is_ok() {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the private redis-server did not answer");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await?;
        Ok(connection)
    }

    /// Calls per command since the server started, `INFO` left out.
    async fn calls(&self) -> HashMap<String, u64> {
        let mut connection = self.connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut connection)
            .await
            .unwrap();
        info.lines()
            .filter_map(|line| {
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                (name != "info" && name != "ping" && name != "hello" && name != "client")
                    .then(|| (name.to_owned(), calls))
            })
            .collect()
    }

    fn stop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> HashMap<String, u64> {
    after
        .iter()
        .filter_map(|(name, calls)| {
            let delta = calls - before.get(name).copied().unwrap_or(0);
            (delta > 0).then(|| (name.clone(), delta))
        })
        .collect()
}

async fn round_trips_are_counted_by_the_server() {
    let redis = PrivateRedis::start(None).await;
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let runs = Runs::default();
    let app = Router::new()
        .route(
            "/orders",
            axum::routing::post(move |uri: http::Uri| {
                let runs = runs.clone();
                async move {
                    runs.add();
                    let status = if uri.query() == Some("fail") {
                        500
                    } else {
                        201
                    };
                    (StatusCode::from_u16(status).unwrap(), "body")
                }
            }),
        )
        .layer(IdempotencyLayer::new(store));
    // Load the scripts first (the first call of each after a Redis start
    // costs one more round trip).
    send(&app, post_json("warm", "a")).await;
    send(&app, post_json("warm", "a")).await;
    send(
        &app,
        crate::common::request("POST", "/orders?fail", Some("warm-fail"), "a"),
    )
    .await;

    let measure = async |request| {
        let before = redis.calls().await;
        send(&app, request).await;
        delta(&before, &redis.calls().await)
    };
    let fresh = measure(post_json("k1", "a")).await;
    let replay = measure(post_json("k1", "a")).await;
    let mismatch = measure(post_json("k1", "b")).await;
    let released = measure(crate::common::request(
        "POST",
        "/orders?fail",
        Some("k2"),
        "a",
    ))
    .await;
    eprintln!(
        "round trips: fresh {fresh:?}, replay {replay:?}, mismatch {mismatch:?}, release {released:?}"
    );
    // commandstats counts the commands a script runs inside Redis too; the
    // round trips are the commands the client sent: the EVALSHA calls.
    let round_trips = |calls: &HashMap<String, u64>| {
        for name in calls.keys() {
            assert!(
                ["evalsha", "get", "set", "del", "pexpire"].contains(&name.as_str()),
                "unexpected command {name}"
            );
        }
        calls.get("evalsha").copied().unwrap_or(0)
    };
    assert_eq!(round_trips(&fresh), 2, "claim + record");
    assert_eq!(round_trips(&replay), 1, "claim, which returns the record");
    assert_eq!(round_trips(&mismatch), 1, "claim");
    assert_eq!(round_trips(&released), 2, "claim + release");

    // Renewal, straight through the store: one round trip.
    use tower_idempotency::store::{ClaimOutcome, Store};
    let direct = RedisStore::connect(&redis.url()).await.unwrap();
    let key = crate::common::unique_key("renew-count");
    let fingerprint = tower_idempotency::Fingerprint::from_bytes([1; 32]);
    let ClaimOutcome::Claimed(token) = direct
        .claim(&key, &fingerprint, Duration::from_secs(30))
        .await
        .unwrap()
    else {
        panic!("not claimed");
    };
    direct
        .renew(&key, token, Duration::from_secs(30))
        .await
        .unwrap(); // loads the script
    let before = redis.calls().await;
    direct
        .renew(&key, token, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        round_trips(&delta(&before, &redis.calls().await)),
        1,
        "renew"
    );
}

async fn service_resumes_without_a_restart_when_redis_is_back() {
    let mut redis = PrivateRedis::start(None).await;
    let store = RedisStore::connect(&redis.url())
        .await
        .unwrap()
        .timeout(Duration::from_millis(500));
    let runs = Runs::default();
    let app = crate::common::replicas::app(store, &runs, Duration::ZERO);
    assert_eq!(
        send(&app, post_json("before", "a")).await.status,
        StatusCode::CREATED
    );

    redis.stop();
    send(&app, post_json("during", "a"))
        .await
        .assert_problem(503, "idempotency_store_unavailable");

    let port = redis.port;
    let _back = PrivateRedis::start(Some(port)).await;
    // The connection manager reconnects by itself; the same app recovers.
    let mut recovered = None;
    for _ in 0..50 {
        let answer = send(&app, post_json("after", "a")).await;
        if answer.status == StatusCode::CREATED {
            recovered = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered.is_some(), "the store never recovered");
    assert!(send(&app, post_json("after", "a")).await.is_replay());
}

/// Replicated claims on a plain primary with one replica: acknowledged, a
/// claim runs; with the replica frozen and its link cut, a fresh request gets
/// 503 and its handler never runs; once the replica is back, the same key
/// runs, once.
async fn replicated_claims_on_a_primary_with_a_replica() {
    let primary = PrivateRedis::start(None).await;
    let replica = PrivateRedis::replica_of(&primary).await;
    let store = RedisStore::connect(&primary.url())
        .await
        .unwrap()
        .timeout(Duration::from_secs(1))
        .replicas_acked(1, Duration::from_millis(200));
    let runs = Runs::default();
    let app = crate::common::replicas::app(store, &runs, Duration::ZERO);
    for i in 0..20 {
        let answer = send(&app, post_json(&format!("acked-{i}"), "a")).await;
        assert_eq!(answer.status, StatusCode::CREATED);
    }
    assert_eq!(runs.count(), 20);

    let pid = replica.process.id().to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status();
        assert!(status.is_ok_and(|s| s.success()));
    };
    signal("-STOP");
    crate::cluster::cut_replication(primary.port).await;
    let mut connection = primary.connection().await.unwrap();
    send(&app, post_json("unacked", "a"))
        .await
        .assert_problem(503, "idempotency_store_unavailable");
    assert_eq!(
        runs.count(),
        20,
        "the service did not run for an unacknowledged claim"
    );
    // The claim was given back: nothing holds the key on the primary.
    let held: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!(
            "idempotency:{:x}",
            crate::common::global_digest("unacked")
        ))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(held, None, "the unacknowledged claim was released");

    signal("-CONT");
    let mut answer = send(&app, post_json("unacked", "a")).await;
    for _ in 0..100 {
        if answer.status == StatusCode::CREATED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        answer = send(&app, post_json("unacked", "a")).await;
    }
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(runs.count(), 21, "the key ran once, once acknowledged");
    assert!(send(&app, post_json("unacked", "a")).await.is_replay());
}

/// Fault injection: Redis is killed in the middle of a load of concurrent
/// requests and started again. While it is down, requests answer 503 within
/// the timeout; when it is back, service resumes on the same store; and every
/// execution of the handler is a key that got exactly one 2xx.
async fn redis_killed_mid_load_answers_503_then_recovers_without_double_execution() {
    let mut redis = PrivateRedis::start(None).await;
    let timeout = Duration::from_millis(300);
    let store = RedisStore::connect(&redis.url())
        .await
        .unwrap()
        .timeout(timeout);
    let layer = IdempotencyLayer::new(store).store_timeout(timeout);
    let (app, executed) = crate::common::load::counting_app(layer);
    let load = crate::common::load::Load::start(&app, 8);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let port = redis.port;
    redis.stop();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let _back = PrivateRedis::start(Some(port)).await;
    let at_restart = load.succeeded();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (succeeded, unavailable, slowest) = load.finish(&executed).await;
    eprintln!(
        "redis fault injection: {succeeded} keys got a 2xx and ran once each, {unavailable} answers of 503, slowest answer {slowest:?}"
    );
    assert!(unavailable > 0, "the outage was seen");
    assert!(
        slowest < timeout * 4,
        "answers within the timeouts, no hang"
    );
    assert!(
        succeeded > at_restart,
        "service resumed once Redis was back"
    );
}

/// The tests on the shared Redis at `REDIS_URL`.
pub fn shared_trials() -> Vec<Trial> {
    trials![
        "redis_store";
        Flavor::MultiThread(4) => two_replicas_on_one_redis_run_a_key_once,
        Flavor::CurrentThread => a_one_mebibyte_body_of_every_byte_value_replays_byte_for_byte,
    ]
}

/// The tests that start (and kill) a `redis-server` of their own.
pub fn private_trials() -> Vec<Trial> {
    trials![
        "redis_store";
        Flavor::CurrentThread => an_unreachable_redis_answers_503_within_the_timeout,
        Flavor::CurrentThread => round_trips_are_counted_by_the_server,
        Flavor::CurrentThread => service_resumes_without_a_restart_when_redis_is_back,
        Flavor::CurrentThread => replicated_claims_on_a_primary_with_a_replica,
        Flavor::MultiThread(2) => redis_killed_mid_load_answers_503_then_recovers_without_double_execution,
    ]
}
