//! Tenant scopes: one tenant never sees another's records.

use crate::common::{counted_post, orders_app, send};
use axum::body::Body;
use http::{Request, StatusCode};
use tower_idempotency::{IdempotencyLayer, MemoryStore, Scope};

fn from(api_key: &str, key: &str, body: &'static str) -> Request<Body> {
    Request::post("/orders")
        .header("x-api-key", api_key)
        .header("idempotency-key", key)
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn the_same_key_from_two_scopes_runs_twice_and_never_leaks() {
    let layer = IdempotencyLayer::new(MemoryStore::new())
        .scope_by_header(http::HeaderName::from_static("x-api-key"));
    let (app, runs) = orders_app(layer);
    let a = send(&app, from("tenant-a", "k1", "secret of a")).await;
    // B reuses A's key with another body: no mismatch, since B never learns the
    // key exists; B's request simply runs.
    let b = send(&app, from("tenant-b", "k1", "b")).await;
    assert_eq!(b.status, StatusCode::CREATED);
    assert!(!b.is_replay());
    assert!(!String::from_utf8_lossy(&b.body).contains("secret of a"));
    // With A's exact body too.
    let b_same = send(&app, from("tenant-b2", "k1", "secret of a")).await;
    assert!(!b_same.is_replay());
    assert_ne!(b_same.body, a.body);
    // Each tenant's retry replays its own.
    assert_eq!(
        send(&app, from("tenant-a", "k1", "secret of a")).await.body,
        a.body
    );
    assert_eq!(send(&app, from("tenant-b", "k1", "b")).await.body, b.body);
    assert_eq!(runs.count(), 3);
}

#[tokio::test]
async fn without_the_header_requests_share_the_global_scope() {
    let layer = IdempotencyLayer::new(MemoryStore::new())
        .scope_by_header(http::HeaderName::from_static("x-api-key"));
    let (app, runs) = orders_app(layer);
    send(&app, crate::common::post_json("k1", "a")).await;
    assert!(
        send(&app, crate::common::post_json("k1", "a"))
            .await
            .is_replay()
    );
    assert!(!send(&app, from("tenant-a", "k1", "a")).await.is_replay());
    assert_eq!(runs.count(), 2);
}

#[derive(Clone)]
struct Account(u32);

impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "acct-{}", self.0)
    }
}

#[tokio::test]
async fn a_typed_extension_from_an_auth_layer_scopes_keys() {
    let (handler, runs) = counted_post(|n| async move { format!("run {n}") });
    let app = axum::Router::new()
        .route("/orders", handler)
        .layer(IdempotencyLayer::new(MemoryStore::new()).scope_by_extension::<Account>())
        // Runs before the idempotency layer: the "authentication".
        .layer(axum::middleware::map_request(
            |mut request: Request<Body>| async move {
                let account = request.headers()["x-account"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                request.extensions_mut().insert(Account(account));
                request
            },
        ));
    let as_account = |account: &str| {
        Request::post("/orders")
            .header("x-account", account)
            .header("idempotency-key", "k1")
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(send(&app, as_account("1")).await.body, "run 1");
    assert_eq!(send(&app, as_account("2")).await.body, "run 2");
    assert_eq!(send(&app, as_account("1")).await.body, "run 1");
    assert_eq!(runs.count(), 2);
}

#[tokio::test]
async fn a_custom_scope_function() {
    let layer = IdempotencyLayer::new(MemoryStore::new()).scope(|parts: &http::request::Parts| {
        Scope::new(parts.uri.query().unwrap_or_default().to_owned())
    });
    let (handler, runs) = counted_post(|n| async move { format!("run {n}") });
    let app = axum::Router::new().route("/orders", handler).layer(layer);
    let post = |uri: &str| crate::common::request("POST", uri, Some("k1"), "");
    send(&app, post("/orders?t=1")).await;
    send(&app, post("/orders?t=2")).await;
    assert!(send(&app, post("/orders?t=1")).await.is_replay());
    assert_eq!(runs.count(), 2);
}
