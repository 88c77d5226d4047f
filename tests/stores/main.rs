//! The store tests: the conformance suite against every store, and the tests
//! that need a Redis or PostgreSQL server (`REDIS_URL`, `DATABASE_URL`) or
//! `redis-server` on the PATH.
//!
//! Each server is looked for once, before any test runs. A test whose server
//! is missing is marked ignored, so the summary says so (`N ignored`), unless
//! `TOWER_IDEMPOTENCY_REQUIRE_SERVICES=1` (as in CI): then it runs and fails.

#![allow(unreachable_pub)]

use std::process::ExitCode;

use libtest_mimic::Arguments;

#[path = "../common/mod.rs"]
mod common;

#[cfg(feature = "redis")]
mod cluster;
mod conformance;
mod example_generations;
mod example_orders;
mod example_payments;
mod harness;
#[cfg(feature = "postgres")]
mod postgres_fenced;
#[cfg(feature = "postgres")]
mod postgres_store;
#[cfg(feature = "redis")]
mod redis_cluster;
#[cfg(feature = "redis")]
mod redis_join;
#[cfg(feature = "redis")]
mod redis_store;
mod tls;

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let mut trials = conformance::memory();
    trials.extend(conformance::run_all());
    #[cfg(feature = "redis")]
    {
        let url = redis_store::redis_url();
        let redis = harness::Service::server("Redis", &url, 6379);
        let mut on_redis = conformance::redis();
        on_redis.extend(redis_store::shared_trials());
        on_redis.extend(example_orders::redis_trials());
        on_redis.extend(example_generations::redis_trials());
        on_redis.extend(redis_join::trials());
        trials.extend(redis.gate(on_redis));
        let redis_server = harness::Service::program("redis-server");
        trials.extend(redis_server.gate(redis_store::private_trials()));
        let tls_tools = harness::Service::programs(&["redis-server", "openssl"]);
        trials.extend(tls_tools.gate(tls::redis_trials()));
        let mut on_cluster = conformance::redis_cluster();
        on_cluster.extend(redis_cluster::shared_trials());
        on_cluster.extend(redis_cluster::private_trials());
        on_cluster.extend(example_orders::redis_cluster_trials());
        on_cluster.extend(example_generations::redis_cluster_trials());
        let cluster_tools = harness::Service::programs(&["redis-server", "redis-cli"]);
        trials.extend(cluster_tools.gate(on_cluster));
    }
    #[cfg(feature = "postgres")]
    {
        let url = postgres_store::database_url();
        let postgres = harness::Service::server("PostgreSQL", &url, 5432);
        let mut on_postgres = conformance::postgres();
        on_postgres.extend(postgres_store::trials());
        on_postgres.extend(postgres_fenced::trials());
        on_postgres.extend(example_payments::trials());
        on_postgres.extend(tls::postgres_trials());
        on_postgres.extend(example_orders::postgres_trials());
        trials.extend(postgres.gate(on_postgres));
    }
    // The cluster the cluster tests share, started only if one of them will
    // run, and stopped (by the ids of the processes it started) after all.
    #[cfg(feature = "redis")]
    let _shared_cluster = harness::wanted(&args, &trials, "redis_cluster").then(|| {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let cluster = runtime.block_on(cluster::Cluster::start("shared"));
        redis_cluster::share(&cluster);
        cluster
    });
    libtest_mimic::run(&args, trials).exit_code()
}
