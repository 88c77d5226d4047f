//! Fenced completion against a real PostgreSQL: a handler that inserts a
//! payment and completes its idempotency record in the same transaction,
//! with `sqlx` and with `tokio-postgres`, under READ COMMITTED and
//! SERIALIZABLE.
//!
//! A stale owner is a replica whose lease lapsed while its transaction was
//! open: its store holds its renewals back (as a frozen process's are never
//! sent), and its handler waits at a gate that the test opens once the
//! database says the lease has lapsed. No test waits on a timer for an
//! order of events: each waits for the event itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use http::StatusCode;
use libtest_mimic::Trial;
use tokio::sync::{Notify, Semaphore};
use tokio_postgres::NoTls;

use crate::common::{Answer, request, send};
use crate::harness::{Flavor, trial};
use crate::postgres_store::{TestStore, count, database_url, sql, store, unique_table};
use tower_idempotency::store::{
    ClaimLoan, ClaimOutcome, CompletionError, FencingToken, KeyDigest, PostgresClaim,
    PostgresStore, Record, Store, StoreError,
};
use tower_idempotency::{Fingerprint, IdempotencyLayer};

/// The PostgreSQL client the handler writes with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Client {
    #[cfg(feature = "sqlx")]
    Sqlx,
    TokioPostgres,
}

/// The isolation level of the handler's transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Isolation {
    ReadCommitted,
    Serializable,
}

/// Every client with every isolation level.
fn variants() -> Vec<(&'static str, Client, Isolation)> {
    vec![
        #[cfg(feature = "sqlx")]
        (
            "sqlx_read_committed",
            Client::Sqlx,
            Isolation::ReadCommitted,
        ),
        #[cfg(feature = "sqlx")]
        ("sqlx_serializable", Client::Sqlx, Isolation::Serializable),
        (
            "tokio_postgres_read_committed",
            Client::TokioPostgres,
            Isolation::ReadCommitted,
        ),
        (
            "tokio_postgres_serializable",
            Client::TokioPostgres,
            Isolation::Serializable,
        ),
    ]
}

/// A point in the handler that, once armed, stops the next payment there:
/// it tells the test it has arrived, then waits to be let through.
struct Gate {
    armed: AtomicBool,
    arrived: Notify,
    through: Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            armed: AtomicBool::new(false),
            arrived: Notify::new(),
            through: Semaphore::new(0),
        }
    }
}

impl Gate {
    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    async fn pass(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.arrived.notify_one();
            self.through.acquire().await.unwrap().forget();
        }
    }

    async fn arrived(&self) {
        tokio::time::timeout(Duration::from_secs(20), self.arrived.notified())
            .await
            .expect("the handler reached its gate");
    }

    fn open(&self) {
        self.through.add_permits(1);
    }
}

/// The payments API of one replica: its client, its isolation level, and
/// the gates the tests stop it at.
struct Bank {
    client: Client,
    isolation: Isolation,
    insert: String,
    pool: Pool,
    #[cfg(feature = "sqlx")]
    sqlx: sqlx::PgPool,
    after_insert: Gate,
    after_commit: Gate,
    /// Roll the next transaction back after completing the record.
    roll_back_after_completing: AtomicBool,
    /// Transactions begun.
    attempts: AtomicUsize,
}

/// Why a payment did not commit.
#[derive(Debug)]
enum Failure {
    Fenced,
    Retry,
    Other(String),
}

impl From<CompletionError> for Failure {
    fn from(error: CompletionError) -> Self {
        if error.is_fenced() {
            Failure::Fenced
        } else if error.is_retryable() {
            Failure::Retry
        } else {
            Failure::Other(error.to_string())
        }
    }
}

fn by_sqlstate(code: Option<&str>, error: String) -> Failure {
    match code {
        Some("40001" | "40P01") => Failure::Retry,
        _ => Failure::Other(error),
    }
}

fn pg_failure(error: tokio_postgres::Error) -> Failure {
    by_sqlstate(error.code().map(|code| code.code()), error.to_string())
}

#[cfg(feature = "sqlx")]
fn sqlx_failure(error: sqlx::Error) -> Failure {
    let code = match &error {
        sqlx::Error::Database(database) => database.code().map(|code| code.into_owned()),
        _ => None,
    };
    by_sqlstate(code.as_deref(), error.to_string())
}

