//! The orders example, two instances sharing one Redis or one PostgreSQL:
//! one order per key across both.
#![cfg(any(feature = "redis", feature = "postgres"))]

use libtest_mimic::Trial;

use crate::harness::{Flavor, trials};

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[cfg(feature = "redis")]
async fn two_instances_sharing_redis_make_one_order_per_key() {
    let url = crate::redis_store::redis_url();
    let prefix = format!("tower-idempotency-test:example:{}:", nanos());
    crate::common::example::two_instances_make_one_order_per_key(&[
        ("REDIS_URL", url.as_str()),
        ("KEY_PREFIX", prefix.as_str()),
        ("TTL_SECS", "60"),
    ])
    .await;
}

#[cfg(feature = "postgres")]
async fn two_instances_sharing_postgres_make_one_order_per_key() {
    use tower_idempotency::store::PostgresStore;
    let url = crate::postgres_store::database_url();
    let store = PostgresStore::connect(&url).await.unwrap();
    let table = format!("ti_example_{}", nanos() % 1_000_000_000_000);
    // Created once up front, as a deployment's migration would.
    store.table(&table).unwrap().migrate().await.unwrap();
    crate::common::example::two_instances_make_one_order_per_key(&[
        ("DATABASE_URL", url.as_str()),
        ("TABLE_NAME", table.as_str()),
    ])
    .await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

/// Two instances on the shared Redis Cluster, with replicated claims.
#[cfg(feature = "redis")]
async fn two_instances_sharing_a_redis_cluster_make_one_order_per_key() {
    let urls = crate::redis_cluster::shared_urls().join(",");
    let prefix = format!("tower-idempotency-test:example-cluster:{}:", nanos());
    crate::common::example::two_instances_make_one_order_per_key(&[
        ("REDIS_CLUSTER_URLS", urls.as_str()),
        ("REDIS_REPLICAS_ACKED", "1"),
        ("KEY_PREFIX", prefix.as_str()),
        ("TTL_SECS", "60"),
    ])
    .await;
}

/// The example on the shared Redis Cluster.
#[cfg(feature = "redis")]
pub fn redis_cluster_trials() -> Vec<Trial> {
    trials!["example_orders"; Flavor::CurrentThread => two_instances_sharing_a_redis_cluster_make_one_order_per_key]
}

/// The example with Redis.
#[cfg(feature = "redis")]
pub fn redis_trials() -> Vec<Trial> {
    trials!["example_orders"; Flavor::CurrentThread => two_instances_sharing_redis_make_one_order_per_key]
}

/// The example with PostgreSQL.
#[cfg(feature = "postgres")]
pub fn postgres_trials() -> Vec<Trial> {
    trials!["example_orders"; Flavor::CurrentThread => two_instances_sharing_postgres_make_one_order_per_key]
}
