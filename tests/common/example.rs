//! Running the examples as processes, for black-box tests over HTTP.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::wire::Reply;

/// The example binary, built by `cargo test` next to this test's directory.
/// Run these tests through the README's command (`cargo test --all-features`):
/// a run of this file alone (`--test example_orders`) does not rebuild the
/// example, and may start one built with other features.
pub fn example_path() -> std::path::PathBuf {
    example("orders")
}

pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    profile_dir.join("examples").join(name)
}

pub struct Server {
    pub addr: String,
    _child: Child,
}

pub async fn start(env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(example_path())
        .env("ADDR", "127.0.0.1:0")
        // The memory store, unless a test names another.
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the orders example is built by `cargo test`");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await.unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_owned();
    Server {
        addr,
        _child: child,
    }
}

/// One HTTP/1.1 exchange with the server.
pub async fn http(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    super::wire::exchange(&server.addr, method, path, headers, body).await
}

pub async fn create(
    server: &Server,
    key: &str,
    extra: &[(&str, &str)],
    path: &str,
    body: &str,
) -> Reply {
    let mut headers = vec![("idempotency-key", key)];
    headers.extend_from_slice(extra);
    http(server, "POST", path, &headers, body).await
}

/// Two instances started with `env` (a shared store) make one order per key.
pub async fn two_instances_make_one_order_per_key(env: &[(&str, &str)]) {
    let (a, b) = (start(env).await, start(env).await);
    let first = create(&a, "k1", &[], "/orders", r#"{"sku":"tea"}"#).await;
    assert_eq!(first.status, 201);
    let through_b = create(&b, "k1", &[], "/orders", r#"{"sku":"tea"}"#).await;
    assert_eq!(through_b.header("idempotent-replayed"), Some("true"));
    assert_eq!(through_b.body, first.body);
    let mismatch = create(&b, "k1", &[], "/orders", r#"{"sku":"milk"}"#).await;
    assert_eq!(mismatch.status, 409);
    let orders_a = http(&a, "GET", "/orders", &[], "").await.json();
    let orders_b = http(&b, "GET", "/orders", &[], "").await.json();
    assert_eq!(
        orders_a.as_array().unwrap().len() + orders_b.as_array().unwrap().len(),
        1
    );
}