/// The receipt the handler completes with and answers.
fn receipt(id: i64, payment: &str) -> http::Response<Bytes> {
    let body = format!(r#"{{"id":{id},"payment":{payment}}}"#);
    http::Response::builder()
        .status(StatusCode::CREATED)
        .header("content-type", "application/json")
        .body(Bytes::from(body))
        .unwrap()
}

impl Bank {
    /// One transaction: insert the payment, complete the record, commit.
    async fn pay(
        &self,
        claim: &PostgresClaim,
        payment: &str,
    ) -> Result<http::Response<Bytes>, Failure> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        match self.client {
            #[cfg(feature = "sqlx")]
            Client::Sqlx => self.pay_with_sqlx(claim, payment).await,
            Client::TokioPostgres => self.pay_with_tokio_postgres(claim, payment).await,
        }
    }

    #[cfg(feature = "sqlx")]
    async fn pay_with_sqlx(
        &self,
        claim: &PostgresClaim,
        payment: &str,
    ) -> Result<http::Response<Bytes>, Failure> {
        let mut transaction = self.sqlx.begin().await.map_err(sqlx_failure)?;
        if self.isolation == Isolation::Serializable {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                .execute(&mut *transaction)
                .await
                .map_err(sqlx_failure)?;
        }
        let id: i64 = sqlx::query_scalar(&self.insert)
            .bind(payment)
            .fetch_one(&mut *transaction)
            .await
            .map_err(sqlx_failure)?;
        self.after_insert.pass().await;
        let response = receipt(id, payment);
        claim.complete_sqlx(&mut transaction, &response).await?;
        if self
            .roll_back_after_completing
            .swap(false, Ordering::SeqCst)
        {
            transaction.rollback().await.map_err(sqlx_failure)?;
            return Err(Failure::Other("rolled back after completing".into()));
        }
        transaction.commit().await.map_err(sqlx_failure)?;
        self.after_commit.pass().await;
        Ok(response)
    }

    async fn pay_with_tokio_postgres(
        &self,
        claim: &PostgresClaim,
        payment: &str,
    ) -> Result<http::Response<Bytes>, Failure> {
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|error| Failure::Other(error.to_string()))?;
        let transaction = client.transaction().await.map_err(pg_failure)?;
        if self.isolation == Isolation::Serializable {
            transaction
                .batch_execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                .await
                .map_err(pg_failure)?;
        }
        let row = transaction
            .query_one(&self.insert, &[&payment])
            .await
            .map_err(pg_failure)?;
        let id: i64 = row.get(0);
        self.after_insert.pass().await;
        let response = receipt(id, payment);
        claim
            .complete_tokio_postgres(&*transaction, &response)
            .await?;
        if self
            .roll_back_after_completing
            .swap(false, Ordering::SeqCst)
        {
            transaction.rollback().await.map_err(pg_failure)?;
            return Err(Failure::Other("rolled back after completing".into()));
        }
        transaction.commit().await.map_err(pg_failure)?;
        self.after_commit.pass().await;
        Ok(response)
    }
}

/// `POST /payments`: the payment, its transaction run again on a
/// serialization failure; a 503 when the claim is no longer this request's.
async fn create_payment(
    State(bank): State<Arc<Bank>>,
    Extension(claim): Extension<PostgresClaim>,
    payment: String,
) -> Response {
    for _ in 0..5 {
        match bank.pay(&claim, &payment).await {
            Ok(response) => return response.map(Body::from),
            Err(Failure::Retry) => continue,
            Err(Failure::Fenced) => {
                return (StatusCode::SERVICE_UNAVAILABLE, [("x-failure", "fenced")])
                    .into_response();
            }
            Err(Failure::Other(why)) => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [("x-failure", "other")],
                    why,
                )
                    .into_response();
            }
        }
    }
    (StatusCode::SERVICE_UNAVAILABLE, [("x-failure", "retries")]).into_response()
}

/// What the layer asked of a replica's store.
#[derive(Default)]
struct Calls {
    records: AtomicUsize,
    releases: AtomicUsize,
    renewals: AtomicUsize,
    renewed: Notify,
}

/// A replica's store: a pool of its own on the shared table, that counts the
/// layer's calls and, for a frozen replica, holds its renewals back.
#[derive(Clone)]
struct Replica {
    store: PostgresStore,
    frozen: bool,
    calls: Arc<Calls>,
}

