#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod header;
#[cfg(feature = "server")]
mod log;

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod store;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use header::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
#[cfg(feature = "server")]
pub use server::{
    Idempotency, IdempotencyKey, IdempotencyLayer, InvalidKey, Outcome, OutcomeReport, Profile,
    Scope, ScopeFn, default_record_policy,
};
#[cfg(feature = "server")]
pub use store::{Fingerprint, MemoryStore, Store};
