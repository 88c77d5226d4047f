//! `RedisStore` on a Redis Cluster of six local `redis-server` processes: the
//! conformance suite, two app instances sharing the cluster with keys on
//! every primary, and primaries killed mid-load with and without replicated
//! claims.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::post;
use http::StatusCode;
use libtest_mimic::Trial;
use tower::ServiceExt;
use tower_idempotency::store::{KeyDigest, RedisStore};
use tower_idempotency::{IdempotencyKey, IdempotencyLayer, Scope};

use crate::cluster::Cluster;
use crate::harness::{Flavor, trials};

/// Held by each test that starts a cluster of its own: six `redis-server`
/// processes each, killed and resharded, are enough load for two cores, and
/// run together they pushed store calls past their timeouts.
static ONE_PRIVATE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The seed URLs of the cluster the tests share, set by `main` once it runs.
static SHARED: OnceLock<Vec<String>> = OnceLock::new();

/// Records the shared cluster's seeds for the tests.
pub fn share(cluster: &Cluster) {
    let _ = SHARED.set(cluster.urls());
}

pub fn shared_urls() -> Vec<String> {
    SHARED.get().expect("the shared cluster runs").clone()
}

/// A prefix no other test or run uses.
fn unique_prefix(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("ti-cluster:{name}:{}:{nanos}:", std::process::id())
}

/// A store on the shared cluster, with a prefix of its own.
pub async fn store(name: &str) -> RedisStore {
    RedisStore::connect_cluster(shared_urls())
        .await
        .unwrap()
        .prefix(unique_prefix(name))
}