impl Store for Replica {
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
        self.calls.records.fetch_add(1, Ordering::SeqCst);
        self.store.record(key, token, record, ttl).await
    }

    async fn release(&self, key: &KeyDigest, token: FencingToken) -> Result<(), StoreError> {
        self.calls.releases.fetch_add(1, Ordering::SeqCst);
        self.store.release(key, token).await
    }

    async fn renew(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        lease: Duration,
    ) -> Result<(), StoreError> {
        if self.frozen {
            // A frozen process sends nothing, yet believes its lease holds.
            return Ok(());
        }
        self.store.renew(key, token, lease).await?;
        self.calls.renewals.fetch_add(1, Ordering::SeqCst);
        self.calls.renewed.notify_one();
        Ok(())
    }

    fn lend_claim(&self, loan: ClaimLoan<'_>, extensions: &mut http::Extensions) {
        self.store.lend_claim(loan, extensions);
    }
}

/// One test's tables: the idempotency records and the payments.
struct Fixture {
    records: TestStore,
    payments: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let table = self.payments.clone();
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(sql(&format!("DROP TABLE IF EXISTS {table}")));
        });
        let _ = dropped.join();
    }
}

async fn fixture(name: &str) -> Fixture {
    let records = store(name).await;
    let payments = unique_table(&format!("{name}_pay"));
    sql(&format!(
        "CREATE TABLE {payments} (id bigserial PRIMARY KEY, payment text NOT NULL)"
    ))
    .await;
    Fixture { records, payments }
}

impl Fixture {
    /// A replica's payments API.
    async fn bank(&self, client: Client, isolation: Isolation) -> Arc<Bank> {
        let config: tokio_postgres::Config = database_url().parse().unwrap();
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(8)
            .runtime(Runtime::Tokio1)
            .build()
            .unwrap();
        Arc::new(Bank {
            client,
            isolation,
            insert: format!(
                "INSERT INTO {} (payment) VALUES ($1) RETURNING id",
                self.payments
            ),
            pool,
            #[cfg(feature = "sqlx")]
            sqlx: sqlx::postgres::PgPoolOptions::new()
                .max_connections(8)
                .connect(&database_url())
                .await
                .unwrap(),
            after_insert: Gate::default(),
            after_commit: Gate::default(),
            roll_back_after_completing: AtomicBool::new(false),
            attempts: AtomicUsize::new(0),
        })
    }

    /// A replica's store: a pool of its own on the test's table.
    async fn replica(&self, frozen: bool) -> Replica {
        let store = PostgresStore::connect(&database_url())
            .await
            .unwrap()
            .table(&self.records.table)
            .unwrap();
        Replica {
            store,
            frozen,
            calls: Arc::default(),
        }
    }

    /// A replica's app: its store, its bank, a lease of `lease`.
    fn app(&self, replica: &Replica, bank: &Arc<Bank>, lease: Duration) -> Router {
        Router::new()
            .route("/payments", post(create_payment))
            .with_state(Arc::clone(bank))
            .layer(
                IdempotencyLayer::new(replica.clone())
                    .lease(lease)
                    .run_to_completion(false),
            )
    }

