//! TLS to PostgreSQL, read from the URL's libpq parameters: `sslmode`
//! (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`),
//! `sslrootcert` (a PEM file, or `system` for the machine's store),
//! `sslcert` and `sslkey` (a client certificate). rustls does the
//! handshake, for every connection the host makes: its own, each guest
//! role's, `migrate`'s and the cancels.
//!
//! As libpq: `prefer` uses TLS when the server offers it, `require`
//! insists on it, neither checks the certificate (`require` with an
//! `sslrootcert` checks it as `verify-ca` does); `verify-ca` checks that
//! the certificate is signed by the CA, `verify-full` also that it names
//! the host. Unlike libpq, the default is `prefer` only for a Unix socket
//! or a loopback host; any other host gets `verify-full`, so a host that
//! talks to a database across a network does so over TLS it checked,
//! unless its URL says otherwise.

use anyhow::{Context, Result, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// What the URL asks of TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(text: &str) -> Result<Mode> {
        Ok(match text {
            "disable" => Mode::Disable,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            "allow" => bail!(
                "sslmode=allow is not supported: use prefer (TLS when the server offers it) or disable"
            ),
            other => bail!(
                "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
            ),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: whether TLS is asked for, and whether
    /// it is a must. What is checked of the certificate is this module's.
    pub fn ssl_mode(self) -> SslMode {
        match self {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }
}

/// The URL's TLS parameters.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub mode: Option<String>,
    pub root: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// How a database's connections do TLS, built once: certificate files
/// are read when the URL is.
#[derive(Clone)]
pub struct Tls {
    pub mode: Mode,
    config: Option<Arc<ClientConfig>>,
}

impl Tls {
    /// From the URL's parameters and its hosts (which decide the default).
    pub fn new(params: &Params, hosts: &[Host]) -> Result<Tls> {
        let local = hosts.iter().all(|host| match host {
            Host::Unix(_) => true,
            Host::Tcp(name) => {
                name.eq_ignore_ascii_case("localhost")
                    || name
                        .trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        });
        let mut mode = match &params.mode {
            Some(mode) => Mode::parse(mode)?,
            None if local => Mode::Prefer,
            None => Mode::VerifyFull,
        };
        // As libpq: `require` with a CA given checks the CA.
        if mode == Mode::Require && params.root.is_some() {
            mode = Mode::VerifyCa;
        }
        if mode == Mode::Disable {
            return Ok(Tls { mode, config: None });
        }
        // ring's provider: no post-quantum key exchange (which PostgreSQL's
        // OpenSSL rarely offers yet), and no cmake or assembler to build.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = match mode {
            Mode::VerifyCa | Mode::VerifyFull => {
                let roots = Arc::new(roots(params.root.as_deref(), mode)?);
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    roots,
                    provider.clone(),
                )
                .build()
                .context("cannot use the CA certificates of sslrootcert")?;
                Some(webpki)
            }
            _ => None,
        };
        let verifier = Arc::new(Verifier {
            provider: provider.clone(),
            webpki,
            any_name: mode == Mode::VerifyCa,
        });
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("no TLS version to speak")?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&params.cert, &params.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .with_context(|| {
                        format!("cannot read the client certificate sslcert={cert}")
                    })?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .with_context(|| format!("cannot read the client key sslkey={key}"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .context("sslcert and sslkey are not a certificate and its key")?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => bail!("sslcert and sslkey go together: give both, or neither"),
        };
        Ok(Tls {
            mode,
            config: Some(Arc::new(config)),
        })
    }
}

/// The CA certificates a `verify-*` mode checks against: `sslrootcert`'s
/// file, the machine's store (`system`), or libpq's default file.
fn roots(root: Option<&str>, mode: Mode) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    let file = match root {
        Some("system") => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                bail!("sslrootcert=system: the machine's certificate store has no certificate");
            }
            return Ok(store);
        }
        Some(file) => PathBuf::from(file),
        None => std::env::var_os("HOME")
            .map(|home| Path::new(&home).join(".postgresql/root.crt"))
            .filter(|file| file.is_file())
            .with_context(|| {
                format!(
                    "sslmode={} checks the database's certificate against its CA: give it with sslrootcert=/path/to/ca.pem (or sslrootcert=system for the machine's store)",
                    mode.name()
                )
            })?,
    };
    let certs = CertificateDer::pem_file_iter(&file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read sslrootcert={}", file.display()))?;
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        bail!("sslrootcert={} holds no certificate", file.display());
    }
    Ok(store)
}

/// Why a connection failed, in words naming the cause, when TLS is why.
pub(super) fn explain(e: &tokio_postgres::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(error) = source {
        if let Some(rustls) = error.downcast_ref::<rustls::Error>() {
            return Some(describe(rustls));
        }
        if let Some(inner) = error
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(describe(inner));
        }
        source = error.source();
    }
    let text = std::error::Error::source(e).map(ToString::to_string);
    (text.as_deref() == Some("server does not support TLS")).then(|| {
        "the database does not speak TLS, which sslmode asks for: enable ssl on the server, or (on a network you trust) add sslmode=disable to the URL".to_owned()
    })
}

