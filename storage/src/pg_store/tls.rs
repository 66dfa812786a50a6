//! TLS to PostgreSQL, as the store URL's `sslmode` asks, with libpq's meanings:
//!
//! | `sslmode` | connection | server certificate |
//! |---|---|---|
//! | `disable` | plain TCP | — |
//! | `prefer` (default) | TLS if the server offers it, else plain TCP | not checked |
//! | `require` | TLS or nothing | not checked (checked against `sslrootcert` when one is given, as libpq does) |
//! | `verify-ca` | TLS or nothing | signed by a trusted root |
//! | `verify-full` | TLS or nothing | signed by a trusted root and naming the host connected to |
//!
//! The trusted roots are the PEM file `sslrootcert=PATH` names, or with
//! `sslrootcert=system` (the default for the `verify-*` modes) the Mozilla roots built
//! into the binary (`webpki-roots`). Client certificates are not supported. rustls with
//! the `ring` provider, as the adapters' HTTP client uses.
//!
//! `tokio-postgres` knows `disable`, `prefer` and `require` only and refuses the URL
//! parameter `sslrootcert`, so both are read here and the URL handed to it says
//! `require` for the `verify-*` modes, without `sslrootcert`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PgError;

/// What the URL's `sslmode` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(mode: &str) -> Result<SslMode, PgError> {
        Ok(match mode {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // `allow` (plain first, TLS only if refused) is not offered: a store either
            // wants TLS or does not.
            other => return Err(PgError::UnsupportedSslMode(other.to_owned())),
        })
    }

    /// What a connection of this mode is, for the start-up notes.
    pub(super) fn describe(self) -> &'static str {
        match self {
            SslMode::Disable => "connections in plain TCP (sslmode=disable)",
            SslMode::Prefer => {
                "connections over TLS when the server offers it, else plain TCP; the server is not authenticated (sslmode=prefer)"
            }
            SslMode::Require => "connections over TLS only (sslmode=require)",
            SslMode::VerifyCa => {
                "connections over TLS only, the server's certificate checked against the trusted roots (sslmode=verify-ca)"
            }
            SslMode::VerifyFull => {
                "connections over TLS only, the server's certificate checked against the trusted roots and the host name (sslmode=verify-full)"
            }
        }
    }

    /// The mode as `tokio-postgres` takes it.
    fn for_client(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

/// How a store connects: the client's configuration and the TLS connector (cloned for
/// every connection: the pool's, the feed's listener, the test hooks').
#[derive(Clone)]
pub(super) struct Connector {
    pub(super) tls: MakeRustlsConnect,
    pub(super) mode: SslMode,
}

/// Parses a store URL (or key-value string): the client configuration, and how to
/// connect. The error never quotes the URL (it may hold a password).
pub(super) fn parse(url: &str) -> Result<(tokio_postgres::Config, Connector), PgError> {
    let mode = match parameter(url, "sslmode") {
        Some(m) => SslMode::parse(&m.to_ascii_lowercase())?,
        None => SslMode::Prefer,
    };
    let root = parameter(url, "sslrootcert");
    let cleaned = without_parameters(url, &["sslmode", "sslrootcert"]);
    let mut config: tokio_postgres::Config = cleaned.parse().map_err(PgError::Url)?;
    config.ssl_mode(mode.for_client());
    let tls = client_config(mode, root.as_deref())?;
    Ok((
        config,
        Connector {
            tls: MakeRustlsConnect::new(tls),
            mode,
        },
    ))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(root: Option<&str>) -> Result<RootCertStore, PgError> {
    let mut store = RootCertStore::empty();
    match root {
        None | Some("system") => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| PgError::RootCertificate(format!("{path}: {e}")))?
                .collect::<Result<_, _>>()
                .map_err(|e| PgError::RootCertificate(format!("{path}: {e}")))?;
            if certs.is_empty() {
                return Err(PgError::RootCertificate(format!(
                    "{path} holds no PEM certificate"
                )));
            }
            for cert in certs {
                store
                    .add(cert)
                    .map_err(|e| PgError::RootCertificate(format!("{path}: {e}")))?;
            }
        }
    }
    Ok(store)
}

fn client_config(mode: SslMode, root: Option<&str>) -> Result<ClientConfig, PgError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::RootCertificate(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, root) {
        (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => Arc::new(Lenient {
            webpki: webpki(None)?,
            checks: Checks::Signatures,
        }),
        (SslMode::Require | SslMode::VerifyCa, root) => Arc::new(Lenient {
            webpki: webpki(root)?,
            checks: Checks::Chain,
        }),
        (SslMode::VerifyFull, root) => webpki(root)?,
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn webpki(root: Option<&str>) -> Result<Arc<WebPkiServerVerifier>, PgError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots(root)?), provider())
        .build()
        .map_err(|e| PgError::RootCertificate(e.to_string()))
}

