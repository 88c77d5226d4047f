//! The public conformance suite, through its documented entry, against every
//! store of the crate: one test per check and store.

use std::future::Future;
use std::sync::Arc;

use libtest_mimic::Trial;
use tower_idempotency::MemoryStore;
use tower_idempotency::Store;
use tower_idempotency::store::conformance::Check;

use crate::harness::{Flavor, trial};

/// Every check against stores made by `make`, on runtimes of `flavor` (the
/// race check always on four worker threads, unless the clock is paused).
fn trials_for<St, F, Fut>(store: &str, flavor: Flavor, make: F) -> Vec<Trial>
where
    St: Store,
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = St>,
{
    Check::ALL
        .iter()
        .map(|&check| {
            let flavor = match (check, flavor) {
                (Check::ClaimRaceHasOneWinner, Flavor::CurrentThread) => Flavor::MultiThread(4),
                _ => flavor,
            };
            let make = make.clone();
            trial(
                format!("conformance::{store}::{}", check.name()),
                flavor,
                move || async move { check.run(Arc::new(make().await)).await },
            )
        })
        .collect()
}

/// The memory store, on a paused clock: its timed checks are instant.
pub fn memory() -> Vec<Trial> {
    trials_for("memory", Flavor::Paused, || async { MemoryStore::new() })
}

/// The Redis store, in real time.
#[cfg(feature = "redis")]
pub fn redis() -> Vec<Trial> {
    trials_for("redis", Flavor::CurrentThread, || {
        crate::redis_store::store("conformance")
    })
}

/// The Redis store on the shared test cluster, in real time.
#[cfg(feature = "redis")]
pub fn redis_cluster() -> Vec<Trial> {
    trials_for("redis_cluster", Flavor::CurrentThread, || {
        crate::redis_cluster::store("conformance")
    })
}

/// The PostgreSQL store, in real time, on a table of its own per check.
#[cfg(feature = "postgres")]
pub fn postgres() -> Vec<Trial> {
    trials_for("postgres", Flavor::CurrentThread, || {
        crate::postgres_store::store("conf")
    })
}

/// The one entry users call, `run_all`, on the memory store.
pub fn run_all() -> Vec<Trial> {
    vec![trial(
        "conformance::memory::run_all",
        Flavor::Paused,
        || tower_idempotency::store::conformance::run_all(|| async { MemoryStore::new() }),
    )]
}