fn describe(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the database's certificate is not for the host the URL names ({error}): connect by a name the certificate has, or use sslmode=verify-ca"
        ),
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the database's certificate is not signed by a CA of sslrootcert: give the CA that signed it".to_owned()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => format!("the database's certificate has expired ({error})"),
        other => format!("TLS with the database failed: {other}"),
    }
}

/// How a server's certificate is checked: not at all for `require` and
/// `prefer` (as libpq; the handshake's signature still is), against the
/// CA whatever its name for `verify-ca`, fully for `verify-full`.
#[derive(Debug)]
struct Verifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    any_name: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.any_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl MakeTlsConnect<tokio_postgres::Socket> for Tls {
    type Stream = Stream;
    type TlsConnect = Handshake;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<Handshake> {
        // A Unix socket has no name; its server never takes TLS, so the
        // handshake below is never asked for.
        Ok(Handshake {
            config: self.config.clone(),
            host: host.to_owned(),
        })
    }
}

/// One connection's handshake.
pub struct Handshake {
    config: Option<Arc<ClientConfig>>,
    host: String,
}

impl TlsConnect<tokio_postgres::Socket> for Handshake {
    type Stream = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

    fn connect(self, socket: tokio_postgres::Socket) -> Self::Future {
        Box::pin(async move {
            let config = self
                .config
                .ok_or_else(|| io::Error::other("TLS is off (sslmode=disable)"))?;
            let name = ServerName::try_from(self.host.trim_matches(['[', ']']).to_owned())
                .map_err(|_| {
                    io::Error::other(format!("`{}` is not a host name TLS can check", self.host))
                })?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, socket)
                .await?;
            Ok(Stream(Box::new(stream)))
        })
    }
}

/// A connection's TLS stream.
pub struct Stream(Box<tokio_rustls::client::TlsStream<tokio_postgres::Socket>>);

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl TlsStream for Stream {
    /// None: SCRAM without channel binding (`-PLUS`), as libpq's default
    /// `channel_binding=prefer` allows; the certificate check is what
    /// keeps a man in the middle out.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(params: &Params, host: Host) -> Result<Mode> {
        Tls::new(params, &[host]).map(|tls| tls.mode)
    }

    #[test]
    fn the_default_is_prefer_on_this_machine_and_verify_full_across_a_network() {
        let none = Params::default();
        assert_eq!(
            mode(&none, Host::Unix("/run/pg".into())).unwrap(),
            Mode::Prefer
        );
        for local in ["localhost", "127.0.0.1", "::1", "[::1]"] {
            assert_eq!(
                mode(&none, Host::Tcp(local.into())).unwrap(),
                Mode::Prefer,
                "{local}"
            );
        }
        // Across a network, the CA is asked for (and found nowhere here).
        let e = Tls::new(&none, &[Host::Tcp("db.internal".into())]);
        if !Path::new(&std::env::var("HOME").unwrap_or_default())
            .join(".postgresql/root.crt")
            .exists()
        {
            let e = e.err().expect("verify-full needs a CA");
            assert!(format!("{e:#}").contains("sslrootcert"), "{e:#}");
        }
        let system = Params {
            root: Some("system".into()),
            ..Params::default()
        };
        if let Ok(found) = mode(&system, Host::Tcp("db.internal".into())) {
            assert_eq!(found, Mode::VerifyFull);
        }
    }

    #[test]
    fn require_with_a_ca_checks_it_and_bad_values_are_named() {
        let params = |mode: &str| Params {
            mode: Some(mode.into()),
            ..Params::default()
        };
        assert_eq!(
            mode(&params("require"), Host::Tcp("db".into())).unwrap(),
            Mode::Require
        );
        assert_eq!(
            mode(&params("disable"), Host::Tcp("db".into())).unwrap(),
            Mode::Disable
        );
        for bad in ["allow", "verify", "REQUIRE", ""] {
            let e = mode(&params(bad), Host::Tcp("db".into())).unwrap_err();
            assert!(e.to_string().contains("sslmode"), "{bad}: {e}");
        }
        let half = Params {
            cert: Some("/nowhere.crt".into()),
            ..params("require")
        };
        assert!(
            Tls::new(&half, &[Host::Tcp("db".into())])
                .err()
                .unwrap()
                .to_string()
                .contains("go together")
        );
        let missing = Params {
            root: Some("/nowhere/ca.pem".into()),
            ..params("require")
        };
        let e = Tls::new(&missing, &[Host::Tcp("db".into())]).err().unwrap();
        assert!(format!("{e:#}").contains("/nowhere/ca.pem"), "{e:#}");
    }
}
