//! `PostgresStore` against a real PostgreSQL (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`): the conformance suite, two
//! replicas on one database, durability, purging, migrations and recovery.
//!
//! Each test uses a table of its own, dropped at its end. Without a database
//! the harness marks these tests ignored, unless
//! `TOWER_IDEMPOTENCY_REQUIRE_SERVICES=1` (as in CI): then they fail.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{Runs, post_json, send};
use http::StatusCode;
use libtest_mimic::Trial;
use tokio_postgres::NoTls;

use crate::harness::{Flavor, trials};
use tower_idempotency::store::{
    ClaimLoan, ClaimOutcome, FencingToken, KeyDigest, KeyState, PostgresStore, Record, Store,
    StoreError,
};
use tower_idempotency::{Fingerprint, IdempotencyLayer};

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A table name no other test or run uses (at most 63 characters).
pub fn unique_table(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "ti_{name}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// A migrated store on a table of its own that is dropped with it.
pub async fn store(name: &str) -> TestStore {
    let table = unique_table(name);
    let store = match PostgresStore::connect(&database_url()).await {
        Ok(store) => store.table(&table).unwrap(),
        Err(error) => panic!("PostgreSQL required at {}: {error}", database_url()),
    };
    // The migration is DDL, which can wait on the catalog while the other
    // tests create and drop their tables (once past the store's 2 s in CI):
    // it gets more time than the store's calls under test.
    store
        .clone()
        .timeout(Duration::from_secs(30))
        .migrate()
        .await
        .unwrap();
    TestStore { store, table }
}

/// A store whose table is dropped when the store is.
#[derive(Debug)]
pub struct TestStore {
    pub store: PostgresStore,
    pub table: String,
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let table = self.table.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(sql(&format!("DROP TABLE IF EXISTS {table}")));
        });
        let _ = dropped.join();
    }
}

