//! TLS to the stores, against real servers: a private `redis-server` with a
//! TLS port and a certificate signed by a CA made for the test (openssl), and
//! the PostgreSQL at `DATABASE_URL` (whose self-signed certificate is what
//! `sslmode=require` is for).

use std::path::PathBuf;
use std::process::Command;

use libtest_mimic::Trial;

use crate::common::{orders_app, post_json, send};
use crate::harness::{Flavor, trials};
use tower_idempotency::IdempotencyLayer;

/// A CA and a certificate for `localhost` and `127.0.0.1` it signed, in a
/// directory of their own.
struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    fn make(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tower-idempotency-tls-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .expect("openssl on the PATH");
            assert!(status.success(), "openssl {args:?}");
        };
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=tower-idempotency test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ]);
        Self { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A private Redis with a plain port (for the fixture's own checks) and a
/// TLS port serving `certificates`.
#[cfg(feature = "redis-rustls")]
async fn tls_redis(certificates: &Certificates) -> (crate::redis_store::PrivateRedis, u16) {
    let tls_port = free_port().to_string();
    let (cert, key, ca) = (
        certificates.path("server.crt"),
        certificates.path("server.key"),
        certificates.path("ca.crt"),
    );
    let redis = crate::redis_store::PrivateRedis::start_with(
        None,
        &[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ],
    )
    .await;
    (redis, tls_port.parse().unwrap())
}

/// `rediss://` through `connect`, certificate not checked (`#insecure`):
/// the layer runs a key once and replays it.
#[cfg(feature = "redis-rustls")]
async fn a_rediss_url_connects_over_tls() {
    use tower_idempotency::store::RedisStore;
    let certificates = Certificates::make("redis");
    let (_redis, tls_port) = tls_redis(&certificates).await;
    let url = format!("rediss://127.0.0.1:{tls_port}/#insecure");
    let store = RedisStore::connect(&url).await.unwrap();
    let (app, runs) = orders_app(IdempotencyLayer::new(store));
    assert_eq!(send(&app, post_json("k1", "tea")).await.status, 201);
    assert!(send(&app, post_json("k1", "tea")).await.is_replay());
    assert_eq!(runs.count(), 1);

    // A plain client at the TLS port gets no answer it can read.
    let plain = RedisStore::connect(&format!("redis://127.0.0.1:{tls_port}")).await;
    assert!(plain.is_err(), "plain Redis protocol at the TLS port");
}

/// `rediss://` with the certificate checked: refused while the CA is not
/// trusted; two example instances trusting it (`SSL_CERT_FILE`, which the
/// platform's root store reads) make one order per key.
#[cfg(feature = "redis-rustls")]
async fn a_verified_rediss_url_trusts_only_its_ca() {
    use tower_idempotency::store::RedisStore;
    let certificates = Certificates::make("redis-verified");
    let (_redis, tls_port) = tls_redis(&certificates).await;
    let url = format!("rediss://localhost:{tls_port}");
    let untrusted = RedisStore::connect(&url).await;
    let error = untrusted.expect_err("a certificate of an unknown CA is refused");
    let chain = format!("{error} {:?}", std::error::Error::source(&error));
    assert!(chain.to_lowercase().contains("certificate"), "{chain}");

    let ca = certificates.path("ca.crt");
    let prefix = format!("tower-idempotency-test:tls:{}:", std::process::id());
    crate::common::example::two_instances_make_one_order_per_key(&[
        ("REDIS_URL", url.as_str()),
        ("SSL_CERT_FILE", ca.as_str()),
        ("KEY_PREFIX", prefix.as_str()),
    ])
    .await;
}

/// The store's connections as `pg_stat_ssl` sees them: how many carry
/// `application_name`, and how many of those are encrypted.
#[cfg(feature = "postgres-rustls")]
async fn connections_of(application_name: &str) -> (i64, i64) {
    let (client, connection) = tokio_postgres::connect(
        &crate::postgres_store::database_url(),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a
                JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = $1",
            &[&application_name],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[cfg(feature = "postgres-rustls")]
fn with_parameters(url: &str, parameters: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{parameters}")
}

/// `sslmode=require` through `connect`: every connection of the store is
/// encrypted (the server's certificate is self-signed, and not checked, as
/// libpq does for `require`); `sslmode=disable` is not.
#[cfg(feature = "postgres-rustls")]
async fn sslmode_require_connects_over_tls() {
    use tower_idempotency::store::PostgresStore;
    let url = crate::postgres_store::database_url();
    for (mode, encrypted) in [("require", true), ("disable", false)] {
        let name = format!("ti_tls_{mode}_{}", std::process::id());
        let store_url = with_parameters(&url, &format!("sslmode={mode}&application_name={name}"));
        let store = PostgresStore::connect(&store_url).await.unwrap();
        let table = crate::postgres_store::unique_table(&format!("tls_{mode}"));
        let store = store.table(&table).unwrap();
        store.migrate().await.unwrap();
        let (app, runs) = orders_app(IdempotencyLayer::new(store));
        assert_eq!(send(&app, post_json("k1", "tea")).await.status, 201);
        assert!(send(&app, post_json("k1", "tea")).await.is_replay());
        assert_eq!(runs.count(), 1);
        let (connections, tls) = connections_of(&name).await;
        assert!(
            connections >= 1,
            "{mode}: the store's connections are listed"
        );
        let expected = if encrypted { connections } else { 0 };
        assert_eq!(tls, expected, "{mode}: {tls} of {connections} encrypted");
        crate::postgres_store::sql(&format!("DROP TABLE {table}")).await;
    }
}

/// Tests that need `redis-server` and `openssl`.
pub fn redis_trials() -> Vec<Trial> {
    #[cfg(feature = "redis-rustls")]
    {
        trials![
            "tls";
            Flavor::CurrentThread => a_rediss_url_connects_over_tls,
            Flavor::CurrentThread => a_verified_rediss_url_trusts_only_its_ca,
        ]
    }
    #[cfg(not(feature = "redis-rustls"))]
    {
        Vec::new()
    }
}

/// Tests that need the PostgreSQL at `DATABASE_URL`.
pub fn postgres_trials() -> Vec<Trial> {
    #[cfg(feature = "postgres-rustls")]
    {
        trials!["tls"; Flavor::CurrentThread => sslmode_require_connects_over_tls]
    }
    #[cfg(not(feature = "postgres-rustls"))]
    {
        Vec::new()
    }
}