    /// The ids of the payments that committed.
    async fn payment_ids(&self) -> Vec<i64> {
        let (client, connection) = tokio_postgres::connect(&database_url(), NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .query(
                &format!("SELECT id FROM {} ORDER BY id", self.payments),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// Returns once the database says the in-flight claim's lease has lapsed
    /// (by its own clock, as the fence reads it).
    async fn lease_lapsed(&self) {
        let query = format!(
            "SELECT count(*) FROM {} WHERE NOT completed AND expires_at <= clock_timestamp()",
            self.records.table
        );
        for _ in 0..1000 {
            if count(&query).await == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the lease never lapsed");
    }
}

fn payment(key: &str, body: &str) -> axum::http::Request<Body> {
    request("POST", "/payments", Some(key), body.to_owned())
}

fn id_of(answer: &Answer) -> i64 {
    let receipt: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    receipt["id"].as_i64().unwrap()
}

fn failure(answer: &Answer) -> Option<&str> {
    answer
        .headers
        .get("x-failure")
        .map(|value| value.to_str().unwrap())
}

const LEASE: Duration = Duration::from_secs(1);
const PAYMENT: &str = r#"{"amount":100,"currency":"EUR"}"#;

/// Two replicas on one database, A frozen (its renewals held back), with
/// A's payment stalled in its open transaction until its lease has lapsed.
struct StaleOwner {
    fixture: Fixture,
    a: Router,
    b: Router,
    bank_a: Arc<Bank>,
    bank_b: Arc<Bank>,
    /// A's request, waiting at its gate after its insert.
    stale: tokio::task::JoinHandle<Answer>,
}

impl StaleOwner {
    async fn stalled(name: &str, client: Client, isolation: Isolation) -> Self {
        let fixture = fixture(name).await;
        let (replica_a, replica_b) = (fixture.replica(true).await, fixture.replica(false).await);
        let (bank_a, bank_b) = (
            fixture.bank(client, isolation).await,
            fixture.bank(client, isolation).await,
        );
        let a = fixture.app(&replica_a, &bank_a, LEASE);
        let b = fixture.app(&replica_b, &bank_b, LEASE);
        bank_a.after_insert.arm();
        let stale = tokio::spawn({
            let a = a.clone();
            async move { send(&a, payment("k1", PAYMENT)).await }
        });
        bank_a.after_insert.arrived().await;
        fixture.lease_lapsed().await;
        Self {
            fixture,
            a,
            b,
            bank_a,
            bank_b,
            stale,
        }
    }

    /// Lets A resume; returns its answer.
    async fn resume(&mut self) -> Answer {
        self.bank_a.after_insert.open();
        (&mut self.stale).await.unwrap()
    }

    /// One payment, the owner's; A refused; retries on both replay.
    async fn assert_owner_alone_paid(&self, stale: &Answer, owner: &Answer) {
        assert_eq!(
            self.fixture.payment_ids().await,
            vec![id_of(owner)],
            "one payment: the owner's"
        );
        assert_eq!(stale.status, 503, "{stale:?}");
        assert_eq!(failure(stale), Some("fenced"));
        for app in [&self.a, &self.b] {
            let retry = send(app, payment("k1", PAYMENT)).await;
            assert!(retry.is_replay(), "{retry:?}");
            assert_eq!(retry.body, owner.body);
        }
    }
}

/// A stalls in its open transaction past its lease; B takes the key over,
/// pays and completes; A resumes: its completion is refused and it rolls
/// back. One payment, B's, and every retry replays B's receipt.
async fn a_stale_owner_is_refused_after_the_new_owner_completed(
    client: Client,
    isolation: Isolation,
) {
    let mut test = StaleOwner::stalled("stale_done", client, isolation).await;
    let owner = send(&test.b, payment("k1", PAYMENT)).await;
    assert_eq!(owner.status, 201, "{owner:?}");
    assert!(!owner.is_replay());
    let stale = test.resume().await;
    test.assert_owner_alone_paid(&stale, &owner).await;
}

/// As above, but A resumes while B has taken the key over and is still in
/// its transaction (paid, not completed): A is refused all the same.
async fn a_stale_owner_is_refused_while_the_new_owner_is_in_its_transaction(
    client: Client,
    isolation: Isolation,
) {
    let mut test = StaleOwner::stalled("stale_open", client, isolation).await;
    test.bank_b.after_insert.arm();
    let owner = tokio::spawn({
        let b = test.b.clone();
        async move { send(&b, payment("k1", PAYMENT)).await }
    });
    test.bank_b.after_insert.arrived().await;
    let stale = test.resume().await;
    test.bank_b.after_insert.open();
    let owner = owner.await.unwrap();
    assert_eq!(owner.status, 201, "{owner:?}");
    test.assert_owner_alone_paid(&stale, &owner).await;
}

/// A lease that lapsed is lost even when nobody has taken the key yet: the
/// fence reads the database's clock at the statement, not the start of the
/// transaction (which began while the lease was live).
async fn a_lapsed_lease_is_refused_even_before_a_takeover(client: Client, isolation: Isolation) {
    let fixture = fixture("lapsed").await;
    let replica = fixture.replica(true).await;
    let bank = fixture.bank(client, isolation).await;
    let app = fixture.app(&replica, &bank, LEASE);

    bank.after_insert.arm();
    let stale = tokio::spawn({
        let app = app.clone();
        async move { send(&app, payment("k1", PAYMENT)).await }
    });
    bank.after_insert.arrived().await;
    fixture.lease_lapsed().await;
    bank.after_insert.open();
    let stale = stale.await.unwrap();
    assert_eq!(failure(&stale), Some("fenced"), "{stale:?}");
    assert!(fixture.payment_ids().await.is_empty());

    // The key's next request runs and pays, once.
    let paid = send(&app, payment("k1", PAYMENT)).await;
    assert_eq!(paid.status, 201, "{paid:?}");
    assert_eq!(fixture.payment_ids().await, vec![id_of(&paid)]);
}

/// A commits its payment and its record, then its response future is
/// dropped before it answers (the layer records nothing after the commit):
/// the retry, on B, replays; nothing is paid twice.
async fn a_crash_after_the_commit_replays(client: Client, isolation: Isolation) {
    let fixture = fixture("crash").await;
    let (replica_a, replica_b) = (fixture.replica(false).await, fixture.replica(false).await);
    let (bank_a, bank_b) = (
        fixture.bank(client, isolation).await,
        fixture.bank(client, isolation).await,
    );
    let a = fixture.app(&replica_a, &bank_a, Duration::from_secs(30));
    let b = fixture.app(&replica_b, &bank_b, Duration::from_secs(30));

    bank_a.after_commit.arm();
    let crashing = tokio::spawn({
        let a = a.clone();
        async move { send(&a, payment("k1", PAYMENT)).await }
    });
    bank_a.after_commit.arrived().await;
    crashing.abort();
    assert!(crashing.await.unwrap_err().is_cancelled());
    let paid = fixture.payment_ids().await;
    assert_eq!(paid.len(), 1);

    let retry = send(&b, payment("k1", PAYMENT)).await;
    assert_eq!(retry.status, 201, "{retry:?}");
    assert!(retry.is_replay(), "{retry:?}");
    assert_eq!(id_of(&retry), paid[0]);
    assert_eq!(fixture.payment_ids().await, paid);
    assert_eq!(bank_b.attempts.load(Ordering::SeqCst), 0);
    assert_eq!(replica_a.calls.records.load(Ordering::SeqCst), 0);
}

/// 50 identical requests at once, across two replicas: one payment; the
/// others replay it or are told it is in progress.
async fn fifty_concurrent_requests_on_two_replicas_pay_once(client: Client, isolation: Isolation) {
    let fixture = fixture("fifty").await;
    let (replica_a, replica_b) = (fixture.replica(false).await, fixture.replica(false).await);
    let (bank_a, bank_b) = (
        fixture.bank(client, isolation).await,
        fixture.bank(client, isolation).await,
    );
    let apps = [
        fixture.app(&replica_a, &bank_a, Duration::from_secs(30)),
        fixture.app(&replica_b, &bank_b, Duration::from_secs(30)),
    ];
    let start = Arc::new(tokio::sync::Barrier::new(50));
    let requests: Vec<_> = (0..50)
        .map(|i| {
            let app = apps[i % 2].clone();
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                send(&app, payment("k1", PAYMENT)).await
            })
        })
        .collect();
    let (mut paid, mut replayed, mut in_progress) = (Vec::new(), 0, 0);
    for answer in requests {
        let answer = answer.await.unwrap();
        match answer.status.as_u16() {
            201 if answer.is_replay() => replayed += 1,
            201 => paid.push(answer),
            409 => {
                answer.assert_problem(409, "idempotency_key_in_progress");
                in_progress += 1;
            }
            _ => panic!("unexpected answer {answer:?}"),
        }
    }
    assert_eq!(
        paid.len(),
        1,
        "replayed {replayed}, in progress {in_progress}"
    );
    assert_eq!(replayed + in_progress, 49);
    assert_eq!(fixture.payment_ids().await, vec![id_of(&paid[0])]);
    let attempts = bank_a.attempts.load(Ordering::SeqCst) + bank_b.attempts.load(Ordering::SeqCst);
    assert_eq!(attempts, 1);
}

/// The layer sees the record completed in the transaction: it records
/// nothing again, releases nothing, and logs no warning.
async fn the_layer_records_nothing_again_and_warns_of_nothing(
    client: Client,
    isolation: Isolation,
) {
    #[cfg(feature = "tracing")]
    crate::common::logs::capture_on_this_thread();
    let fixture = fixture("quiet").await;
    let replica = fixture.replica(false).await;
    let bank = fixture.bank(client, isolation).await;
    let app = fixture.app(&replica, &bank, Duration::from_secs(30));
    let paid = send(&app, payment("k1", PAYMENT)).await;
    assert_eq!(paid.status, 201, "{paid:?}");
    assert_eq!(paid.headers["content-type"], "application/json");
    let retry = send(&app, payment("k1", PAYMENT)).await;
    assert!(retry.is_replay(), "{retry:?}");
    assert_eq!(retry.body, paid.body);
    assert_eq!(retry.headers["content-type"], "application/json");
    crate::common::settle().await;
    #[cfg(feature = "tracing")]
    {
        let logs = crate::common::logs::captured();
        assert!(!logs.contains("WARN"), "{logs}");
    }
    assert_eq!(replica.calls.records.load(Ordering::SeqCst), 0);
    assert_eq!(replica.calls.releases.load(Ordering::SeqCst), 0);
}

/// SERIALIZABLE: the claim's own lease renewal lands while the transaction
/// is open, so the completion fails with a serialization failure; the
/// handler runs its transaction again, and pays once.
async fn a_renewal_during_a_serializable_transaction_is_retried_not_doubled(
    client: Client,
    isolation: Isolation,
) {
    let fixture = fixture("renewal").await;
    let replica = fixture.replica(false).await;
    let bank = fixture.bank(client, isolation).await;
    let app = fixture.app(&replica, &bank, Duration::from_millis(600));

    bank.after_insert.arm();
    let paying = tokio::spawn({
        let app = app.clone();
        async move { send(&app, payment("k1", PAYMENT)).await }
    });
    bank.after_insert.arrived().await;
    // A renewal after the transaction's snapshot.
    let before = replica.calls.renewals.load(Ordering::SeqCst);
    while replica.calls.renewals.load(Ordering::SeqCst) == before {
        replica.calls.renewed.notified().await;
    }
    bank.after_insert.open();
    let paid = paying.await.unwrap();
    assert_eq!(paid.status, 201, "{paid:?}");
    let expected_attempts = match isolation {
        Isolation::Serializable => 2,
        Isolation::ReadCommitted => 1,
    };
    assert_eq!(bank.attempts.load(Ordering::SeqCst), expected_attempts);
    assert_eq!(fixture.payment_ids().await, vec![id_of(&paid)]);
}

/// A transaction that completed the record and then rolled back, answered
/// with a 500: the layer releases the key, the retry runs and pays once.
async fn a_rolled_back_completion_answered_with_an_error_lets_the_retry_run(
    client: Client,
    isolation: Isolation,
) {
    let fixture = fixture("rollback").await;
    let replica = fixture.replica(false).await;
    let bank = fixture.bank(client, isolation).await;
    let app = fixture.app(&replica, &bank, Duration::from_secs(30));

    bank.roll_back_after_completing
        .store(true, Ordering::SeqCst);
    let failed = send(&app, payment("k1", PAYMENT)).await;
    assert_eq!(failed.status, 500, "{failed:?}");
    assert!(fixture.payment_ids().await.is_empty());
    let paid = send(&app, payment("k1", PAYMENT)).await;
    assert_eq!(paid.status, 201, "{paid:?}");
    assert!(!paid.is_replay());
    assert_eq!(fixture.payment_ids().await, vec![id_of(&paid)]);
    assert_eq!(bank.attempts.load(Ordering::SeqCst), 2);
}

/// One trial per client and isolation level named in `only` (all when
/// empty) of the test `$name`.
macro_rules! each {
    ($trials:ident, $flavor:expr, $name:ident $(, $only:expr)?) => {
        for (label, client, isolation) in variants() {
            $(if !$only.contains(&isolation) { continue; })?
            $trials.push(trial(
                format!("postgres_fenced::{}::{label}", stringify!($name)),
                $flavor,
                move || $name(client, isolation),
            ));
        }
    };
}

pub fn trials() -> Vec<Trial> {
    let mut trials = Vec::new();
    each!(
        trials,
        Flavor::MultiThread(2),
        a_stale_owner_is_refused_after_the_new_owner_completed
    );
    each!(
        trials,
        Flavor::MultiThread(2),
        a_stale_owner_is_refused_while_the_new_owner_is_in_its_transaction
    );
    each!(
        trials,
        Flavor::MultiThread(2),
        a_lapsed_lease_is_refused_even_before_a_takeover
    );
    each!(
        trials,
        Flavor::MultiThread(2),
        a_crash_after_the_commit_replays
    );
    each!(
        trials,
        Flavor::MultiThread(2),
        fifty_concurrent_requests_on_two_replicas_pay_once
    );
    each!(
        trials,
        Flavor::CurrentThread,
        the_layer_records_nothing_again_and_warns_of_nothing,
        [Isolation::ReadCommitted]
    );
    each!(
        trials,
        Flavor::MultiThread(2),
        a_renewal_during_a_serializable_transaction_is_retried_not_doubled
    );
    each!(
        trials,
        Flavor::MultiThread(2),
        a_rolled_back_completion_answered_with_an_error_lets_the_retry_run,
        [Isolation::ReadCommitted]
    );
    trials
}
