//! The operator's TLS handshakes with Redis servers: the chain is verified against the instance's `ca.crt`,
//! the host name is not (servers are reached by pod address, which certificates do not name), and the
//! certificate the server presented is kept, so the renewal pass can tell which one it serves.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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

/// Reads one DER element at the start of `input`: its tag, its content and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        let bytes = rest.get(..n).filter(|_| (1..=4).contains(&n))?;
        let len = bytes
            .iter()
            .fold(0usize, |len, b| (len << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

/// When a certificate became valid (its `notBefore`), read from its DER.
pub fn not_before(cert: &[u8]) -> Option<UnixTime> {
    let (_, certificate, _) = der(cert)?;
    let (_, tbs, _) = der(certificate)?;
    let (tag, _, after_version) = der(tbs)?;
    // `[0] version` is optional (absent in v1 certificates).
    let rest = if tag == 0xa0 { after_version } else { tbs };
    let (_, _, rest) = der(rest)?; // serialNumber
    let (_, _, rest) = der(rest)?; // signature algorithm
    let (_, _, rest) = der(rest)?; // issuer
    let (_, validity, _) = der(rest)?;
    let (tag, time, _) = der(validity)?;
    let text = std::str::from_utf8(time).ok()?;
    let full = match tag {
        // UTCTime: YYMMDDHHMMSSZ, years 1950 to 2049.
        0x17 => {
            let century = if text.get(..2)? >= "50" { "19" } else { "20" };
            format!("{century}{text}")
        }
        // GeneralizedTime: YYYYMMDDHHMMSSZ.
        0x18 => text.to_string(),
        _ => return None,
    };
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        full.get(0..4)?,
        full.get(4..6)?,
        full.get(6..8)?,
        full.get(8..10)?,
        full.get(10..12)?,
        full.get(12..14)?
    );
    let at: k8s_openapi::jiff::Timestamp = iso.parse().ok()?;
    Some(UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(at.as_second()).ok()?,
    )))
}

/// Verifies that `end_entity` chains to the CA and is a server certificate, whatever its name and dates. An
/// expired (or not yet valid) certificate is checked as of the moment it became valid: webpki stops at the
/// dates before it looks at the issuer, and the operator must keep reaching servers whose certificate expired
/// (to reload a renewed one). Returns whether the dates were wrong now.
fn verify_any_name(
    verifier: &WebPkiServerVerifier,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<Option<rustls::Error>, rustls::Error> {
    let at = |time| {
        match verifier.verify_server_cert(end_entity, intermediates, server_name, &[], time) {
            Ok(_) => Ok(()),
            // webpki checks the name only once the chain and its validity passed.
            Err(e) if is_name_error(&e) => Ok(()),
            Err(e) => Err(e),
        }
    };
    match at(now) {
        Ok(()) => Ok(None),
        Err(e) if is_time_error(&e) => {
            let valid_from = not_before(end_entity).ok_or_else(|| e.clone())?;
            at(UnixTime::since_unix_epoch(Duration::from_secs(
                valid_from.as_secs() + 1,
            )))?;
            Ok(Some(e))
        }
        Err(e) => Err(e),
    }
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
    match verify_any_name(&verifier, &chain[0], &chain[1..], &name, now) {
        Ok(None) => Ok(None),
        Ok(Some(e)) => Ok(Some(format!(
            "the certificate in {} is not valid now ({e}): clients and replicas refuse it until it is renewed",
            super::CERT_KEY
        ))),
        Err(e) => Err(ChainError::Untrusted(e.to_string())),
    }
}

/// Verifies the chain against the CA, ignoring the name (see the module documentation) and, for a certificate
/// signed by the CA, its dates (see [`verify_any_name`]).
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
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        verify_any_name(&self.inner, end_entity, intermediates, server_name, now)
            .map(|_| ServerCertVerified::assertion())
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

/// A TLS acceptor presenting `material`'s certificate, the one every server of the instance serves: a replica
/// verifying its primary against `ca.crt` accepts the operator when it serves a restore as a primary would.
pub fn acceptor(material: &Material) -> Result<tokio_rustls::TlsAcceptor, String> {
    let key = material
        .key()
        .ok_or_else(|| "tls.key does not parse".to_string())?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(material.chain.clone(), key)
        .map_err(|e| e.to_string())?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
