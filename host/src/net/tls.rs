//! TLS: loading a certificate and key (or making a self-signed pair for
//! development) into a rustls server configuration with the ALPN list of the
//! HTTP versions served.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::HttpVersions;
use crate::routing::{HostPattern, normalize_host};

/// A TLS server configuration, ready for connections.
#[derive(Clone, Debug)]
pub struct Tls {
    pub(crate) config: Arc<ServerConfig>,
    /// The certificates chosen by SNI, when they are.
    pub(crate) sni: Option<SniCerts>,
}

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("failed to read '{}'", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no usable PEM certificate.
    #[error("no PEM certificate found in '{}'", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The certificate file's PEM is broken.
    #[error("failed to parse the certificates in '{}'", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The key file holds no usable PEM private key.
    #[error("no PEM private key (PKCS#8, PKCS#1 or SEC1) found in '{}'", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the pair: an unsupported key, or a key that does not
    /// belong to the certificate.
    #[error(
        "the private key in '{}' cannot be used with the certificate in '{}'",
        key.display(),
        cert.display()
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration.
    #[error("failed to configure TLS")]
    Config(#[source] rustls::Error),
    /// A self-signed certificate could not be made.
    #[error("failed to make a self-signed certificate")]
    SelfSigned(#[source] crate::BoxError),
}

impl Tls {
    /// Loads a PEM certificate chain (leaf first) and its PEM private key
    /// (RSA, ECDSA or Ed25519), offering the ALPN protocols of `versions`.
    pub fn from_pem_files(
        cert: &Path,
        key: &Path,
        versions: HttpVersions,
    ) -> Result<Self, TlsError> {
        let (chain, private_key) = read_pem_files(cert, key)?;
        Self::new(chain, private_key, versions).map_err(|source| TlsError::Mismatch {
            cert: cert.into(),
            key: key.into(),
            source,
        })
    }

    /// A configuration that picks its certificate by the name the client
    /// asks for (SNI) from `certs`, which can be replaced while serving.
    pub fn with_sni(certs: SniCerts, versions: HttpVersions) -> Result<Self, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(certs.clone()));
        config.alpn_protocols = versions.alpn();
        Ok(Self {
            config: Arc::new(config),
            sni: Some(certs),
        })
    }
}

/// Reads a PEM certificate chain and its PEM private key.
fn read_pem_files(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.into(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::BadCertificate {
            path: cert.into(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert.into() });
    }
    let private_key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| TlsError::BadKey {
            path: key.into(),
            source,
        })?;
    Ok((chain, private_key))
}

impl Tls {
    /// A fresh self-signed certificate for `localhost` and `127.0.0.1`, for
    /// development. Returns it with its SHA-256 fingerprint
    /// (`AB:CD:...`) and its PEM text.
    pub fn self_signed(versions: HttpVersions) -> Result<(Self, String, String), TlsError> {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(names)
                .map_err(|e| TlsError::SelfSigned(e.into()))?;
        let fingerprint = fingerprint(cert.der());
        let pem = cert.pem();
        let key = PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
        let tls = Self::new(vec![cert.der().clone()], key, versions)
            .map_err(|e| TlsError::SelfSigned(e.into()))?;
        Ok((tls, fingerprint, pem))
    }

    /// The configuration of HTTP/3 connections: the same certificates
    /// (the same resolver, so SNI and certificates replaced while serving
    /// apply to QUIC too), ALPN `h3` only, and no 0-RTT (early data could
    /// be replayed). QUIC itself allows TLS 1.3 only.
    pub(crate) fn quic(&self) -> Result<quinn::crypto::rustls::QuicServerConfig, TlsError> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"h3".to_vec()];
        config.max_early_data_size = 0;
        quinn::crypto::rustls::QuicServerConfig::try_from(config)
            .map_err(|error| TlsError::Config(rustls::Error::General(error.to_string())))
    }

    /// The rustls configuration, for serving TLS outside catshost (the
    /// benchmarks' native server).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        versions: HttpVersions,
    ) -> Result<Self, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        // A client offering none of these is refused in the handshake
        // (no_application_protocol); one offering no ALPN at all gets
        // HTTP/1.1, or HTTP/2 when only h2 is served.
        config.alpn_protocols = versions.alpn();
        Ok(Self {
            config: Arc::new(config),
            sni: None,
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate and its private key, checked to belong together.
#[derive(Clone, Debug)]
pub struct CertKey(Arc<CertifiedKey>);

impl CertKey {
    /// Loads a PEM certificate chain (leaf first) and its PEM private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let (chain, private_key) = read_pem_files(cert, key)?;
        CertifiedKey::from_der(chain, private_key, &provider())
            .map(|certified| Self(Arc::new(certified)))
            .map_err(|source| TlsError::Mismatch {
                cert: cert.into(),
                key: key.into(),
                source,
            })
    }
}

/// Certificates chosen by the name a client asks for (SNI): the one of the
/// most specific matching name (a name over a wildcard, a longer wildcard
/// over a shorter one), else the default; with neither the handshake fails.
/// Cheap to clone: clones share the certificates, and
/// [`SniCerts::replace`] changes them for every clone.
#[derive(Clone, Debug, Default)]
pub struct SniCerts {
    table: Arc<ArcSwap<SniTable>>,
}

#[derive(Debug, Default)]
struct SniTable {
    default: Option<Arc<CertifiedKey>>,
    /// Most specific first.
    names: Vec<(HostPattern, Arc<CertifiedKey>)>,
}

impl SniCerts {
    /// Replaces every certificate: handshakes from now on use the new ones.
    pub fn replace(&self, default: Option<CertKey>, names: Vec<(HostPattern, CertKey)>) {
        let mut names: Vec<_> = names
            .into_iter()
            .filter(|(pattern, _)| *pattern != HostPattern::Any)
            .map(|(pattern, cert)| (pattern, cert.0))
            .collect();
        names.sort_by_key(|(pattern, _)| match pattern {
            HostPattern::Exact(_) => (0, 0),
            HostPattern::Wildcard(suffix) => (1, usize::MAX - suffix.len()),
            HostPattern::Any => (2, 0),
        });
        self.table.store(Arc::new(SniTable {
            default: default.map(|cert| cert.0),
            names,
        }));
    }

    /// Whether a client asking for `host` would get the certificate a
    /// client asking for `sni` got (the same default, say).
    pub(crate) fn same_certificate(&self, sni: Option<&str>, host: &str) -> bool {
        match (self.choose(sni), self.choose(Some(host))) {
            (Some(a), Some(b)) => Arc::ptr_eq(&a, &b),
            (a, b) => a.is_none() && b.is_none(),
        }
    }

    /// The certificate for a client asking for `name`.
    fn choose(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        let name = name.map(normalize_host);
        name.and_then(|name| {
            table
                .names
                .iter()
                .find(|(pattern, _)| pattern.matches(&name))
                .map(|(_, cert)| cert.clone())
        })
        .or_else(|| table.default.clone())
    }
}

impl ResolvesServerCert for SniCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(hello.server_name())
    }
}

/// The SHA-256 fingerprint of a DER certificate, as colon-separated hex.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
