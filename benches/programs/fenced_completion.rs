//! Round trips, statements and time of one payment three ways, measured in
//! one run against the PostgreSQL at `DATABASE_URL`:
//!
//! - bare: the handler's transaction (BEGIN, INSERT, COMMIT), no layer;
//! - layer record: the same handler under `IdempotencyLayer` with a
//!   `PostgresStore`, which claims the key and records the response itself;
//! - fenced: the handler completes the record in its own transaction
//!   (BEGIN, INSERT, completion, COMMIT) and the layer records nothing.
//!
//! Every connection goes through a TCP relay that counts round trips (a
//! client message sent after the server last spoke), one relay for the
//! store's pool and one for the handler's, so each side is counted apart.
//!
//! ```text
//! cargo bench --features postgres --bench fenced_completion -- 2000
//! ```

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::NoTls;
use tower::ServiceExt;
use tower_idempotency::IdempotencyLayer;
use tower_idempotency::store::{PostgresClaim, PostgresStore};

/// A TCP relay to PostgreSQL that counts round trips.
struct Relay {
    port: u16,
    round_trips: Arc<AtomicU64>,
}

impl Relay {
    async fn start(upstream: String) -> Result<Self, Box<dyn Error>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let round_trips = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&round_trips);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let counter = Arc::clone(&counter);
                tokio::spawn(relay(client, server, counter));
            }
        });
        Ok(Self { port, round_trips })
    }

    fn take(&self) -> u64 {
        self.round_trips.swap(0, Ordering::SeqCst)
    }
}

