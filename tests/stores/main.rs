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

mod conformance;
mod example_orders;
mod harness;
#[cfg(feature = "postgres")]
mod postgres_store;
#[cfg(feature = "redis")]
mod redis_store;

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
        trials.extend(redis.gate(on_redis));
        let redis_server = harness::Service::program("redis-server");
        trials.extend(redis_server.gate(redis_store::private_trials()));
    }
    #[cfg(feature = "postgres")]
    {
        let url = postgres_store::database_url();
        let postgres = harness::Service::server("PostgreSQL", &url, 5432);
        let mut on_postgres = conformance::postgres();
        on_postgres.extend(postgres_store::trials());
        on_postgres.extend(example_orders::postgres_trials());
        trials.extend(postgres.gate(on_postgres));
    }
    libtest_mimic::run(&args, trials).exit_code()
}