/// Runs `statements` on a connection of its own.
pub async fn sql(statements: &str) {
    let (client, connection) = tokio_postgres::connect(&database_url(), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.batch_execute(statements).await.unwrap();
}

pub async fn count(query: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(&database_url(), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.query_one(query, &[]).await.unwrap().get(0)
}

impl Store for TestStore {
    async fn claim(
        &self,
        key: &KeyDigest,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        self.store.claim(key, fingerprint, lease).await
    }

    async fn record(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        record: &Record,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.store.record(key, token, record, ttl).await
    }

    async fn release(&self, key: &KeyDigest, token: FencingToken) -> Result<(), StoreError> {
        self.store.release(key, token).await
    }

    async fn renew(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        lease: Duration,
    ) -> Result<(), StoreError> {
        self.store.renew(key, token, lease).await
    }

    fn lend_claim(&self, loan: ClaimLoan<'_>, extensions: &mut http::Extensions) {
        self.store.lend_claim(loan, extensions);
    }

    async fn inspect(&self, key: &KeyDigest) -> Result<KeyState, StoreError> {
        self.store.inspect(key).await
    }

    async fn forget(&self, key: &KeyDigest) -> Result<bool, StoreError> {
        self.store.forget(key).await
    }
}

const FP: Fingerprint = Fingerprint::from_bytes([3; 32]);

async fn two_replicas_on_one_database_run_a_key_once() {
    let shared = store("replicas").await;
    // Each replica has its own pool, on the same table.
    let other = PostgresStore::connect(&database_url())
        .await
        .unwrap()
        .table(&shared.table)
        .unwrap();
    crate::common::replicas::two_replicas_run_a_key_once(shared.store.clone(), other).await;
}

async fn a_thirty_day_record_survives_a_new_pool() {
    let first = store("durable").await;
    let thirty_days = Duration::from_secs(30 * 24 * 3600);
    let runs = Runs::default();
    let app = |store: PostgresStore| {
        let runs = runs.clone();
        axum::Router::new()
            .route(
                "/orders",
                axum::routing::post(move || {
                    let runs = runs.clone();
                    async move { (StatusCode::CREATED, format!("order {}", runs.add())) }
                }),
            )
            .layer(IdempotencyLayer::new(store).ttl(thirty_days))
    };
    let original = send(&app(first.store.clone()), post_json("k1", "a")).await;
    // A fresh store: a new pool, as after a restart of the process.
    let restarted = PostgresStore::connect(&database_url())
        .await
        .unwrap()
        .table(&first.table)
        .unwrap();
    let replay = send(&app(restarted), post_json("k1", "a")).await;
    assert!(replay.is_replay());
    assert_eq!(replay.body, original.body);
    assert_eq!(runs.count(), 1);
    let days_left = count(&format!(
        "SELECT extract(day FROM expires_at - now())::bigint FROM {}",
        first.table
    ))
    .await;
    assert!((29..=30).contains(&days_left), "{days_left}");
}

async fn purge_removes_only_expired_rows_in_bounded_batches() {
    let test = store("purge").await;
    let store = test.store.clone().purge_batch(10);
    // 25 claims whose one-millisecond lease runs out, and 5 live records.
    for i in 0..25 {
        let key = crate::common::unique_key(&format!("expired-{i}"));
        store
            .claim(&key, &FP, Duration::from_millis(1))
            .await
            .unwrap();
    }
    for i in 0..5 {
        let key = crate::common::unique_key(&format!("live-{i}"));
        let ClaimOutcome::Claimed(token) = store
            .claim(&key, &FP, Duration::from_secs(30))
            .await
            .unwrap()
        else {
            panic!("not claimed");
        };
        let record = Record {
            fingerprint: FP,
            response: Some(crate::common::sample_response()),
        };
        store
            .record(&key, token, &record, Duration::from_secs(3600))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut batches = Vec::new();
    loop {
        let purged = store.purge_expired().await.unwrap();
        batches.push(purged);
        if purged == 0 {
            break;
        }
    }
    assert_eq!(batches, [10, 10, 5, 0], "bounded per call");
    let left = count(&format!("SELECT count(*) FROM {}", test.table)).await;
    assert_eq!(left, 5, "the live records remain");
}

async fn a_sweeper_purges_in_the_background_until_dropped() {
    let test = store("sweeper").await;
    let store = test.store.clone();
    for i in 0..5 {
        let key = crate::common::unique_key(&format!("sweep-{i}"));
        store
            .claim(&key, &FP, Duration::from_millis(1))
            .await
            .unwrap();
    }
    let sweeper = store.spawn_sweeper(Duration::from_millis(50));
    let table = test.table.clone();
    let mut left = 5;
    for _ in 0..100 {
        left = count(&format!("SELECT count(*) FROM {table}")).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0);
    drop(sweeper);
    let key = crate::common::unique_key("after-sweeper");
    store
        .claim(&key, &FP, Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count(&format!("SELECT count(*) FROM {table}")).await,
        1,
        "the sweeper stopped"
    );
}

async fn replicas_migrating_together_all_succeed() {
    let test = store("migrate").await;
    // A fresh table that none has created yet.
    let table = unique_table("migrate_race");
    let race = TestStore {
        store: test.store.clone().table(&table).unwrap(),
        table,
    };
    let store = race.store.clone();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.migrate().await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    store
        .claim(&crate::common::unique_key("m"), &FP, Duration::from_secs(1))
        .await
        .unwrap();
}

async fn the_pool_recovers_after_its_connections_are_killed() {
    let test = store("recover").await;
    let application = format!("ti-recover-{}", std::process::id());
    let url = format!("{}?application_name={application}", database_url());
    let store = PostgresStore::connect(&url)
        .await
        .unwrap()
        .table(&test.table)
        .unwrap();
    let runs = Runs::default();
    let app = crate::common::replicas::app(store, &runs, Duration::ZERO);
    assert_eq!(
        send(&app, post_json("before", "a")).await.status,
        StatusCode::CREATED
    );
    sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{application}'"
    ))
    .await;
    // A request may meet a dead connection once; the pool replaces it.
    let mut recovered = false;
    for _ in 0..20 {
        let answer = send(&app, post_json("after", "a")).await;
        if answer.status == StatusCode::CREATED {
            recovered = true;
            break;
        }
        answer.assert_problem(503, "idempotency_store_unavailable");
    }
    assert!(recovered, "the pool never recovered");
    assert!(send(&app, post_json("after", "a")).await.is_replay());
}

async fn an_unreachable_database_answers_503_within_the_timeout() {
    // Port 1 is closed: a pool that cannot connect.
    let config: tokio_postgres::Config = "postgres://postgres@127.0.0.1:1/test".parse().unwrap();
    let manager = deadpool_postgres::Manager::new(config, NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .unwrap();
    let runs = Runs::default();
    let app = crate::common::replicas::app(PostgresStore::new(pool), &runs, Duration::ZERO);
    let started = std::time::Instant::now();
    send(&app, post_json("k1", "a"))
        .await
        .assert_problem(503, "idempotency_store_unavailable");
    assert!(started.elapsed() < Duration::from_secs(3), "no hang");
    assert_eq!(runs.count(), 0);
}

/// Fault injection: the pool's connections are killed (`pg_terminate_backend`)
/// again and again in the middle of a load of concurrent requests. Requests
/// answer 503 or succeed, never hang past the timeout; the pool recovers; and
/// every execution of the handler is a key that got exactly one 2xx.
async fn connections_killed_mid_load_answer_503_then_recover_without_double_execution() {
    let test = store("fault").await;
    let application = format!("ti-fault-{}", std::process::id());
    let url = format!("{}?application_name={application}", database_url());
    let timeout = Duration::from_millis(500);
    let store = PostgresStore::connect(&url)
        .await
        .unwrap()
        .table(&test.table)
        .unwrap()
        .timeout(timeout);
    let layer = IdempotencyLayer::new(store).store_timeout(timeout);
    let (app, executed) = crate::common::load::counting_app(layer);
    let load = crate::common::load::Load::start(&app, 8);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{application}'"
        ))
        .await;
    }
    let after_kills = load.succeeded();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (succeeded, unavailable, slowest) = load.finish(&executed).await;
    eprintln!(
        "postgres fault injection: {succeeded} keys got a 2xx and ran once each, {unavailable} answers of 503, slowest answer {slowest:?}"
    );
    assert!(slowest < timeout * 3, "no answer hung past the timeouts");
    assert!(
        succeeded > after_kills,
        "service resumed after the last kill"
    );
}

