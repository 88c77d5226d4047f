//! What the layer reads from a request before it asks the store anything:
//! the key, the body (buffered within a limit), the fingerprint, the scope,
//! and the digest of (scope, key) that names the record.

mod body;
mod canonical_json;
mod fingerprint;
mod key;
mod key_digest;
mod scope;

pub use self::body::RequestBody;
pub(crate) use self::body::{BufferError, buffer};
pub(crate) use self::fingerprint::FingerprintConfig;
pub(crate) use self::key::key_from_headers;
pub use self::key::{IdempotencyKey, InvalidKey};
pub(crate) use self::scope::{ExtensionScope, GlobalScope, HeaderScope, SharedScopeFn};
pub use self::scope::{Scope, ScopeFn};

#[cfg(feature = "fuzzing")]
pub(crate) use self::canonical_json::canonicalize;
