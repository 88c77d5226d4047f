//! The behaviour tests: one binary, a module per behaviour. The tests that
//! need a Redis or a PostgreSQL server live in the `stores` binary, whose
//! harness marks them ignored when no server answers.

#[path = "../common/mod.rs"]
mod common;

#[cfg(feature = "axum")]
mod axum_bodies;
mod bodies;
#[cfg(feature = "client")]
mod client;
mod concurrency;
mod connecting;
mod decision_table;
mod example_generations;
mod example_orders;
mod expiry;
mod failures;
mod fingerprint_options;
mod flood;
mod joining;
mod keys;
mod long_running;
mod memory_store;
mod operator;
mod outcome;
mod properties;
mod recording_policy;
mod retry_hints;
mod scope;
mod service;
#[cfg(feature = "tracing")]
mod tracing_span;
mod waiting;