/// The tests on the PostgreSQL at `DATABASE_URL`.
/// Joining on, two replicas on one table: PostgreSQL carries no live copy,
/// so a retry on the other replica waits for the record and replays the
/// whole body once the original ends (never a 409, never a part).
async fn a_retry_on_another_replica_waits_for_the_record_and_replays_it_whole() {
    use crate::common::fed::{generation, next, rest, streaming};
    use bytes::Bytes;
    use tower::ServiceExt;
    let shared = store("join_fallback").await;
    let other = PostgresStore::connect(&database_url())
        .await
        .unwrap()
        .table(&shared.table)
        .unwrap();
    let bound = Duration::from_secs(20);
    let (one, mut fed) =
        streaming(IdempotencyLayer::new(shared.store.clone()).join_in_flight(bound));
    let (two, _) = streaming(IdempotencyLayer::new(other).join_in_flight(bound));
    let mut original = one
        .clone()
        .oneshot(generation("k1"))
        .await
        .unwrap()
        .into_body();
    let feeder = fed.recv().await.unwrap();
    feeder.send(Ok(Bytes::from_static(b"data: 0\n\n"))).unwrap();
    next(&mut original).await.unwrap().unwrap();
    let retry = tokio::spawn(two.clone().oneshot(generation("k1")));
    for i in 1..5 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        feeder
            .send(Ok(Bytes::from(format!("data: {i}\n\n"))))
            .unwrap();
        next(&mut original).await.unwrap().unwrap();
    }
    assert!(
        !retry.is_finished(),
        "the retry waits while the original streams"
    );
    drop(feeder);
    assert!(next(&mut original).await.is_none());
    let replayed = retry.await.unwrap().unwrap();
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    let body = rest(replayed.into_body()).await.unwrap();
    assert_eq!(
        body,
        "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"
    );
}

pub fn trials() -> Vec<Trial> {
    trials![
        "postgres_store";
        Flavor::MultiThread(2) => a_retry_on_another_replica_waits_for_the_record_and_replays_it_whole,
        Flavor::MultiThread(4) => two_replicas_on_one_database_run_a_key_once,
        Flavor::CurrentThread => a_thirty_day_record_survives_a_new_pool,
        Flavor::CurrentThread => purge_removes_only_expired_rows_in_bounded_batches,
        Flavor::CurrentThread => a_sweeper_purges_in_the_background_until_dropped,
        Flavor::MultiThread(4) => replicas_migrating_together_all_succeed,
        Flavor::CurrentThread => the_pool_recovers_after_its_connections_are_killed,
        Flavor::CurrentThread => an_unreachable_database_answers_503_within_the_timeout,
        Flavor::MultiThread(2) => connections_killed_mid_load_answer_503_then_recover_without_double_execution,
    ]
}