/// The slot Redis Cluster gives a key without a hash tag: CRC16 (XMODEM) of
/// the key, modulo 16384.
fn slot(key: &str) -> u16 {
    let mut crc: u16 = 0;
    for byte in key.bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// The Redis key the store writes for `key` (global scope) under `prefix`.
fn redis_key(prefix: &str, key: &str) -> String {
    let digest = KeyDigest::new(
        &Scope::global(),
        &IdempotencyKey::parse(key.as_bytes()).unwrap(),
    );
    format!("{prefix}{digest:x}")
}

/// 50 concurrent identical requests across two instances run once, for a key
/// on each of the three primaries (checked with `CLUSTER KEYSLOT`).
async fn two_instances_run_a_key_once_on_every_primary() {
    let urls = shared_urls();
    let probe = Cluster::attach(&urls);
    let primaries = probe.primaries().await;
    assert_eq!(primaries.len(), 3, "{primaries:?}");
    let mut covered = Vec::new();
    for port in primaries.keys() {
        // A prefix that puts the test's key on this primary.
        let (prefix, key) = (0..)
            .map(|i| {
                let prefix = format!("{}{i}:", unique_prefix("replicas"));
                let key = redis_key(&prefix, "order-7");
                (prefix, key)
            })
            .find(|(_, key)| {
                let slot = slot(key);
                primaries[port]
                    .iter()
                    .any(|(a, b)| (*a..=*b).contains(&slot))
            })
            .unwrap();
        assert_eq!(
            probe.slot(&key).await,
            slot(&key),
            "CRC16 agrees with the cluster"
        );
        assert_eq!(probe.primary_of_slot(slot(&key)).await, *port);
        let store = || async {
            RedisStore::connect_cluster(urls.clone())
                .await
                .unwrap()
                .prefix(prefix.clone())
        };
        crate::common::replicas::two_replicas_run_a_key_once(store().await, store().await).await;
        covered.push(*port);
    }
    covered.sort_unstable();
    covered.dedup();
    assert_eq!(covered.len(), 3);
}

/// How many times the handler ran for each key.
#[derive(Clone, Default)]
struct Executions(Arc<Mutex<HashMap<String, usize>>>);

impl Executions {
    fn app(&self, store: RedisStore, store_timeout: Duration) -> Router {
        let executions = self.clone();
        Router::new()
            .route(
                "/orders",
                post(move |request: Request| {
                    let executions = executions.clone();
                    async move {
                        let key = request
                            .extensions()
                            .get::<IdempotencyKey>()
                            .map(ToString::to_string)
                            .unwrap_or_default();
                        *executions.0.lock().unwrap().entry(key).or_default() += 1;
                        StatusCode::CREATED
                    }
                }),
            )
            .layer(
                IdempotencyLayer::new(store)
                    .lease(Duration::from_secs(10))
                    .store_timeout(store_timeout),
            )
    }

    fn ran_twice(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .values()
            .filter(|runs| **runs > 1)
            .count()
    }

    fn keys(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

async fn post_key(app: &Router, key: &str) -> StatusCode {
    let request = http::Request::post("/orders")
        .header("idempotency-key", key)
        .body(Body::from("{}"))
        .unwrap();
    match app.clone().oneshot(request).await {
        Ok(response) => {
            let status = response.status();
            let _ = http_body_util::BodyExt::collect(response.into_body()).await;
            status
        }
        Err(never) => match never {},
    }
}

/// What one failover run measured (read through `Debug`).
#[derive(Debug)]
#[allow(dead_code)]
pub struct FailoverFigures {
    pub kills: usize,
    pub keys: usize,
    pub ran_twice: usize,
    pub unavailable: usize,
    pub slowest_503: Duration,
}

/// Kills a primary `kills` times in a row while requests with fresh keys
/// (all on that primary's slots) stream in. Before each kill the primary's
/// replica is frozen (SIGSTOP) and its replication link cut, so it falls
/// behind for 400 ms as a loaded replica would; it is thawed once its
/// primary is dead (SIGKILL), the cluster promotes it, and the dead node is
/// restarted as a replica. Then every key is retried
/// until it succeeds, through another instance, and the handler's runs per
/// key are counted.
pub async fn failover_mid_load(replicas_acked: u32, kills: usize) -> FailoverFigures {
    let _one_at_a_time = ONE_PRIVATE_CLUSTER.lock().await;
    let mut cluster = Cluster::start(if replicas_acked > 0 { "acked" } else { "plain" }).await;
    let prefix = unique_prefix("failover");
    let store_timeout = Duration::from_millis(1500);
    let connect = || async {
        let store = RedisStore::connect_cluster(cluster.urls())
            .await
            .unwrap()
            .prefix(prefix.clone())
            .timeout(store_timeout);
        if replicas_acked > 0 {
            store.replicas_acked(replicas_acked, Duration::from_millis(300))
        } else {
            store
        }
    };
    let executions = Executions::default();
    let app_a = executions.app(connect().await, store_timeout);
    let app_b = executions.app(connect().await, store_timeout);
    let mut sent: Vec<String> = Vec::new();
    let mut unavailable = 0;
    let mut slowest_503 = Duration::ZERO;
    for round in 0..kills {
        let primaries = cluster.primaries().await;
        let (&primary, ranges) = primaries.iter().next().expect("a primary");
        let replica = cluster.replica_of(primary).await;
        let on_primary = |key: &str| {
            let slot = slot(&redis_key(&prefix, key));
            ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot))
        };
        // Load: fresh keys on the doomed primary, until told to stop.
        let stop = Arc::new(AtomicBool::new(false));
        let load = {
            let (app, stop) = (app_a.clone(), stop.clone());
            let keys: Vec<String> = (0..)
                .map(|i| format!("round-{round}-key-{i}"))
                .filter(|key| on_primary(key))
                .take(100_000)
                .collect();
            tokio::spawn(async move {
                let mut results = Vec::new();
                for key in keys {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let started = std::time::Instant::now();
                    let status = post_key(&app, &key).await;
                    results.push((key, status, started.elapsed()));
                }
                results
            })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        cluster.freeze(replica);
        // Frozen, the replica would still find in its socket buffer all that
        // the primary sent it: cut the link too, so what follows is the
        // primary's alone, as under load a lagging replica's backlog is.
        cluster.cut_replication(primary).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        cluster.kill(primary);
        cluster.thaw(replica);
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::SeqCst);
        let results = load.await.unwrap();
        // Restarted before its replica took over, the dead primary (no
        // persistence) would come back empty and keep its slots.
        cluster.wait_promoted(replica, ranges[0].0).await;
        for (_, status, took) in &results {
            if *status == StatusCode::SERVICE_UNAVAILABLE {
                unavailable += 1;
                slowest_503 = slowest_503.max(*took);
            }
        }
        sent.extend(results.into_iter().map(|(key, _, _)| key));
        cluster.restart(primary);
        cluster.wait_healthy().await;
    }
    // Every key, retried through the other instance until it succeeds.
    for key in &sent {
        let mut status = StatusCode::SERVICE_UNAVAILABLE;
        for _ in 0..40 {
            status = post_key(&app_b, key).await;
            if status.is_success() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(status.is_success(), "{key} never succeeded: {status}");
    }
    assert_eq!(executions.keys(), sent.len(), "every key ran at least once");
    // A 503 comes within the store timeout of its one failed store call,
    // plus scheduling slack.
    assert!(
        slowest_503 < store_timeout + Duration::from_millis(500),
        "a 503 took {slowest_503:?}"
    );
    FailoverFigures {
        kills,
        keys: sent.len(),
        ran_twice: executions.ran_twice(),
        unavailable,
        slowest_503,
    }
}

/// Without replicated claims, a killed primary whose replica lagged loses
/// claims and records: reported, not asserted (it is what the option is for).
async fn failover_without_replicated_claims_is_measured() {
    let figures = failover_mid_load(0, 5).await;
    eprintln!("redis cluster failover, replicated claims off: {figures:?}");
}

/// With replicated claims (one replica), no key runs twice across five
/// failovers.
async fn failover_with_replicated_claims_runs_no_key_twice() {
    let figures = failover_mid_load(1, 5).await;
    eprintln!("redis cluster failover, replicas_acked(1): {figures:?}");
    assert!(figures.keys > 0, "{figures:?}");
    assert_eq!(figures.ran_twice, 0, "{figures:?}");
}

/// Slots move between primaries while two instances serve a mixed load of
/// fresh keys and retries: every request is answered, nothing but 503 among
/// the errors, and the handler ran exactly once for every key that got an
/// answer of its own.
async fn resharding_mid_load_runs_each_key_once() {
    let _one_at_a_time = ONE_PRIVATE_CLUSTER.lock().await;
    let cluster = Cluster::start("reshard").await;
    let prefix = unique_prefix("reshard");
    let store_timeout = Duration::from_millis(1500);
    let connect = || async {
        RedisStore::connect_cluster(cluster.urls())
            .await
            .unwrap()
            .prefix(prefix.clone())
            .timeout(store_timeout)
    };
    let executions = Executions::default();
    let apps = [
        executions.app(connect().await, store_timeout),
        executions.app(connect().await, store_timeout),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (apps, stop) = (apps.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers: Vec<(String, StatusCode)> = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    // A fresh key, then a retry of the one before it, through
                    // the other instance.
                    let key = format!("w{worker}-k{i}");
                    answers.push((key.clone(), post_key(&apps[i % 2], &key).await));
                    if i > 0 {
                        let earlier = format!("w{worker}-k{}", i - 1);
                        answers.push((
                            earlier.clone(),
                            post_key(&apps[(i + 1) % 2], &earlier).await,
                        ));
                    }
                    i += 1;
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let primaries: Vec<u16> = cluster.primaries().await.keys().copied().collect();
    cluster.reshard(primaries[0], primaries[1], 1500).await;
    cluster.reshard(primaries[1], primaries[2], 1500).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let mut answered = std::collections::HashSet::new();
    let (mut total, mut unavailable) = (0, 0);
    for worker in workers {
        for (key, status) in worker.await.unwrap() {
            total += 1;
            match status {
                StatusCode::CREATED => {
                    answered.insert(key);
                }
                StatusCode::SERVICE_UNAVAILABLE => unavailable += 1,
                // 409 in progress: a retry that overtook its own first try.
                StatusCode::CONFLICT => {}
                other => panic!("{key}: unexpected {other}"),
            }
        }
    }
    let runs = executions.0.lock().unwrap().clone();
    eprintln!(
        "redis cluster resharding (3000 slots moved): {total} requests, {} keys answered, \
         {unavailable} answers of 503, {} keys ran",
        answered.len(),
        runs.len()
    );
    assert!(answered.len() > 100, "the load ran: {}", answered.len());
    for key in &answered {
        assert_eq!(
            runs.get(key),
            Some(&1),
            "{key} ran {:?} times",
            runs.get(key)
        );
    }
    assert!(runs.values().all(|runs| *runs == 1), "a key ran twice");
    assert!(
        runs.keys().all(|key| answered.contains(key)),
        "every key that ran was answered (a 503 never hides a run)"
    );
}

/// Commands each primary ran since `CONFIG RESETSTAT`, summed over the
/// cluster, by name.
async fn commands(cluster: &Cluster) -> HashMap<String, u64> {
    let mut total = HashMap::new();
    for port in cluster.primaries().await.keys() {
        let mut connection = crate::cluster::connect(*port).await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut connection)
            .await
            .unwrap();
        for line in info.lines() {
            let Some((name, stats)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let calls: u64 = stats
                .strip_prefix("calls=")
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            *total.entry(name.to_owned()).or_default() += calls;
        }
    }
    total
}

async fn reset_commands(cluster: &Cluster) {
    for port in cluster.primaries().await.keys() {
        let mut connection = crate::cluster::connect(*port).await.unwrap();
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut connection)
            .await
            .unwrap();
    }
}

/// On the cluster as on one Redis: a fresh request is two script calls
/// (claim, record), a replay one; with replicated claims each script call
/// carries one `WAIT`, in the same pipeline (so the same round trips).
async fn round_trips_on_the_cluster() {
    let _one_at_a_time = ONE_PRIVATE_CLUSTER.lock().await;
    let cluster = Cluster::start("round-trips").await;
    for (replicas, waits) in [(0, 0), (1, 1)] {
        let store = RedisStore::connect_cluster(cluster.urls())
            .await
            .unwrap()
            .prefix(unique_prefix("round-trips"));
        let store = if replicas > 0 {
            store.replicas_acked(replicas, Duration::from_millis(500))
        } else {
            store
        };
        let executions = Executions::default();
        let app = executions.app(store, Duration::from_secs(2));
        // Load the scripts once, outside the count. On a cluster just made,
        // the first replicated write can find a replica not yet acknowledging
        // (seen once in the full suite): the warm-up may take a few tries.
        let mut warm = post_key(&app, "warm-up").await;
        for _ in 0..40 {
            if warm == StatusCode::CREATED {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            warm = post_key(&app, "warm-up").await;
        }
        assert_eq!(warm, StatusCode::CREATED);
        reset_commands(&cluster).await;
        assert_eq!(post_key(&app, "fresh").await, StatusCode::CREATED);
        let fresh = commands(&cluster).await;
        assert_eq!(
            fresh.get("evalsha"),
            Some(&2),
            "fresh, replicas {replicas}: {fresh:?}"
        );
        assert_eq!(
            fresh.get("wait").copied().unwrap_or(0),
            2 * waits,
            "{fresh:?}"
        );
        reset_commands(&cluster).await;
        assert_eq!(post_key(&app, "fresh").await, StatusCode::CREATED);
        let replay = commands(&cluster).await;
        assert_eq!(
            replay.get("evalsha"),
            Some(&1),
            "replay, replicas {replicas}: {replay:?}"
        );
        assert_eq!(
            replay.get("wait").copied().unwrap_or(0),
            waits,
            "{replay:?}"
        );
        eprintln!(
            "redis cluster commands, replicas_acked({replicas}): fresh {fresh:?}, replay {replay:?}"
        );
    }
}

/// The tests on the shared cluster.
pub fn shared_trials() -> Vec<Trial> {
    trials![
        "redis_cluster";
        Flavor::MultiThread(4) => two_instances_run_a_key_once_on_every_primary,
    ]
}

/// The tests that start (and kill) a cluster of their own.
pub fn private_trials() -> Vec<Trial> {
    trials![
        "redis_cluster";
        Flavor::MultiThread(2) => failover_without_replicated_claims_is_measured,
        Flavor::MultiThread(2) => failover_with_replicated_claims_runs_no_key_twice,
        Flavor::MultiThread(2) => resharding_mid_load_runs_each_key_once,
        Flavor::CurrentThread => round_trips_on_the_cluster,
    ]
}
