//! The store's connections to PostgreSQL over TLS, on a real server started by this test
//! binary with `ssl = on` and a certificate from a certificate authority the test makes
//! (rcgen): what each `sslmode` connects to and what it refuses.
//!
//! That a store's connections are encrypted is read from the server's own
//! `pg_stat_ssl`, for the sessions the store opened (`application_name`).

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use social_studio_storage::{MasterKey, PgConfig, PgStore, StoreError};
use tokio_postgres::NoTls;

extern crate self as social_studio;
#[path = "../../src/wait.rs"]
mod wait;

#[path = "../../tests/support/node.rs"]
#[allow(dead_code)]
mod node;
#[path = "../../tests/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use postgres::Postgres;

/// A certificate authority, and a server certificate it signed for `names` (DNS names,
/// or IP addresses).
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki(names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "social-studio test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    for name in names {
        params.subject_alt_names.push(match name.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*name).try_into().unwrap()),
        });
    }
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Writes the server's certificate and key where the server's user can read them (the
/// key only by it, as PostgreSQL insists), and starts a server with TLS on.
async fn tls_server(dir: &Path, pki: &Pki) -> Postgres {
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    std::fs::write(&cert, &pki.cert_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    for path in [dir, cert.as_path(), key.as_path()] {
        Postgres::give_to_server_user(path).unwrap();
    }
    Postgres::start_with(&[
        ("ssl", "on"),
        ("ssl_cert_file", cert.to_str().unwrap()),
        ("ssl_key_file", key.to_str().unwrap()),
    ])
    .await
    .unwrap_or_else(|why| panic!("{why}"))
}

/// `url` (the harness's, `postgres://…@127.0.0.1:PORT/postgres`) with `host` for its
/// host and `query` added.
fn with(url: &str, host: &str, query: &str) -> String {
    let url = url.replacen("@127.0.0.1:", &format!("@{host}:"), 1);
    format!("{url}?{query}")
}

/// Opens a store on `url`, always with the same master key: the first store records its
/// check value in the database, the others must match it.
async fn open(url: &str) -> Result<PgStore, StoreError> {
    static KEY: std::sync::OnceLock<MasterKey> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(MasterKey::generate);
    PgStore::open_with_key(&PgConfig::new(url), key).await
}

/// How many of the store's sessions on the server are encrypted, and how many it has.
async fn encrypted_sessions(server: &Postgres) -> (i64, i64) {
    let (client, connection) = tokio_postgres::connect(server.url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.application_name LIKE 'social-studio%'",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

fn refused_for_the_certificate(result: Result<PgStore, StoreError>) -> String {
    match result {
        Ok(_) => panic!("a server whose certificate does not hold was trusted"),
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains("certificate") || text.contains("Certificate"),
                "the refusal does not say it is the certificate: {text}"
            );
            text
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sslmode_connects_as_libpq_would_and_refuses_what_does_not_hold() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = pki(&["127.0.0.1", "localhost"]);
    let server = tls_server(dir.path(), &trusted).await;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &trusted.ca_pem).unwrap();
    let ca = ca.to_str().unwrap();

    // require: encrypted, the server not authenticated.
    let store = open(&with(server.url(), "127.0.0.1", "sslmode=require"))
        .await
        .unwrap();
    let (encrypted, all) = encrypted_sessions(&server).await;
    assert!(
        all > 0 && encrypted == all,
        "{encrypted} of {all} sessions encrypted"
    );
    drop(store);

    // verify-full: the chain and the name hold, by IP address and by host name.
    for host in ["127.0.0.1", "localhost"] {
        let url = with(
            server.url(),
            host,
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        );
        open(&url)
            .await
            .unwrap_or_else(|e| panic!("verify-full to {host}: {e}"));
    }

    // Another authority's roots: refused, in both verifying modes.
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, pki(&["127.0.0.1"]).ca_pem).unwrap();
    for mode in ["verify-ca", "verify-full"] {
        let url = with(
            server.url(),
            "127.0.0.1",
            &format!("sslmode={mode}&sslrootcert={}", other.display()),
        );
        refused_for_the_certificate(open(&url).await);
    }
    // The built-in public roots do not know the test's authority either.
    refused_for_the_certificate(
        open(&with(server.url(), "127.0.0.1", "sslmode=verify-full")).await,
    );
    drop(server);

    // A certificate for another name: verify-ca (chain only) connects, verify-full
    // refuses.
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = pki(&["db.internal"]);
    let server = tls_server(dir.path(), &elsewhere).await;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &elsewhere.ca_pem).unwrap();
    let ca = ca.display();
    open(&with(
        server.url(),
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await
    .expect("verify-ca checks the chain, not the name");
    refused_for_the_certificate(
        open(&with(
            server.url(),
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ))
        .await,
    );
    // prefer (the default) takes TLS where the server offers it.
    let store = open(server.url()).await.unwrap();
    let (encrypted, all) = encrypted_sessions(&server).await;
    assert!(
        all > 0 && encrypted == all,
        "{encrypted} of {all} sessions encrypted"
    );
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_tls_is_refused_where_tls_is_required_and_used_in_plain_where_preferred() {
    let server = Postgres::start().await;
    for mode in ["require", "verify-full"] {
        match open(&with(server.url(), "127.0.0.1", &format!("sslmode={mode}"))).await {
            Ok(_) => panic!("sslmode={mode} connected to a server without TLS"),
            Err(e) => {
                let text = format!("{e} {e:?}");
                assert!(
                    text.to_lowercase().contains("tls"),
                    "sslmode={mode}: {text}"
                );
            }
        }
    }
    let store = open(server.url())
        .await
        .expect("prefer falls back to plain TCP");
    let (encrypted, all) = encrypted_sessions(&server).await;
    assert!(
        all > 0 && encrypted == 0,
        "{encrypted} of {all} sessions encrypted"
    );
    drop(store);
}
