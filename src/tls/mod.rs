//! TLS (`spec.tls`): where the pods find the certificate of the user's `kubernetes.io/tls` Secret (what they
//! need is added to the pod template by [`crate::desired::tls`]), whether that Secret is usable, and what the
//! operator trusts when it connects. Everything here is pure; the reconciler reads the Secret from its watch
//! cache, [`connect`] makes the operator's handshakes, and
//! [`crate::converge::tls`] brings running servers to a renewed certificate without restarts.
//!
//! With TLS on, Redis listens with TLS only (`--port 0 --tls-port 6379`), replicas reach their primary over TLS
//! (`tls-replication yes`, set when the operator points them at it) and verify it against `ca.crt`. Pods are
//! reached by address, while certificates (cert-manager's) name DNS names: the operator verifies the chain
//! against `ca.crt` and pins the served certificate during renewal, but does not check the host name, as
//! Redis' own replication does not.

pub mod connect;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::api::{ClientAuth, TlsSpec};
use crate::names::TLS_ANNOTATION;

/// Where the TLS Secret is mounted in the Redis and exporter containers.
pub const TLS_DIR: &str = "/etc/redis-tls";
/// The certificate (key of the Secret): the leaf first, then any intermediates.
pub const CERT_KEY: &str = "tls.crt";
/// The private key of the certificate.
pub const KEY_KEY: &str = "tls.key";
/// The CA certificate(s) that signed it, and that clients and replicas verify against.
pub const CA_KEY: &str = "ca.crt";

impl ClientAuth {
    /// Redis' `tls-auth-clients` value.
    pub fn redis_value(self) -> &'static str {
        match self {
            ClientAuth::None => "no",
            ClientAuth::Optional => "optional",
            ClientAuth::Required => "yes",
        }
    }

    /// The name in the spec (`None`, `Optional`, `Required`).
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::None => "None",
            ClientAuth::Optional => "Optional",
            ClientAuth::Required => "Required",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [ClientAuth::None, ClientAuth::Optional, ClientAuth::Required]
            .into_iter()
            .find(|c| c.as_str() == text)
    }
}

/// The Secret of the user's that `spec.tls` names (a change of it reconciles the instance).
pub fn referenced_secret(spec: &crate::api::RedisInstanceSpec) -> Option<String> {
    spec.tls.as_ref().map(|t| t.secret_name.clone())
}

/// The value of [`TLS_ANNOTATION`] for `spec`.
pub fn template_annotation(spec: &TlsSpec) -> String {
    format!("{}/{}", spec.client_auth.as_str(), spec.secret_name)
}

/// How a pod was started, from its annotations: `None` when it serves plain text.
pub fn pod_started_with(annotations: &BTreeMap<String, String>) -> Option<(ClientAuth, String)> {
    let (client_auth, secret) = annotations.get(TLS_ANNOTATION)?.split_once('/')?;
    Some((ClientAuth::parse(client_auth)?, secret.to_string()))
}

/// Why the TLS Secret cannot be used. Messages name the Secret and key, never key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsProblem {
    /// `spec.tls.secretName` names a Secret that does not exist.
    #[error("Secret {0} (spec.tls.secretName) does not exist")]
    MissingSecret(String),
    /// The Secret lacks a key.
    #[error("Secret {secret} has no key {key}")]
    MissingKey {
        /// The Secret.
        secret: String,
        /// The key.
        key: &'static str,
    },
    /// A key does not hold what it should (PEM that does not parse, no certificate, no private key, a key
    /// that does not belong to the certificate, a certificate the CA did not sign).
    #[error("key {key} of Secret {secret}: {why}")]
    Invalid {
        /// The Secret.
        secret: String,
        /// The key.
        key: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// A usable TLS Secret: the PEM texts the operator connects with, and the certificate the servers must serve.
#[derive(Clone, PartialEq, Eq)]
pub struct Material {
    /// The Secret.
    pub secret: String,
    /// Its `resourceVersion`.
    pub version: Option<String>,
    /// `ca.crt`, DER, each certificate.
    pub ca: Vec<CertificateDer<'static>>,
    /// `tls.crt`, DER: the leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// `tls.key`, PEM (kept as text: `PrivateKeyDer` cannot be cloned or compared).
    pub key_pem: Vec<u8>,
    /// Something a client would notice but that is no reason to stop (an expired certificate).
    pub warning: Option<String>,
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Material")
            .field("secret", &self.secret)
            .field("version", &self.version)
            .field("warning", &self.warning)
            .finish_non_exhaustive()
    }
}

impl Material {
    /// The certificate every server should serve (the first of `tls.crt`).
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// `tls.key`, parsed (it parsed when the material was made).
    pub fn key(&self) -> Option<PrivateKeyDer<'static>> {
        PrivateKeyDer::from_pem_slice(&self.key_pem).ok()
    }
}

