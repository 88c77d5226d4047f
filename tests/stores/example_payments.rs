//! The payments example as processes on one PostgreSQL: one payment per key
//! across two instances, and none twice when an instance is killed after
//! its commit or frozen (SIGSTOP) past its lease inside its transaction.
//!
//! Each test has tables of its own (`PAYMENTS_TABLE`, `IDEMPOTENCY_TABLE`),
//! dropped at its end.
#![cfg(feature = "postgres")]

use std::sync::Arc;
use std::time::Duration;

use libtest_mimic::Trial;

use crate::common::example::{Server, create, http, start_example};
use crate::harness::{Flavor, trials};
use crate::postgres_store::{count, database_url, sql, unique_table};

/// The tables of one test, dropped with it.
struct Tables {
    payments: String,
    records: String,
}

impl Tables {
    fn new(name: &str) -> Self {
        Self {
            payments: unique_table(&format!("{name}_p")),
            records: unique_table(&format!("{name}_r")),
        }
    }

    /// An instance of the example on these tables, with `env` besides.
    async fn instance(&self, env: &[(&str, &str)]) -> Server {
        let url = database_url();
        let mut all = vec![
            ("DATABASE_URL", url.as_str()),
            ("PAYMENTS_TABLE", self.payments.as_str()),
            ("IDEMPOTENCY_TABLE", self.records.as_str()),
        ];
        all.extend_from_slice(env);
        start_example("payments", &all).await
    }

    async fn payments(&self) -> i64 {
        count(&format!("SELECT count(*) FROM {}", self.payments)).await
    }
}

impl Drop for Tables {
    fn drop(&mut self) {
        let statements = format!(
            "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {}",
            self.payments, self.records
        );
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(sql(&statements));
        });
        let _ = dropped.join();
    }
}

async fn pay(server: &Server, key: &str, query: &str, body: &str) -> crate::common::wire::Reply {
    create(server, key, &[], &format!("/payments{query}"), body).await
}

