//! The app the in-process benches measure, and how they call it: an axum
//! `Router` whose `POST /orders` reads the body and answers 201 with ~100
//! bytes, called with `tower::ServiceExt::oneshot`.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// The handler's answer: ~100 bytes.
pub(crate) const RESPONSE: &str =
    r#"{"id":12345,"status":"created","amount":1999,"currency":"eur","note":"a benchmark order"}"#;

/// A JSON body of exactly `len` bytes (empty for 0).
pub(crate) fn json_body(len: usize) -> Bytes {
    if len < 16 {
        return Bytes::from(" ".repeat(len));
    }
    let mut json = String::from(r#"{"items":["#);
    while json.len() + 40 < len {
        json.push_str(r#"{"sku":"abc","qty":1},"#);
    }
    json.push_str(r#"{"sku":"end"}]}"#);
    while json.len() < len {
        json.push(' ');
    }
    Bytes::from(json)
}

/// The app: `POST /orders` answers at once, `POST /hang` never answers (it
/// keeps a key in flight for the in-flight scenario).
pub(crate) fn app() -> Router {
    Router::new()
        .route(
            "/orders",
            post(|_body: Bytes| async { (StatusCode::CREATED, RESPONSE) }),
        )
        .route("/hang", post(std::future::pending::<StatusCode>))
}

pub(crate) fn request(path: &str, key: Option<&str>, body: &Bytes) -> Request<Body> {
    let mut builder = Request::post(path).header("content-type", "application/json");
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    match builder.body(Body::from(body.clone())) {
        Ok(request) => request,
        Err(error) => panic!("request: {error}"),
    }
}

pub(crate) async fn call(app: &Router, request: Request<Body>) {
    let Ok(response) = app.clone().oneshot(request).await;
    let _ = response.into_body().collect().await;
}
