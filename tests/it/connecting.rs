//! Connecting to a store that is not there fails fast, and says where and why.
#![cfg(any(feature = "redis", feature = "postgres"))]

use std::time::{Duration, Instant};

use tokio::net::TcpListener;

/// A port where nothing listens (bound, then closed).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A server that accepts connections and never says a word.
async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

/// The error and its causes on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text = format!("{text}: {error}");
        cause = error.source();
    }
    text
}

/// Connecting with `connect` to a closed port fails naming the address and
/// "refused"; to a silent server, within 5 s, naming the address.
async fn fails_fast_and_says_where<F, Fut, T, E>(url: impl Fn(u16) -> String, connect: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::error::Error,
{
    let port = closed_port();
    let Err(refused) = connect(url(port)).await else {
        panic!("connected to a closed port");
    };
    let text = chain(&refused);
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");

    let (port, _server) = silent_server().await;
    let started = Instant::now();
    let Err(silent) = connect(url(port)).await else {
        panic!("connected to a silent server");
    };
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let text = chain(&silent);
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_connect_names_the_address_and_the_cause_within_its_bound() {
    use tower_idempotency::store::RedisStore;
    let url = |port| format!("redis://127.0.0.1:{port}");
    fails_fast_and_says_where(url, |url| async move { RedisStore::connect(&url).await }).await;
    fails_fast_and_says_where(url, |url| async move {
        RedisStore::connect_cluster([url]).await
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_connect_names_the_address_and_the_cause_within_its_bound() {
    use tower_idempotency::store::PostgresStore;
    let url = |port| format!("postgres://u@127.0.0.1:{port}/db");
    fails_fast_and_says_where(url, |url| async move { PostgresStore::connect(&url).await }).await;
}
