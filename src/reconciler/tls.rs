//! The reconcile's TLS steps: check the Secret `spec.tls` names (read by name) before anything is applied, work
//! out how the operator reaches each pod (over TLS with the trust of the Secret it was started with, or plain
//! text), and bring running servers to a renewed certificate (see [`crate::tls`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::EventType;
use kube::ResourceExt;
use redis_fsm::{Reason, SpecProblem};
use rustls::pki_types::UnixTime;
use tracing::{debug, info};

use super::context::Snapshot;
use super::{event, Context};
use crate::api::{RedisInstance, TlsStatus};
use crate::converge::tls as reload;
use crate::converge::topology::endpoint;
use crate::error::Result;
use crate::events::EventReason;
use crate::observe::secrets::Keys;
use crate::tls::connect::Trust;
use crate::tls::{self, Material};

/// The checked TLS Secret, and the operator's trust by pod address.
pub(super) struct Prepared {
    /// The Secret's material, with TLS on.
    pub material: Option<Material>,
    /// By pod address: how to reach the pods started with TLS.
    pub trust: BTreeMap<String, Trust>,
}

/// The keys of a TLS Secret the operator reads (the pods mount these three and nothing else).
const TLS_KEYS: [&str; 3] = [tls::CERT_KEY, tls::KEY_KEY, tls::CA_KEY];

/// Checks the TLS Secret; a problem is returned as the spec problem to report (nothing is changed then).
pub(super) async fn prepare(
    ri: &RedisInstance,
    ctx: &Context,
    snapshot: &Snapshot,
) -> Result<std::result::Result<Prepared, SpecProblem>> {
    let namespace = ri.namespace().unwrap_or_default();
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(snapshot.now.as_second()).unwrap_or_default(),
    ));
    let pods = &snapshot.pods;
    // Every TLS Secret this pass may read: the spec's, and those running pods were started with.
    let mut secrets: BTreeMap<String, Option<Arc<Secret>>> = BTreeMap::new();
    let wanted = ri
        .spec
        .tls
        .iter()
        .map(|spec| spec.secret_name.clone())
        .chain(
            pods.iter()
                .filter_map(|pod| tls::pod_started_with(pod.annotations()).map(|(_, s)| s)),
        );
    for secret in wanted {
        if secrets.contains_key(&secret) {
            continue;
        }
        let found = ctx
            .secrets
            .get(&namespace, &secret, Keys::Only(&TLS_KEYS))
            .await
            .inspect_err(|e| ctx.metrics.record_api_error("get", e))?;
        secrets.insert(secret, found);
    }
    let read = |secret: &str| secrets.get(secret).cloned().flatten();
    let material = match &ri.spec.tls {
        None => None,
        Some(spec) => {
            let secret = read(&spec.secret_name);
            match tls::resolve(spec, secret.as_deref(), now) {
                Ok(material) => Some(material),
                Err(problem) => {
                    return Ok(Err(SpecProblem {
                        reason: Reason::TlsSecretInvalid,
                        message: format!(
                            "{problem}; the operator changes nothing until it is fixed (spec.tls)"
                        ),
                    }))
                }
            }
        }
    };
    let started: Vec<tls::StartedWith> = pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .map(|pod| {
            let secret = tls::pod_started_with(pod.annotations()).map(|(_, secret)| secret);
            (pod.name_any(), secret)
        })
        .collect();
    let ca_of = |secret: &str| {
        let found = read(secret)?;
        let spec = crate::api::TlsSpec {
            secret_name: secret.to_string(),
            client_auth: Default::default(),
        };
        tls::resolve(&spec, Some(&found), now).ok().map(|m| m.ca)
    };
    if let Some(message) = tls::change_problem(material.as_ref(), ri.spec.replicas, &started, ca_of)
    {
        return Ok(Err(SpecProblem {
            reason: Reason::TlsChangeRefused,
            message,
        }));
    }
    // Pods keep serving what they were started with until the rolling update replaces them, also after TLS
    // was turned off or moved to another Secret.
    let mut trusts: BTreeMap<(&'static str, String), Trust> = BTreeMap::new();
    let mut trust = BTreeMap::new();
    for pod in pods {
        let (Some((client_auth, secret)), Some(at)) =
            (tls::pod_started_with(pod.annotations()), endpoint(pod))
        else {
            continue;
        };
        let found = trusts
            .entry((client_auth.as_str(), secret.clone()))
            .or_insert_with(|| {
                let own = material.as_ref().filter(|m| m.secret == secret).cloned();
                let started_with = own.map(Ok).unwrap_or_else(|| {
                    let spec = crate::api::TlsSpec {
                        secret_name: secret.clone(),
                        client_auth,
                    };
                    let found = read(&secret);
                    tls::resolve(&spec, found.as_deref(), now).map_err(|e| e.to_string())
                });
                started_with
                    .and_then(|m| Trust::new(&m, client_auth))
                    .unwrap_or_else(|why| {
                        debug!(%secret, %why, "pods started with this TLS Secret cannot be reached");
                        Trust::unavailable(format!(
                            "started with TLS Secret {secret}, which is not usable: {why}"
                        ))
                    })
            });
        trust.insert(at.host, found.clone());
    }
    Ok(Ok(Prepared { material, trust }))
}

/// Brings running servers to the Secret's certificate. Returns `status.tls` (`None` with TLS off) and whether
/// some pod does not serve it yet.
pub(super) async fn reload_pass(
    ri: &RedisInstance,
    ctx: &Context,
    snapshot: &Snapshot,
    prepared: &Prepared,
    access: &crate::redis::Access,
) -> (Option<TlsStatus>, bool) {
    let (Some(material), Some(spec)) = (&prepared.material, &ri.spec.tls) else {
        return (None, false);
    };
    let pods = &snapshot.pods;
    let leadership = ctx.leadership.clone();
    let outcome = reload::converge(pods, material, access, || leadership.is_held()).await;
    for (pod, _) in outcome.done.iter().filter(|(_, reloaded)| *reloaded) {
        info!(%pod, secret = %material.secret, "TLS certificate reloaded");
    }
    if !outcome.everywhere() {
        let pending: Vec<String> = outcome
            .pending
            .iter()
            .map(|(pod, why)| format!("{pod}: {}", why.why()))
            .collect();
        debug!(pending = %pending.join("; "), "TLS certificate not served everywhere");
    }
    let record = reload::record(
        material,
        spec.client_auth,
        &outcome,
        usize::try_from(ri.spec.replicas).unwrap_or(0),
        ri.status.as_ref().and_then(|s| s.tls.as_ref()),
    );
    if let Some(note) = record.event {
        event(
            ctx,
            ri,
            EventType::Normal,
            EventReason::CertificateReloaded,
            "TLS",
            note,
        )
        .await;
    }
    (Some(record.status), record.pending)
}
