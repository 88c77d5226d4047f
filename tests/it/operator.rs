//! The operator API through the layer: a key of one tenant looked up and
//! forgotten by (scope, key), as an admin route would.

use http::HeaderName;
use tower_idempotency::store::{KeyDigest, KeyState, Store};
use tower_idempotency::{IdempotencyKey, IdempotencyLayer, MemoryStore, Scope};

use crate::common::{orders_app, post_json, send};

fn digest(tenant: &str, key: &str) -> KeyDigest {
    KeyDigest::new(
        &Scope::new(tenant.to_owned()),
        &IdempotencyKey::parse(key.as_bytes()).unwrap(),
    )
}

fn as_tenant(tenant: &'static str, key: &str, body: &'static str) -> axum::extract::Request {
    let mut request = post_json(key, body);
    request
        .headers_mut()
        .insert("x-api-key", tenant.parse().unwrap());
    request
}

#[tokio::test]
async fn a_tenants_key_is_inspected_and_forgotten_by_scope_and_key() {
    let store = MemoryStore::new();
    let layer =
        IdempotencyLayer::new(store.clone()).scope_by_header(HeaderName::from_static("x-api-key"));
    let (app, runs) = orders_app(layer);
    assert_eq!(
        send(&app, as_tenant("tenant-a", "k1", "tea")).await.status,
        201
    );

    match store.inspect(&digest("tenant-a", "k1")).await.unwrap() {
        KeyState::Completed { status, .. } => assert_eq!(status, 201),
        other => panic!("expected completed, got {other:?}"),
    }
    // Another tenant's key of the same name is another key.
    assert_eq!(
        store.inspect(&digest("tenant-b", "k1")).await.unwrap(),
        KeyState::Absent
    );
    assert!(
        send(&app, as_tenant("tenant-a", "k1", "tea"))
            .await
            .is_replay()
    );
    assert_eq!(runs.count(), 1);

    assert!(store.forget(&digest("tenant-a", "k1")).await.unwrap());
    let again = send(&app, as_tenant("tenant-a", "k1", "tea")).await;
    assert_eq!(again.status, 201);
    assert!(!again.is_replay(), "a forgotten key runs afresh");
    assert_eq!(runs.count(), 2);
}