/// Polls `query` (a count) until it is 1: an event in the database, not a
/// time, is what the test waits for.
async fn until_one(query: &str, what: &str) {
    for _ in 0..1000 {
        if count(query).await == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

async fn refuses_to_start_without_a_database_url() {
    let output = tokio::process::Command::new(crate::common::example::example("payments"))
        .env_remove("DATABASE_URL")
        .env("ADDR", "127.0.0.1:0")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL is not set"), "{stderr}");
}

async fn two_instances_pay_once_per_key_and_list_the_same_payments() {
    let tables = Tables::new("ex_pay");
    // Started together: both create the tables if missing, neither fails.
    let (a, b) = tokio::join!(tables.instance(&[]), tables.instance(&[]));
    let first = pay(&a, "p1", "", r#"{"amount":100,"to":"acct_1"}"#).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(first.header("content-type"), Some("application/json"));
    let receipt = first.json();
    assert_eq!(
        receipt["payment"],
        serde_json::json!({"amount":100,"to":"acct_1"})
    );

    let retry = pay(&b, "p1", "", r#"{"amount":100,"to":"acct_1"}"#).await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.body, first.body);
    let mismatch = pay(&b, "p1", "", r#"{"amount":999,"to":"acct_1"}"#).await;
    assert_eq!(mismatch.status, 409);

    let failed = pay(&a, "p2", "?fail=true", r#"{"amount":5}"#).await;
    assert_eq!(failed.status, 500);
    assert_eq!(tables.payments().await, 1, "a failed payment rolls back");
    let second = pay(&b, "p2", "?fail=false", r#"{"amount":5}"#).await;
    assert_eq!(second.status, 201, "the failed key runs again");

    let listed_a = http(&a, "GET", "/payments", &[], "").await.json();
    let listed_b = http(&b, "GET", "/payments", &[], "").await.json();
    assert_eq!(listed_a, listed_b);
    assert_eq!(listed_a, serde_json::json!([receipt, second.json()]));
}

async fn fifty_concurrent_requests_on_two_instances_pay_once() {
    let tables = Tables::new("ex_fifty");
    let servers = Arc::new([tables.instance(&[]).await, tables.instance(&[]).await]);
    let start = Arc::new(tokio::sync::Barrier::new(50));
    let requests: Vec<_> = (0..50)
        .map(|i| {
            let (servers, start) = (Arc::clone(&servers), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                pay(&servers[i % 2], "p1", "", r#"{"amount":100}"#).await
            })
        })
        .collect();
    let (mut paid, mut replayed, mut in_progress) = (0, 0, 0);
    for reply in requests {
        let reply = reply.await.unwrap();
        match (reply.status, reply.header("idempotent-replayed")) {
            (201, Some("true")) => replayed += 1,
            (201, None) => paid += 1,
            (409, _) => {
                assert_eq!(reply.json()["code"], "idempotency_key_in_progress");
                in_progress += 1;
            }
            _ => panic!("unexpected {reply:?}"),
        }
    }
    assert_eq!(paid, 1, "replayed {replayed}, in progress {in_progress}");
    assert_eq!(replayed + in_progress, 49);
    assert_eq!(tables.payments().await, 1);
}

/// A commits its payment and its record, then is killed (SIGKILL) before it
/// answers: the retry on B replays, and nothing is paid twice.
async fn an_instance_killed_after_its_commit_leaves_a_replay() {
    let tables = Tables::new("ex_kill");
    let (mut a, b) = (tables.instance(&[]).await, tables.instance(&[]).await);
    let body = r#"{"amount":100}"#;
    // The request is sent on a connection the test holds; A never answers it.
    let path = "/payments?after_commit_ms=60000";
    let mut connection = tokio::net::TcpStream::connect(&a.addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: a\r\nidempotency-key: p1\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut connection, request.as_bytes())
        .await
        .unwrap();
    until_one(
        &format!("SELECT count(*) FROM {}", tables.payments),
        "the payment committed",
    )
    .await;
    a.child.kill().await.unwrap();
    drop(connection);

    let retry = create(&b, "p1", &[], path, body).await;
    assert_eq!(retry.status, 201, "{retry:?}");
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(tables.payments().await, 1);
}

/// A inserts its payment, then freezes (SIGSTOP) inside its open transaction
/// past its one-second lease; B takes the key over and pays; A thaws: its
/// completion is refused, its transaction rolls back, its client gets a 503.
/// One payment, B's, which a retry on A replays.
async fn an_instance_frozen_past_its_lease_does_not_pay_twice() {
    let tables = Tables::new("ex_freeze");
    let env = [("LEASE_SECS", "1")];
    let (a, b) = (tables.instance(&env).await, tables.instance(&env).await);
    let body = r#"{"amount":100}"#;
    let stale = tokio::spawn({
        let addr = a.addr.clone();
        async move {
            crate::common::wire::exchange(
                &addr,
                "POST",
                "/payments?delay_ms=1500",
                &[("idempotency-key", "p1")],
                body,
            )
            .await
        }
    });
    // A's transaction has inserted and sleeps, open.
    until_one(
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'
                AND query LIKE 'INSERT INTO {}%'",
            tables.payments
        ),
        "A's payment inserted, its transaction open",
    )
    .await;
    a.signal("STOP");
    until_one(
        &format!(
            "SELECT count(*) FROM {} WHERE NOT completed AND expires_at <= clock_timestamp()",
            tables.records
        ),
        "A's lease lapsed",
    )
    .await;
    let owner = pay(&b, "p1", "", body).await;
    a.signal("CONT");
    assert_eq!(owner.status, 201, "{owner:?}");
    assert_eq!(owner.header("idempotent-replayed"), None);

    let stale = stale.await.unwrap();
    assert_eq!(stale.status, 503, "{stale:?}");
    assert_eq!(tables.payments().await, 1, "one payment: B's");
    let retry = pay(&a, "p1", "", body).await;
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.body, owner.body);
}

pub fn trials() -> Vec<Trial> {
    trials![
        "example_payments";
        Flavor::CurrentThread => refuses_to_start_without_a_database_url,
        Flavor::CurrentThread => two_instances_pay_once_per_key_and_list_the_same_payments,
        Flavor::MultiThread(2) => fifty_concurrent_requests_on_two_instances_pay_once,
        Flavor::CurrentThread => an_instance_killed_after_its_commit_leaves_a_replay,
        Flavor::CurrentThread => an_instance_frozen_past_its_lease_does_not_pay_twice,
    ]
}