/// What a mode short of `verify-full` checks of the server's certificate.
#[derive(Debug, Clone, Copy)]
enum Checks {
    /// `prefer`, and `require` without roots: nothing (what libpq does in these modes);
    /// the connection is encrypted, the server not authenticated.
    Signatures,
    /// `verify-ca` (and `require` with roots): the chain must lead to a trusted root; the
    /// name in the certificate is not compared with the host.
    Chain,
}

/// The webpki verifier, relaxed as `checks` says. The handshake's signatures are always
/// checked, so the handshake itself is sound.
#[derive(Debug)]
struct Lenient {
    webpki: Arc<WebPkiServerVerifier>,
    checks: Checks,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Checks::Signatures = self.checks {
            return Ok(ServerCertVerified::assertion());
        }
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The value of `name` in a URL (`…?name=…&…`) or key-value string (`name=…`).
pub(super) fn parameter(url: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=");
    let mut from = 0;
    while let Some(found) = url[from..].find(&needle) {
        let at = from + found;
        let before = url[..at].chars().next_back();
        if before.is_none_or(|c| c == '?' || c == '&' || c.is_whitespace()) {
            let rest = &url[at + needle.len()..];
            let end = rest
                .find(|c: char| c == '&' || c == '#' || c.is_whitespace())
                .unwrap_or(rest.len());
            return Some(percent_decode(rest[..end].trim_matches('\'')));
        }
        from = at + needle.len();
    }
    None
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The URL without the parameters `names` (URL query or key-value pairs).
fn without_parameters(url: &str, names: &[&str]) -> String {
    if let Some((base, query)) = url.split_once('?') {
        let (query, fragment) = match query.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (query, None),
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let key = pair.split('=').next().unwrap_or_default();
                !names.contains(&key)
            })
            .collect();
        let mut out = base.to_owned();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
        if let Some(f) = fragment {
            out.push('#');
            out.push_str(f);
        }
        return out;
    }
    if url.contains("://") {
        return url.to_owned();
    }
    // Key-value form: `name=value` pairs separated by spaces (values possibly quoted).
    let mut out = Vec::new();
    let mut rest = url.trim();
    while !rest.is_empty() {
        let end = if let Some(eq) = rest.find('=') {
            let after = &rest[eq + 1..];
            if let Some(quoted) = after.strip_prefix('\'') {
                eq + 2 + quoted.find('\'').map_or(quoted.len(), |q| q + 1)
            } else {
                eq + 1 + after.find(char::is_whitespace).unwrap_or(after.len())
            }
        } else {
            rest.find(char::is_whitespace).unwrap_or(rest.len())
        };
        let pair = &rest[..end.min(rest.len())];
        let key = pair.split('=').next().unwrap_or_default().trim();
        if !names.contains(&key) {
            out.push(pair);
        }
        rest = rest[end.min(rest.len())..].trim_start();
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_parameters_are_read_and_left_out_of_the_client_url() {
        let url = "postgres://u:pw@db:5432/studio?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5";
        assert_eq!(parameter(url, "sslmode").as_deref(), Some("verify-full"));
        assert_eq!(
            parameter(url, "sslrootcert").as_deref(),
            Some("/etc/ca.pem")
        );
        assert_eq!(
            without_parameters(url, &["sslmode", "sslrootcert"]),
            "postgres://u:pw@db:5432/studio?connect_timeout=5"
        );
        let kv = "host=db user=u sslmode='verify-ca' sslrootcert=/etc/ca.pem password=pw";
        assert_eq!(parameter(kv, "sslmode").as_deref(), Some("verify-ca"));
        assert_eq!(
            without_parameters(kv, &["sslmode", "sslrootcert"]),
            "host=db user=u password=pw"
        );
        assert_eq!(parameter("postgres://db/x", "sslmode"), None);
    }

    #[test]
    fn each_mode_parses_and_the_unknown_ones_are_refused() {
        for (url, mode) in [
            ("postgres://db/x", SslMode::Prefer),
            ("postgres://db/x?sslmode=disable", SslMode::Disable),
            ("postgres://db/x?sslmode=require", SslMode::Require),
            ("postgres://db/x?sslmode=VERIFY-CA", SslMode::VerifyCa),
            ("host=db sslmode=verify-full", SslMode::VerifyFull),
        ] {
            let (config, connector) = parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(connector.mode, mode, "{url}");
            assert_eq!(config.get_ssl_mode(), mode.for_client(), "{url}");
        }
        assert!(matches!(
            parse("postgres://u:secret-pw@db/x?sslmode=allow"),
            Err(PgError::UnsupportedSslMode(m)) if m == "allow"
        ));
        let missing = parse("postgres://db/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
        assert!(matches!(missing, Err(PgError::RootCertificate(_))));
    }
}
