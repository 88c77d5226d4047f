//! A payments API whose effect lives in PostgreSQL: each payment row and the
//! idempotency record that reports it commit in one transaction (fenced
//! completion), so a payment is made once even when a replica freezes past
//! its lease or is killed right after its commit.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --features postgres --example payments
//! curl -i -X POST localhost:3002/payments -H 'Idempotency-Key: p1' -d '{"amount":100}'
//! curl -i localhost:3002/payments
//! ```
//!
//! Environment: `DATABASE_URL` (required), `ADDR` (default
//! `127.0.0.1:3002`), `TTL_SECS` (default 86400), `LEASE_SECS` (default: the
//! layer's, 30), `STORE_TIMEOUT_MS` (default: the layer's, 2000),
//! `PAYMENTS_TABLE` (default `payments`) and `IDEMPOTENCY_TABLE` (default
//! `payments_idempotency`), both created if missing. Keys are scoped by the
//! `X-Api-Key` header.
//!
//! `POST /payments` runs one transaction: insert the payment, wait
//! `?delay_ms=N` inside the open transaction, complete the idempotency record
//! fenced by the request's claim, commit, then wait `?after_commit_ms=N`
//! before answering 201 `{"id": N, "payment": <the request JSON>}`.
//! `?fail=true` rolls the payment back and answers 500. A replica whose claim
//! passed to another (it froze past its lease) rolls back and answers 503: its
//! payment never commits, and the client's retry replays the owner's answer.
//! A request without an `Idempotency-Key` is not protected: it pays each time.
//! `GET /payments` lists every payment that committed, on every instance.

use std::env;
use std::error::Error;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Router, body::Body};
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_postgres::NoTls;
use tower_idempotency::IdempotencyLayer;
use tower_idempotency::store::{CompletionError, PostgresClaim, PostgresStore};

/// The payments table and the connections to it.
struct Payments {
    pool: Pool,
    insert: String,
    list: String,
}

#[derive(Deserialize)]
struct PayOptions {
    delay_ms: Option<u64>,
    after_commit_ms: Option<u64>,
    #[serde(default)]
    fail: bool,
}

/// Why a payment did not commit; each answers with a status the layer does
/// not record, so the key is free again (or stays its owner's).
enum Declined {
    /// The claim passed to another owner: that owner answers the retries.
    Fenced,
    /// `?fail=true`.
    Injected,
    Database(String),
}

