//! Certificate renewal without restarts: Redis reads its TLS files again on `CONFIG SET tls-cert-file` (the
//! same path; it reloads the certificate, the key and the CA together). The files in a pod lag the Secret
//! (the kubelet syncs Secret volumes periodically, file by file here), so one reload is not trusted: each pass
//! observes which certificate every server serves, in the operator's own handshake, and reloads the servers
//! that serve another one until they serve the Secret's.
//!
//! [`converge`] is the I/O; [`record`] the pure decision of what to record and announce.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::api::{ClientAuth, TlsStatus};
use redis_fsm::Endpoint;

use crate::converge::{address_of, each_live_pod, login, login_fresh, PassOutcome, Pending};
use crate::redis::Access;
use crate::tls::{pod_started_with, Material, CERT_KEY, TLS_DIR};

/// The outcome of one pass: per pod that serves the certificate, whether this pass reloaded it.
pub type Outcome = PassOutcome<bool>;

/// Whether a pod's server serves the Secret's certificate: what it presented equals `tls.crt`'s leaf.
pub fn serves(material: &Material, served: Option<&[u8]>) -> bool {
    served == Some(material.leaf().as_ref())
}

/// Brings every pod's server (pods being deleted left out) to `material`'s certificate: observes, reloads
/// (only while `leading()`), observes again.
pub async fn converge(
    pods: &[Arc<Pod>],
    material: &Material,
    access: &Access,
    leading: impl Fn() -> bool,
) -> Outcome {
    let leading = &leading;
    each_live_pod(pods, |pod| async move {
        match pod_started_with(pod.annotations()) {
            None => Err(Pending::NotYet(
                "started without TLS; the rolling update replaces it".to_string(),
            )),
            Some((_, secret)) if secret != material.secret => Err(Pending::NotYet(format!(
                "started with Secret {secret}; the rolling update replaces it"
            ))),
            Some(_) => converge_server(&address_of(pod)?, material, access, leading).await,
        }
    })
    .await
}

/// Returns whether the server was reloaded, or why it does not serve the certificate.
async fn converge_server(
    at: &Endpoint,
    material: &Material,
    access: &Access,
    leading: impl Fn() -> bool,
) -> Result<bool, Pending> {
    let node = login(at, access).await?;
    if serves(material, node.served_certificate().map(AsRef::as_ref)) {
        return Ok(false);
    }
    // A kept connection shows the certificate of its own handshake: look through a new one before reloading.
    drop(node);
    let node = login_fresh(at, access).await?;
    if serves(material, node.served_certificate().map(AsRef::as_ref)) {
        return Ok(false);
    }
    if !leading() {
        return Err(Pending::NotYet(
            "not reloaded: leadership of the operator is not proven".into(),
        ));
    }
    // Refused while the files in the pod do not match (a new certificate beside the old key): Redis keeps
    // serving the old pair, and the next pass tries again.
    node.config_set("tls-cert-file", &format!("{TLS_DIR}/{CERT_KEY}"))
        .await
        .map_err(|e| {
            Pending::NotYet(format!(
                "reload refused ({e}); the files in the pod may lag the Secret"
            ))
        })?;
    // The certificate applies to new connections: look through a new one (after closing this one: the client
    // holds a bounded number of connections at once, and a pass never waits for a second while holding one).
    drop(node);
    let node = login_fresh(at, access).await?;
    if serves(material, node.served_certificate().map(AsRef::as_ref)) {
        Ok(true)
    } else {
        Err(Pending::NotYet(
            "serves an older certificate: the files in the pod lag the Secret".into(),
        ))
    }
}

/// What a pass leads to: the status to record, and the Event note when a renewal came into force on every pod.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    /// `status.tls`.
    pub status: TlsStatus,
    /// The note of the `CertificateReloaded` Event, once per renewal.
    pub event: Option<String>,
    /// Whether some pod does not serve the certificate yet (look again soon).
    pub pending: bool,
}

/// Decides the status from the pass: `servedSecretVersion` moves to the Secret's version once every pod (at
/// least `replicas`) serves its certificate; a move from an earlier version is a renewal, announced once.
pub fn record(
    material: &Material,
    client_auth: ClientAuth,
    outcome: &Outcome,
    replicas: usize,
    previous: Option<&TlsStatus>,
) -> Record {
    let previous_version = previous
        .filter(|p| p.secret_name == material.secret)
        .and_then(|p| p.served_secret_version.clone());
    let mut message = crate::tls::status_message(material, client_auth);
    let everywhere = outcome.everywhere() && outcome.done.len() >= replicas;
    let mut event = None;
    let served_secret_version = if everywhere {
        if previous_version.is_some() && previous_version != material.version {
            event = Some(format!(
                "the certificate of Secret {} (resourceVersion {}) is served by every pod, without restarts",
                material.secret,
                material.version.as_deref().unwrap_or_default()
            ));
        }
        material.version.clone()
    } else {
        if !outcome.pending.is_empty() {
            message.push_str(&format!(
                "; not serving the current certificate yet: {}",
                outcome.pending_pods().join(", ")
            ));
        }
        previous_version
    };
    Record {
        status: TlsStatus {
            secret_name: material.secret.clone(),
            served_secret_version,
            message,
        },
        event,
        pending: !outcome.pending.is_empty(),
    }
}