fn secret_bytes(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(value) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(value.0.clone());
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.as_bytes().to_vec())
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM ({e})"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// Checks the Secret `spec.tls` names and returns what the operator needs from it. `now` decides whether the
/// certificate has expired, which is only a warning: the instance keeps being managed (failovers included)
/// while the user renews it.
pub fn resolve(
    spec: &TlsSpec,
    secret: Option<&Secret>,
    now: UnixTime,
) -> Result<Material, TlsProblem> {
    let name = spec.secret_name.clone();
    let secret = secret.ok_or_else(|| TlsProblem::MissingSecret(name.clone()))?;
    let get = |key: &'static str| {
        secret_bytes(secret, key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| TlsProblem::MissingKey {
                secret: name.clone(),
                key,
            })
    };
    let invalid = |key: &'static str| {
        let secret = name.clone();
        move |why: String| TlsProblem::Invalid {
            secret: secret.clone(),
            key,
            why,
        }
    };
    let (cert_pem, key_pem, ca_pem) = (get(CERT_KEY)?, get(KEY_KEY)?, get(CA_KEY)?);
    let chain = certificates(&cert_pem).map_err(invalid(CERT_KEY))?;
    let ca = certificates(&ca_pem).map_err(invalid(CA_KEY))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        invalid(KEY_KEY)(format!(
            "holds no PEM private key (PKCS#1, PKCS#8 or SEC1): {e}"
        ))
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| invalid(KEY_KEY)(format!("not a usable private key ({e})")))?;
    rustls::sign::CertifiedKey::new(chain.clone(), signer)
        .keys_match()
        .map_err(|e| {
            invalid(KEY_KEY)(format!(
                "does not belong to the certificate in {CERT_KEY} ({e})"
            ))
        })?;
    let warning = connect::verify_chain(&ca, &chain, now).map_err(|e| match e {
        connect::ChainError::Untrusted(why) => invalid(CERT_KEY)(format!(
            "not a server certificate signed by {CA_KEY}: {why}"
        )),
        connect::ChainError::BadCa(why) => invalid(CA_KEY)(why),
    })?;
    Ok(Material {
        secret: name,
        version: secret.metadata.resource_version.clone(),
        ca,
        chain,
        key_pem,
        warning,
    })
}

/// How one running pod serves: its name and, when it was started with TLS, the Secret.
pub type StartedWith = (String, Option<String>);

/// Why the pods cannot roll to `desired` (`None`: TLS off): a replica started in one mode cannot replicate
/// from a primary in the other (a TLS replica cannot reach a plain-text port, a plain-text one has no
/// certificate to reach a TLS port, and a switchover between them fails the same way), and neither can one
/// that does not trust the CA of its primary's certificate. With more than one replica such a change would
/// stop the rolling update at its first replica, so it is refused; at `replicas` 0 or 1 there is no
/// replication to break. `ca_of` gives the CA of another Secret a pod was started with (`None`: unusable).
pub fn change_problem(
    desired: Option<&Material>,
    replicas: i32,
    pods: &[StartedWith],
    ca_of: impl Fn(&str) -> Option<Vec<CertificateDer<'static>>>,
) -> Option<String> {
    if replicas <= 1 {
        return None;
    }
    let conflict = pods.iter().find_map(|(pod, started)| {
        match (desired, started) {
            (None, Some(_)) => Some(format!("{pod} serves TLS and the spec turns it off")),
            (Some(_), None) => Some(format!("{pod} serves plain text and the spec turns TLS on")),
            (Some(m), Some(secret)) if *secret != m.secret && ca_of(secret).as_ref() != Some(&m.ca) => {
                Some(format!(
                    "{pod} serves the certificate of Secret {secret}, whose {CA_KEY} differs from that of \
                     Secret {} (or is gone)",
                    m.secret
                ))
            }
            _ => None,
        }
    })?;
    Some(format!(
        "{conflict}: replicas cannot replicate across that change, so it cannot roll through an instance \
         with replicas. Scale to replicas: 1, change spec.tls, then scale up again (or keep the CA: put both \
         CAs in ca.crt while the certificates change). Nothing was changed"
    ))
}

/// The name the operator's handshakes give for a host: its address (no SNI is sent for one).
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(host.to_string()).ok()
}

/// The status summary.
pub fn status_message(material: &Material, client_auth: ClientAuth) -> String {
    let mut message = format!(
        "clients and replication use TLS with the certificate of Secret {} (plain text is off; client \
         certificates: {})",
        material.secret,
        client_auth.as_str()
    );
    if let Some(warning) = &material.warning {
        message.push_str("; ");
        message.push_str(warning);
    }
    message
}

#[cfg(test)]
mod tests;
