//! How a request maps to a tenant scope.

use std::fmt::{self, Display};
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderName;
use http::request::Parts;

/// The tenant a key belongs to. Records are keyed by (scope, key), so the same
/// key sent from two scopes names two unrelated records.
///
/// ```
/// use tower_idempotency::Scope;
///
/// assert_ne!(Scope::global(), Scope::new("tenant-a"));
/// assert_ne!(Scope::new("tenant-a"), Scope::new("tenant-b"));
/// // The global scope is distinct from every named scope, the empty one included.
/// assert_ne!(Scope::global(), Scope::new(""));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Scope(Option<Bytes>);

impl Scope {
    /// Returns the one scope shared by every request that names no tenant.
    pub const fn global() -> Self {
        Self(None)
    }

    /// Creates a named scope, such as an account id or an API key.
    pub fn new(name: impl Into<Bytes>) -> Self {
        Self(Some(name.into()))
    }

    /// Returns the scope's name, or `None` for the global scope.
    pub fn name(&self) -> Option<&[u8]> {
        self.0.as_deref()
    }
}

impl fmt::Debug for Scope {
    /// Names are often credentials (API keys): debug output shows only their length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Scope::Global"),
            Some(name) => write!(f, "Scope::Named({} bytes)", name.len()),
        }
    }
}

/// Maps a request head to its [`Scope`]. Implemented for every
/// `Fn(&http::request::Parts) -> Scope`.
///
/// ```
/// use tower_idempotency::{Scope, ScopeFn};
///
/// /// The first path segment is the account.
/// struct ByAccount;
///
/// impl ScopeFn for ByAccount {
///     fn scope(&self, parts: &http::request::Parts) -> Scope {
///         match parts.uri.path().split('/').nth(1) {
///             Some(account) if !account.is_empty() => Scope::new(account.to_owned()),
///             _ => Scope::global(),
///         }
///     }
/// }
///
/// let layer = tower_idempotency::IdempotencyLayer::new(tower_idempotency::MemoryStore::new())
///     .scope(ByAccount);
/// ```
pub trait ScopeFn: Send + Sync + 'static {
    /// The scope of the request whose head is `parts`.
    fn scope(&self, parts: &Parts) -> Scope;
}

impl<F> ScopeFn for F
where
    F: Fn(&Parts) -> Scope + Send + Sync + 'static,
{
    fn scope(&self, parts: &Parts) -> Scope {
        self(parts)
    }
}

/// Every request in the [global scope](Scope::global): the default.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GlobalScope;

impl ScopeFn for GlobalScope {
    fn scope(&self, _: &Parts) -> Scope {
        Scope::global()
    }
}

/// The scope is the value of a request header (an API key, a tenant id); a
/// request without it is in the global scope.
#[derive(Debug, Clone)]
pub(crate) struct HeaderScope(pub(crate) HeaderName);

impl ScopeFn for HeaderScope {
    fn scope(&self, parts: &Parts) -> Scope {
        // Each value is a separate field, so join them with a byte no header
        // value can hold: two headers never look like one.
        let mut values = parts.headers.get_all(&self.0).iter();
        match (values.next(), values.next()) {
            (None, _) => Scope::global(),
            (Some(one), None) => Scope::new(Bytes::copy_from_slice(one.as_bytes())),
            (Some(first), Some(second)) => {
                let mut joined = Vec::from(first.as_bytes());
                for value in std::iter::once(second).chain(values) {
                    joined.push(b'\n');
                    joined.extend_from_slice(value.as_bytes());
                }
                Scope::new(joined)
            }
        }
    }
}

/// The scope is a typed request extension set by an earlier layer (an
/// authenticated account), formatted with `Display`; a request without it is
/// in the global scope.
pub(crate) struct ExtensionScope<T>(PhantomData<fn() -> T>);

impl<T> ExtensionScope<T> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> fmt::Debug for ExtensionScope<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ExtensionScope")
            .field(&std::any::type_name::<T>())
            .finish()
    }
}

impl<T> ScopeFn for ExtensionScope<T>
where
    T: Display + Send + Sync + 'static,
{
    fn scope(&self, parts: &Parts) -> Scope {
        parts
            .extensions
            .get::<T>()
            .map_or_else(Scope::global, |value| Scope::new(value.to_string()))
    }
}

/// The scope function the layer holds, whichever kind it is.
pub(crate) type SharedScopeFn = Arc<dyn ScopeFn>;

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(request: Request<()>) -> Parts {
        request.into_parts().0
    }

    #[test]
    fn header_scope_reads_the_header_or_falls_back_to_global() {
        let scope = HeaderScope(HeaderName::from_static("x-api-key"));
        let with = parts(
            Request::builder()
                .header("x-api-key", "k1")
                .body(())
                .unwrap(),
        );
        let without = parts(Request::builder().body(()).unwrap());
        assert_eq!(scope.scope(&with), Scope::new("k1"));
        assert_eq!(scope.scope(&without), Scope::global());
    }

    #[test]
    fn header_scope_keeps_repeated_values_apart() {
        let scope = HeaderScope(HeaderName::from_static("x-api-key"));
        let two = parts(
            Request::builder()
                .header("x-api-key", "a")
                .header("x-api-key", "b")
                .body(())
                .unwrap(),
        );
        let one = parts(
            Request::builder()
                .header("x-api-key", "a")
                .body(())
                .unwrap(),
        );
        assert_ne!(scope.scope(&two), scope.scope(&one));
    }

    #[test]
    fn extension_scope_formats_the_extension() {
        #[derive(Clone)]
        struct Tenant(u32);
        impl Display for Tenant {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "tenant-{}", self.0)
            }
        }
        let scope = ExtensionScope::<Tenant>::new();
        let mut request = Request::new(());
        assert_eq!(scope.scope(&parts(Request::new(()))), Scope::global());
        request.extensions_mut().insert(Tenant(7));
        assert_eq!(scope.scope(&parts(request)), Scope::new("tenant-7"));
    }

    #[test]
    fn debug_never_prints_the_scope_name() {
        let debug = format!("{:?}", Scope::new("sk_live_secret"));
        assert!(!debug.contains("secret"), "{debug}");
    }
}