impl From<tokio_postgres::Error> for Declined {
    fn from(error: tokio_postgres::Error) -> Self {
        Declined::Database(error.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for Declined {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Declined::Database(error.to_string())
    }
}

impl IntoResponse for Declined {
    fn into_response(self) -> Response {
        let (status, why) = match self {
            Declined::Fenced => (
                StatusCode::SERVICE_UNAVAILABLE,
                "this request's idempotency claim passed to another request; nothing was paid"
                    .to_owned(),
            ),
            Declined::Injected => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "injected failure; nothing was paid".to_owned(),
            ),
            Declined::Database(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
        };
        let body = serde_json::json!({ "error": why }).to_string();
        (status, [(CONTENT_TYPE, "application/json")], body).into_response()
    }
}

fn json_response(status: StatusCode, json: String) -> http::Response<Bytes> {
    let mut response = http::Response::new(Bytes::from(json));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

async fn create_payment(
    State(payments): State<Arc<Payments>>,
    claim: Option<Extension<PostgresClaim>>,
    Query(options): Query<PayOptions>,
    body: Bytes,
) -> Response {
    // The payment is kept as the very JSON text sent.
    let payment: &RawValue = match serde_json::from_slice(&body) {
        Ok(payment) => payment,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, format!("invalid JSON: {error}")).into_response();
        }
    };
    let claim = claim.map(|Extension(claim)| claim);
    // A serialization failure (under a stricter isolation level than the
    // default) runs the transaction again; nothing of a failed one commits.
    let mut attempts = 0;
    let paid = loop {
        attempts += 1;
        match pay(&payments, claim.as_ref(), payment.get(), &options).await {
            Err(Retry::Again) if attempts < 3 => continue,
            Err(Retry::Again) => break Err(Declined::Database("serialization failures".into())),
            Err(Retry::No(declined)) => break Err(declined),
            Ok(response) => break Ok(response),
        }
    };
    match paid {
        Ok(response) => {
            if let Some(delay) = options.after_commit_ms {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            response.map(Body::from)
        }
        Err(declined) => declined.into_response(),
    }
}

/// Whether a payment that did not commit may be tried again.
enum Retry {
    Again,
    No(Declined),
}

impl<E: Into<Declined>> From<E> for Retry {
    fn from(error: E) -> Self {
        Retry::No(error.into())
    }
}

/// One transaction: the payment row, then the record of its answer.
async fn pay(
    payments: &Payments,
    claim: Option<&PostgresClaim>,
    payment: &str,
    options: &PayOptions,
) -> Result<http::Response<Bytes>, Retry> {
    let mut client = payments.pool.get().await?;
    let transaction = client.transaction().await?;
    let row = transaction.query_one(&payments.insert, &[&payment]).await?;
    let id: i64 = row.get(0);
    if let Some(delay) = options.delay_ms {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if options.fail {
        transaction.rollback().await?;
        return Err(Retry::No(Declined::Injected));
    }
    let response = json_response(
        StatusCode::CREATED,
        format!(r#"{{"id":{id},"payment":{payment}}}"#),
    );
    if let Some(claim) = claim {
        // Dropping the transaction on an error rolls it back.
        match claim
            .complete_tokio_postgres(&*transaction, &response)
            .await
        {
            Ok(()) => {}
            Err(error) if error.is_retryable() => return Err(Retry::Again),
            Err(CompletionError::Fenced) => return Err(Retry::No(Declined::Fenced)),
            Err(error) => return Err(Retry::No(Declined::Database(error.to_string()))),
        }
    }
    match transaction.commit().await {
        Ok(()) => Ok(response),
        Err(error) if is_serialization_failure(&error) => Err(Retry::Again),
        Err(error) => Err(error.into()),
    }
}

fn is_serialization_failure(error: &tokio_postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| matches!(code.code(), "40001" | "40P01"))
}

async fn list_payments(State(payments): State<Arc<Payments>>) -> Response {
    let listed = async {
        let client = payments.pool.get().await?;
        let row = client.query_one(&payments.list, &[]).await?;
        Ok::<String, Declined>(row.get(0))
    };
    match listed.await {
        Ok(json) => json_response(StatusCode::OK, json).map(Body::from),
        Err(declined) => declined.into_response(),
    }
}

/// A table name of plain lowercase identifier characters, or an error.
fn table_name(variable: &str, default: &str) -> Result<String, Box<dyn Error>> {
    let name = env::var(variable).unwrap_or_else(|_| default.to_owned());
    let plain = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !plain {
        return Err(format!("{variable}={name}: use a-z, 0-9 and _ only").into());
    }
    Ok(name)
}

fn env_opt<T: FromStr>(name: &str) -> Result<Option<T>, Box<dyn Error>>
where
    T::Err: Error + 'static,
{
    match env::var(name) {
        Ok(value) => Ok(Some(
            value.parse().map_err(|e| format!("{name}={value}: {e}"))?,
        )),
        Err(env::VarError::NotPresent) => Ok(None),
        Err(error) => Err(format!("{name}: {error}").into()),
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let Ok(url) = env::var("DATABASE_URL") else {
        return Err(
            "DATABASE_URL is not set: this example keeps its payments in \
                    PostgreSQL; set it, e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
                .into(),
        );
    };
    let payments_table = table_name("PAYMENTS_TABLE", "payments")?;
    let records_table = table_name("IDEMPOTENCY_TABLE", "payments_idempotency")?;

    let mut store = PostgresStore::connect(&url).await?.table(&records_table)?;
    if let Some(timeout) = env_opt::<u64>("STORE_TIMEOUT_MS")? {
        store = store.timeout(Duration::from_millis(timeout));
    }
    store.migrate().await?;
    let _sweeper = store.spawn_sweeper(Duration::from_secs(60));

    let manager = Manager::from_config(
        url.parse()?,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(16)
        .runtime(Runtime::Tokio1)
        .build()?;
    // Under an advisory lock, so instances starting together do not trip
    // over each other's CREATE TABLE.
    pool.get()
        .await?
        .batch_execute(&format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock(hashtext('tower-idempotency payments example'));
             CREATE TABLE IF NOT EXISTS {payments_table} (
                 id      bigserial PRIMARY KEY,
                 payment text NOT NULL
             );
             COMMIT;"
        ))
        .await?;
    let payments = Arc::new(Payments {
        pool,
        insert: format!("INSERT INTO {payments_table} (payment) VALUES ($1) RETURNING id"),
        list: format!(
            "SELECT '[' || coalesce(string_agg(
                 '{{\"id\":' || id || ',\"payment\":' || payment || '}}', ',' ORDER BY id), '')
                 || ']' FROM {payments_table}"
        ),
    });

    let ttl = env_opt::<u64>("TTL_SECS")?.unwrap_or(86_400);
    let mut layer = IdempotencyLayer::new(store)
        .scope_by_header(HeaderName::from_static("x-api-key"))
        .ttl(Duration::from_secs(ttl));
    if let Some(lease) = env_opt::<u64>("LEASE_SECS")? {
        layer = layer.lease(Duration::from_secs(lease));
    }
    if let Some(timeout) = env_opt::<u64>("STORE_TIMEOUT_MS")? {
        layer = layer.store_timeout(Duration::from_millis(timeout));
    }
    let app = Router::new()
        .route("/payments", post(create_payment).get(list_payments))
        .layer(layer)
        .with_state(payments);

    let addr = env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3002".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "payments example listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let mut message = error.to_string();
            let mut cause = error.source();
            while let Some(error) = cause {
                message.push_str(": ");
                message.push_str(&error.to_string());
                cause = error.source();
            }
            eprintln!("payments example: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
