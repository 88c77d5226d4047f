#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

/// Marks items as part of the server side (feature `server`, on by default).
macro_rules! server {
    ($($item:item)*) => {
        $(
            #[cfg(feature = "server")]
            #[cfg_attr(docsrs, doc(cfg(feature = "server")))]
            $item
        )*
    };
}

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

server! {
    mod body;
    mod canonical_json;
    mod claim;
    mod decision;
    mod execution;
    mod fingerprint;
    mod future;
    mod key;
    mod layer;
    mod lease;
    mod log;
    mod outcome;
    mod profile;
    mod recording;
    mod rejection;
    mod request_body;
    mod scope;
    mod service;
    pub mod store;

    pub use body::ResponseBody;
    pub use fingerprint::Fingerprint;
    pub use future::ResponseFuture;
    pub use key::{IdempotencyKey, InvalidKey};
    pub use layer::IdempotencyLayer;
    pub use outcome::{Outcome, OutcomeReport};
    pub use profile::Profile;
    pub use recording::default_record_policy;
    pub use request_body::RequestBody;
    pub use scope::{Scope, ScopeFn};
    pub use service::Idempotency;
    pub use store::{MemoryStore, Store};
}
