//! The operator's TLS handshakes with Redis servers: the chain is verified against the instance's `ca.crt`,
//! the host name is not (servers are reached by pod address, which certificates do not name), and the
//! certificate the server presented is kept, so the renewal pass can tell which one it serves.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::Material;
use crate::api::ClientAuth;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn webpki_verifier(
    ca: &[CertificateDer<'static>],
) -> Result<Arc<WebPkiServerVerifier>, ChainError> {
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots
            .add(cert.clone())
            .map_err(|e| ChainError::BadCa(format!("not a usable CA certificate ({e})")))?;
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| ChainError::BadCa(format!("not a usable CA certificate ({e})")))
}

fn is_name_error(error: &rustls::Error) -> bool {
    matches!(
        error,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

fn is_time_error(error: &rustls::Error) -> bool {
    matches!(
        error,
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. }
        )
    )
}

/// Why a certificate chain is not usable.
#[derive(Debug)]
pub enum ChainError {
    /// `ca.crt` holds no usable trust anchor.
    BadCa(String),
    /// The leaf does not chain to `ca.crt`, or is no server certificate.
    Untrusted(String),
}

/// Checks that `chain` (leaf first) is a server certificate signed by `ca`, whatever names it holds. An expired
/// or not yet valid certificate is a warning (returned), not an error.
pub fn verify_chain(
    ca: &[CertificateDer<'static>],
    chain: &[CertificateDer<'static>],
    now: UnixTime,
) -> Result<Option<String>, ChainError> {
    let verifier = webpki_verifier(ca)?;
    let name = ServerName::try_from("redis.invalid").expect("a valid DNS name");
    match verifier.verify_server_cert(&chain[0], &chain[1..], &name, &[], now) {
        Ok(_) => Ok(None),
        Err(e) if is_name_error(&e) => Ok(None),
        Err(e) if is_time_error(&e) => Ok(Some(format!(
            "the certificate in {} is not valid now ({e}): clients refuse it until it is renewed",
            super::CERT_KEY
        ))),
        Err(e) => Err(ChainError::Untrusted(e.to_string())),
    }
}

/// Verifies the chain against the CA, ignoring the name (see the module documentation).
#[derive(Debug)]
struct AnyNameVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            // webpki checks the name only once the chain and its validity passed.
            Err(e) if is_name_error(&e) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What the operator trusts and presents towards the servers started with one TLS Secret, or why it cannot
/// reach them: a server that speaks TLS is never sent anything in plain text (the login included).
#[derive(Clone)]
pub struct Trust {
    config: Result<Arc<rustls::ClientConfig>, String>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust").finish_non_exhaustive()
    }
}

impl Trust {
    /// Trusts `material`'s CA; presents its certificate when the servers require client certificates.
    pub fn new(material: &Material, client_auth: ClientAuth) -> Result<Trust, String> {
        let verifier = webpki_verifier(&material.ca).map_err(|e| format!("{e:?}"))?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyNameVerifier { inner: verifier }));
        let config = match (client_auth, material.key()) {
            (ClientAuth::Required, Some(key)) => builder
                .with_client_auth_cert(material.chain.clone(), key)
                .map_err(|e| e.to_string())?,
            _ => builder.with_no_client_auth(),
        };
        Ok(Trust {
            config: Ok(Arc::new(config)),
        })
    }

    /// A trust that refuses every connection, for servers started with TLS whose Secret is gone or unusable.
    pub fn unavailable(why: String) -> Trust {
        Trust { config: Err(why) }
    }

    /// Connects to `host:port` and makes the TLS handshake; returns the stream and the certificate the server
    /// presented (its leaf).
    pub async fn handshake(
        &self,
        host: &str,
        port: u16,
    ) -> std::io::Result<(TlsStream<TcpStream>, Option<CertificateDer<'static>>)> {
        let name = super::server_name(host).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a host name")
        })?;
        let config = self
            .config
            .clone()
            .map_err(|why| std::io::Error::new(std::io::ErrorKind::NotConnected, why))?;
        let tcp = TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        let stream = TlsConnector::from(config).connect(name, tcp).await?;
        let served = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.clone().into_owned());
        Ok((stream, served))
    }
}
