//! The client crates the networked stores are built on, re-exported, so that
//! a pool or a connection of your own ([`PostgresStore::new`](super::PostgresStore::new),
//! [`RedisStore::new`](super::RedisStore::new), [`RedisStore::from_cluster`](super::RedisStore::from_cluster),
//! [`PostgresStore::connect_with_tls`](super::PostgresStore::connect_with_tls))
//! is made with the very versions the stores take: `redis` 1, `tokio-postgres`
//! 0.7, `deadpool-postgres` 0.14, and for TLS `rustls` 0.23 and
//! `tokio-postgres-rustls` 0.14.

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use deadpool_postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis;
#[cfg(any(feature = "redis-rustls", feature = "postgres-rustls"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "redis-rustls", feature = "postgres-rustls")))
)]
pub use rustls;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use tokio_postgres;
#[cfg(feature = "postgres-rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres-rustls")))]
pub use tokio_postgres_rustls;
