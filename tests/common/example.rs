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
    pub child: Child,
}

impl Server {
    /// The process id, for signals.
    pub fn pid(&self) -> String {
        self.child.id().expect("the example runs").to_string()
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.pid()])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }
}

pub async fn start(env: &[(&str, &str)]) -> Server {
    start_example("orders", env).await
}

/// Starts the example `name` with `env` and waits for the address it prints.
pub async fn start_example(name: &str, env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(example(name))
        .env("ADDR", "127.0.0.1:0")
        // The memory store, unless a test names another.
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("the {name} example is built by `cargo test`: {error}"));
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await.unwrap();
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .filter(|addr| !addr.is_empty())
        .unwrap_or_else(|| panic!("the {name} example printed no address"))
        .to_owned();
    Server { addr, child }
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