/// Copies both ways; a client message that follows the server's answer (or
/// opens the connection) starts a round trip.
async fn relay(client: TcpStream, server: TcpStream, round_trips: Arc<AtomicU64>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let clients_turn = Arc::new(AtomicBool::new(false));
    let turn = Arc::clone(&clients_turn);
    let upstream = async move {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(read) = client_read.read(&mut buffer).await {
            if read == 0 {
                break;
            }
            if !turn.swap(true, Ordering::SeqCst) {
                round_trips.fetch_add(1, Ordering::SeqCst);
            }
            if server_write.write_all(&buffer[..read]).await.is_err() {
                break;
            }
        }
    };
    let downstream = async move {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(read) = server_read.read(&mut buffer).await {
            if read == 0 {
                break;
            }
            clients_turn.store(false, Ordering::SeqCst);
            if client_write.write_all(&buffer[..read]).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(upstream, downstream);
}

/// A pool of connections through `relay`.
fn pool_through(config: &tokio_postgres::Config, relay: &Relay) -> Result<Pool, Box<dyn Error>> {
    // The same user, database and password, at the relay's address.
    let mut through = tokio_postgres::Config::new();
    through.host("127.0.0.1").port(relay.port);
    if let Some(user) = config.get_user() {
        through.user(user);
    }
    if let Some(dbname) = config.get_dbname() {
        through.dbname(dbname);
    }
    if let Some(password) = config.get_password() {
        through.password(password);
    }
    let config = through;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(4)
        .runtime(Runtime::Tokio1)
        .build()?)
}

/// The handler's side: its pool and its statements.
struct Payments {
    pool: Pool,
    insert: String,
}

fn receipt(id: i64) -> http::Response<Bytes> {
    let mut response = http::Response::new(Bytes::from(format!(r#"{{"id":{id}}}"#)));
    *response.status_mut() = StatusCode::CREATED;
    response
}

/// BEGIN, INSERT, (completion,) COMMIT.
async fn pay(payments: &Payments, claim: Option<&PostgresClaim>) -> Response {
    let paid = async {
        let mut client = payments.pool.get().await?;
        let insert = client.prepare_cached(&payments.insert).await?;
        let transaction = client.transaction().await?;
        let id: i64 = transaction.query_one(&insert, &[&"{}"]).await?.get(0);
        let response = receipt(id);
        if let Some(claim) = claim {
            claim
                .complete_tokio_postgres(&*transaction, &response)
                .await?;
        }
        transaction.commit().await?;
        Ok::<_, Box<dyn Error + Send + Sync>>(response)
    };
    match paid.await {
        Ok(response) => response.map(Body::from),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

async fn pay_unfenced(State(payments): State<Arc<Payments>>) -> Response {
    pay(&payments, None).await
}

async fn pay_fenced(
    State(payments): State<Arc<Payments>>,
    Extension(claim): Extension<PostgresClaim>,
) -> Response {
    pay(&payments, Some(&claim)).await
}

/// Sends `n` payments with fresh keys one after the other; returns the time
/// per request.
async fn run(app: &Router, n: u64, prefix: &str) -> Result<Duration, Box<dyn Error>> {
    let started = Instant::now();
    for i in 0..n {
        let request = Request::post("/payments")
            .header("idempotency-key", format!("{prefix}-{i}"))
            .body(Body::from("{}"))?;
        let response = app.clone().oneshot(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status != StatusCode::CREATED {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&body)).into());
        }
    }
    Ok(started.elapsed() / u32::try_from(n)?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let n: u64 = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .map_or(Ok(2000), |arg| arg.parse())?;
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let config: tokio_postgres::Config = url.parse()?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let upstream = format!("{host}:{port}");
    if TcpStream::connect(&upstream).await.is_err() {
        println!("fenced_completion: no PostgreSQL at {upstream}; skipped");
        return Ok(());
    }

    let (store_relay, handler_relay) = (
        Relay::start(upstream.clone()).await?,
        Relay::start(upstream).await?,
    );
    let suffix = std::process::id();
    let (records, payments_table) = (
        format!("bench_fenced_records_{suffix}"),
        format!("bench_fenced_payments_{suffix}"),
    );
    let store = PostgresStore::new(pool_through(&config, &store_relay)?).table(&records)?;
    store.migrate().await?;
    let payments = Arc::new(Payments {
        pool: pool_through(&config, &handler_relay)?,
        insert: format!("INSERT INTO {payments_table} (payment) VALUES ($1) RETURNING id"),
    });
    payments
        .pool
        .get()
        .await?
        .batch_execute(&format!(
            "CREATE TABLE {payments_table} (id bigserial PRIMARY KEY, payment text NOT NULL)"
        ))
        .await?;

    let bare = Router::new()
        .route("/payments", post(pay_unfenced))
        .with_state(Arc::clone(&payments));
    let layer = IdempotencyLayer::new(store);
    let recorded = Router::new()
        .route("/payments", post(pay_unfenced))
        .with_state(Arc::clone(&payments))
        .layer(layer.clone());
    let fenced = Router::new()
        .route("/payments", post(pay_fenced))
        .with_state(Arc::clone(&payments))
        .layer(layer);

    println!("{n} sequential payments each, fresh keys; round trips and statements per request");
    println!(
        "| scenario | store round trips | handler round trips | total | µs per request | x bare |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut bare_time = None;
    for (name, app) in [
        ("bare", &bare),
        ("layer record", &recorded),
        ("fenced", &fenced),
    ] {
        // Warm-up: connections opened, statements prepared.
        run(app, 50, &format!("warm-{name}")).await?;
        store_relay.take();
        handler_relay.take();
        let time = run(app, n, name).await?;
        let (store_trips, handler_trips) = (store_relay.take(), handler_relay.take());
        let per = |trips: u64| trips as f64 / n as f64;
        let bare = *bare_time.get_or_insert(time);
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} |",
            per(store_trips),
            per(handler_trips),
            per(store_trips + handler_trips),
            time.as_secs_f64() * 1e6,
            bare.as_secs_f64() / time.as_secs_f64(),
        );
    }

    payments
        .pool
        .get()
        .await?
        .batch_execute(&format!(
            "DROP TABLE {payments_table}; DROP TABLE {records}"
        ))
        .await?;
    Ok(())
}
