//! The layer on a plain hyper server, no framework: a tower `service_fn`
//! behind `IdempotencyLayer`, served by hyper's HTTP/1 connection.
//!
//! ```text
//! cargo run --example hyper_server
//! curl -i -X POST localhost:3001/ -H 'Idempotency-Key: k1' -d 'hello'
//! ```

use std::convert::Infallible;
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::{ServiceBuilder, service_fn};
use tower_idempotency::server::RequestBody;
use tower_idempotency::{IdempotencyLayer, MemoryStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "hyper example listening on http://{}",
        listener.local_addr()?
    );
    let counter = Arc::new(AtomicU64::new(0));
    // The handler: the layer hands it the request body, read whole, as a
    // `RequestBody<Incoming>`.
    let handler = service_fn(move |request: Request<RequestBody<Incoming>>| {
        let counter = counter.clone();
        async move {
            let body = request.into_body().collect().await.map(|b| b.to_bytes());
            let body = body.unwrap_or_default();
            let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
            let answer = format!("run {n}: {} bytes\n", body.len());
            let mut response = Response::new(Full::new(Bytes::from(answer)));
            *response.status_mut() = StatusCode::CREATED;
            Ok::<_, Infallible>(response)
        }
    });
    let service = ServiceBuilder::new()
        .layer(IdempotencyLayer::new(MemoryStore::new()))
        .service(handler);
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                eprintln!("connection error: {error}");
            }
        });
    }
}
