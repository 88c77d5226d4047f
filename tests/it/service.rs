//! tower's conventions on the middleware: the wrapped service is reachable.

use tower::Layer;
use tower_idempotency::{IdempotencyLayer, MemoryStore};

/// A service that only says which one it is.
#[derive(Debug, Clone, PartialEq)]
struct Named(&'static str);

#[test]
fn the_wrapped_service_is_reachable_and_given_back() {
    let mut service = IdempotencyLayer::new(MemoryStore::new()).layer(Named("inner"));
    assert_eq!(service.get_ref(), &Named("inner"));
    *service.get_mut() = Named("swapped");
    assert_eq!(service.get_ref(), &Named("swapped"));
    assert_eq!(service.into_inner(), Named("swapped"));
}

#[cfg(feature = "client")]
#[test]
fn the_client_service_gives_its_client_back() {
    use tower_idempotency::client::SetIdempotencyKeyLayer;
    let mut client = SetIdempotencyKeyLayer::new().layer(Named("http"));
    *client.get_mut() = Named("other");
    assert_eq!(client.get_ref(), &Named("other"));
    assert_eq!(client.into_inner(), Named("other"));
}

#[test]
fn the_header_constants_name_the_headers() {
    assert_eq!(tower_idempotency::IDEMPOTENCY_KEY, "idempotency-key");
    assert_eq!(
        tower_idempotency::IDEMPOTENT_REPLAYED,
        "idempotent-replayed"
    );
}
