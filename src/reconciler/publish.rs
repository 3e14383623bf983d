//! The status write (one per reconcile, guarded by the cached resourceVersion) and Kubernetes Events.

use kube::api::PostParams;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use redis_fsm::{replication_conditions, step, Observation, Phase, ReplicationSummary, RoleLabel};
use tracing::{debug, info};

use super::context::Context;
use super::events::event;
use super::replication::TopologyPass;
use crate::api::RedisInstance;
use crate::converge::topology::{self};
use crate::error::Result;
use crate::events::EventReason;
use crate::status::{next_status, rfc3339};

/// What the passes on the pods found, for the status (`None`: not run in this reconcile, the status keeps what
/// it had).
#[derive(Default)]
pub(super) struct Passes {
    /// The replication topology.
    pub(super) topology: Option<TopologyPass>,
    /// Authentication.
    pub(super) auth: Option<crate::api::AuthStatus>,
    /// TLS (`Some(None)`: TLS is off).
    pub(super) tls: Option<Option<crate::api::TlsStatus>>,
    /// Backups (`Some(None)`: no `spec.backup`).
    pub(super) backup: Option<Option<crate::api::InstanceBackupStatus>>,
}

/// The one status write of a reconcile: runs the phase engine on `observation`, assembles the status with what
/// `passes` found, and writes it if it differs from the cached one. The write is synchronous and guarded by
/// the cached resourceVersion: a stale view gets a conflict instead of overwriting newer status, and the watch
/// event that made it stale triggers the next reconcile. Says whether the status now holds what was computed
/// (written, or already equal), which is what label moves must wait for. `at` is the reconcile's time
/// (`Snapshot::now`): conditions change and history entries are stamped with it.
pub(super) async fn publish_status(
    ri: &RedisInstance,
    ctx: &Context,
    observation: &Observation,
    passes: &Passes,
    at: k8s_openapi::jiff::Timestamp,
) -> Result<bool> {
    let (topology, auth, tls) = (
        passes.topology.as_ref(),
        passes.auth.as_ref(),
        passes.tls.as_ref(),
    );
    let previous = ri.phase();
    let now = rfc3339(at);
    let decision = step(previous, observation, &now);
    let mut status = next_status(
        ri.status.as_ref(),
        &decision,
        observation.generation,
        observation.statefulset.as_ref(),
        &now,
    );
    // The scale subresource's label selector (`kubectl scale`, autoscalers): the pods' selector labels.
    status.selector = crate::desired::metadata::selector_labels(&ri.name_any())
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",");
    if let Some(pass) = topology {
        topology::record_topology(&mut status, &pass.status);
        if let Some(restored) = &pass.restored {
            status.restore = Some(restored.clone());
        }
        status.pods = pass.pods.clone();
        let summary = ReplicationSummary {
            replicas: ri.spec.replicas,
            primary: pass
                .roles
                .iter()
                .find(|(_, role)| *role == Some(RoleLabel::Primary))
                .map(|(pod, _)| pod.as_str()),
            failover: pass.failover.as_deref(),
            pending: pass.pending.as_deref(),
        };
        let previous = ri
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        status.conditions.extend(replication_conditions(
            previous,
            &summary,
            observation.generation,
            &now,
        ));
    }
    let previous_conditions = ri
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let exposure = crate::status::exposure_condition(
        &ri.name_any(),
        &ri.spec,
        previous_conditions,
        observation.generation,
        &now,
    );
    let newly_exposed = exposure.as_ref().filter(|_| {
        !previous_conditions
            .iter()
            .any(|c| c.type_ == crate::status::EXPOSED_WITHOUT_TLS)
    });
    let exposure_note = newly_exposed.map(|c| c.message.clone());
    status.conditions.extend(exposure);
    if let Some(auth) = auth {
        status.auth = Some(auth.clone());
    }
    if let Some(backup) = &passes.backup {
        status.backup = backup.clone();
    }
    if let Some(tls) = tls {
        status.tls = tls.clone();
    }
    // Lag and last-seen times alone are no reason to write: a converged instance costs no writes.
    if ri.status.as_ref().map(topology::without_volatile)
        == Some(topology::without_volatile(&status))
    {
        debug!("status unchanged");
        return Ok(true);
    }
    let api: Api<RedisInstance> =
        Api::namespaced(ctx.client.clone(), &ri.namespace().unwrap_or_default());
    let mut updated = ri.clone();
    updated.status = Some(status);
    updated.metadata.managed_fields = None;
    match api
        .replace_status(&ri.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(_) => ctx
            .own_writes
            .status_written(&ObjectRef::from_obj(ri), ri.resource_version()),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            debug!("status write conflicted with a newer version; the next event reconciles again");
            return Ok(false);
        }
        Err(kube::Error::Api(e)) if e.code == 404 && observation.deletion_requested => {
            debug!("instance was deleted before its status was written");
            return Ok(false);
        }
        Err(e) => {
            ctx.metrics.record_api_error("replace_status", &e);
            return Err(e.into());
        }
    }
    if let Some(note) = exposure_note {
        event(
            ctx,
            ri,
            EventType::Warning,
            EventReason::ExposedWithoutTLS,
            "CheckExposure",
            note,
        )
        .await;
    }
    if let Some(transition) = &decision.transition {
        ctx.metrics
            .record_transition(transition.from, transition.to);
        info!(from = %transition.from, to = %transition.to, reason = %decision.reason, "phase transition");
        let type_ = if decision.phase == Phase::Failed {
            EventType::Warning
        } else {
            EventType::Normal
        };
        event(
            ctx,
            ri,
            type_,
            decision.reason.into(),
            "PhaseTransition",
            format!(
                "{} -> {}: {}",
                transition.from, transition.to, decision.message
            ),
        )
        .await;
    }
    Ok(true)
}
