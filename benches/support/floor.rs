//! The floor: the least any idempotency layer must do, as a router of the
//! same shape as the bench app. Shared by the in-process benches, the HTTP
//! bench server and the peers' comparison, so that all measure one floor.

// Each program takes what it measures of this file.
#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

/// The no-key floor: a layer that passes the request through unchanged,
/// which is what any layer costs in axum. (A closure, not a function
/// pointer: a call through a pointer costs about
/// 100 instructions per request more, which is not the floor.)
pub(crate) fn identity_layer()
-> tower::util::MapRequestLayer<impl Fn(Request<Body>) -> Request<Body> + Clone> {
    tower::util::MapRequestLayer::new(|request: Request<Body>| request)
}

/// The no-key floor of a layer with shared state (a store, a config): the
/// identity layer holding an `Arc`. axum clones a route's service for every
/// request, so every request clones and drops it, from both workers.
pub(crate) fn identity_arc_layer()
-> tower::util::MapRequestLayer<impl Fn(Request<Body>) -> Request<Body> + Clone> {
    let shared = Arc::new(());
    tower::util::MapRequestLayer::new(move |request: Request<Body>| {
        std::hint::black_box(&shared);
        request
    })
}

/// What the floor keeps of a response: the fingerprint, the status and
/// the body.
type FloorRecord = ([u8; 32], StatusCode, Bytes);

/// The floor at `path`, answering 201 with `response`. A request with a key has its body buffered, its
/// method, path and body hashed (SHA-256) and its key digested (SHA-256);
/// then one map operation: a hit is answered from the map, a miss calls the
/// handler, reads its response and stores it. No lease, no fencing, no
/// headers kept, no concurrency control: a lower bound, not a design. (It
/// answers a request without a key itself, faster than the bare router's
/// handler: the no-key floor is an identity layer instead.)
pub(crate) fn floor_app(path: &str, response: &'static str) -> Router {
    let records: Arc<dashmap::DashMap<[u8; 32], FloorRecord>> = Arc::default();
    let service = tower::service_fn(move |request: Request<Body>| {
        let records = Arc::clone(&records);
        async move {
            let (parts, body) = request.into_parts();
            let Ok(body) = body.collect().await.map(|body| body.to_bytes()) else {
                return Ok::<_, std::convert::Infallible>(StatusCode::BAD_REQUEST.into_response());
            };
            let Some(key) = parts.headers.get("idempotency-key") else {
                return Ok((StatusCode::CREATED, response).into_response());
            };
            let mut hash = Sha256::new();
            hash.update(parts.method.as_str());
            hash.update(parts.uri.path());
            hash.update(&body);
            let fingerprint: [u8; 32] = hash.finalize().into();
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            if let Some(record) = records.get(&digest) {
                let (theirs, status, body) = record.value().clone();
                if theirs != fingerprint {
                    return Ok(StatusCode::CONFLICT.into_response());
                }
                return Ok((status, body).into_response());
            }
            let (parts, body) = (StatusCode::CREATED, response).into_response().into_parts();
            let Ok(body) = body.collect().await.map(|body| body.to_bytes()) else {
                return Ok(StatusCode::INTERNAL_SERVER_ERROR.into_response());
            };
            records.insert(digest, (fingerprint, parts.status, body.clone()));
            Ok(http::Response::from_parts(parts, Body::from(body)))
        }
    });
    Router::new().route_service(path, service).with_state(())
}
