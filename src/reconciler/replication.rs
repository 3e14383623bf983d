//! The replication pass: observe every pod's server, decide the one next topology step, carry it out
//! while leading, report it, and move the role labels after the status is written.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use redis_fsm::{
    confirmed_primary, decide, desired_roles, label_patches, replication_pending, rollout_progress,
    PodReplication, Reason, RoleLabel, RolloutPolicy, SpecProblem, TopologyAction, TopologyPolicy,
    TopologyStatus, WaitReason,
};
use tracing::{debug, info, warn};

use super::context::{Context, RolloutMode, Snapshot};
use super::events::event;
use crate::api::{PrimaryUpdateStrategy, RedisInstance};
use crate::backup::restore;
use crate::converge::switchover;
use crate::converge::topology::{self};
use crate::error::Result;
use crate::events::EventReason;
use crate::names::{BOOTSTRAP_PRIMARY_ANNOTATION, ROLE_LABEL};
use crate::redis::Access;

/// One pass of the replication topology: what was observed, decided and done, and what to record.
pub(super) struct TopologyPass {
    /// The topology status to record (after the decision's status write, if it is one).
    pub(super) status: TopologyStatus,
    /// The per-pod summaries to record.
    pub(super) pods: Vec<crate::api::PodStatus>,
    /// The role label every observed pod should carry.
    pub(super) roles: Vec<(String, Option<RoleLabel>)>,
    /// How soon to look again.
    pub(super) requeue: Duration,
    /// A failover in flight, for the phase engine.
    pub(super) failover: Option<String>,
    /// Why a person must decide, for the phase engine.
    pub(super) manual_intervention: Option<SpecProblem>,
    /// Pods that do not serve their role yet, for the phase engine (not `Running` until `None`).
    pub(super) pending: Option<String>,
    /// The step an operator-ordered rolling update is at, for the phase engine.
    pub(super) rollout: Option<redis_fsm::Progress>,
    /// The switchover annotation is to be removed once the status is written.
    pub(super) request_done: bool,
    /// A restore done this pass (`spec.bootstrap.fromBackup`), to record in `status.restore`.
    pub(super) restored: Option<crate::api::RestoreStatus>,
}

/// Observes every pod's server, decides the one next topology step and, when it is a command, sends it (only
/// while leading). A status write is only computed here; the caller persists it before anything acts on it.
pub(super) async fn topology_pass(
    ri: &RedisInstance,
    ctx: &Context,
    snapshot: &Snapshot,
    access: &Access,
    material: Option<&crate::tls::Material>,
) -> TopologyPass {
    let name = ri.name_any();
    let replicas = u32::try_from(ri.spec.replicas).unwrap_or_default();
    let pods = &snapshot.pods;
    // Every pod the StatefulSet keeps (more than spec.replicas while a scale-down is held) is observed.
    let live_sts = snapshot.statefulset.as_ref();
    let kept = live_sts
        .and_then(|sts| sts.spec.as_ref()?.replicas)
        .and_then(|r| u32::try_from(r).ok())
        .unwrap_or(replicas)
        .max(replicas);
    let context = topology::PodContext {
        update_revision: live_sts.and_then(|sts| {
            let status = sts.status.as_ref()?;
            // A revision from before the controller saw the latest template would call updated pods outdated.
            (status.observed_generation >= sts.metadata.generation)
                .then(|| status.update_revision.clone())
                .flatten()
        }),
        cordoned_nodes: ctx.stores.nodes.as_ref().map_or_else(Vec::new, |nodes| {
            nodes
                .state()
                .iter()
                .filter(|n| n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true))
                .map(|n| n.name_any())
                .collect()
        }),
    };
    let observed = topology::observe(&name, kept, pods, &context, access).await;
    let persisted = topology::topology_status(ri.status.as_ref());
    let request = switchover::requested(ri);
    let refused = request
        .as_deref()
        .and_then(|to| switchover::refusal(ri, to));
    let policy = TopologyPolicy {
        replicas,
        // Validated to be 0 to 3600.
        failover_delay: Duration::from_secs(
            u64::try_from(ri.spec.replication.failover_delay_seconds).unwrap_or_default(),
        ),
        switchover_timeout: topology::SWITCHOVER_TIMEOUT * 2 + Duration::from_secs(2),
        max_lag_bytes: topology::MAX_LAG_BYTES,
        rollout: match (
            ctx.settings.rollout,
            ri.spec.replication.primary_update_strategy,
        ) {
            (RolloutMode::Statefulset, _) => RolloutPolicy::Controller,
            (_, PrimaryUpdateStrategy::Supervised) => RolloutPolicy::Supervised,
            (_, PrimaryUpdateStrategy::Unsupervised) => RolloutPolicy::PrimaryLast,
        },
        switchover_request: request.clone().filter(|_| refused.is_none()),
        chosen_primary: ri
            .annotations()
            .get(BOOTSTRAP_PRIMARY_ANNOTATION)
            .map(|pod| pod.trim().to_string()),
        recorded_primary: super::storage::recorded_primary(
            ctx,
            &name,
            &ri.namespace().unwrap_or_default(),
        ),
        ..TopologyPolicy::default()
    };
    // The confirmed primary's claim records it, for an instance re-created over the claims.
    if let Some(primary) = persisted.current_primary.as_deref().filter(|current| {
        replicas >= 2
            && persisted.primary_history.is_some()
            && persisted.target_primary.as_ref().is_none_or(
                |target| matches!(target, redis_fsm::TargetPrimary::Pod(pod) if pod == current),
            )
    }) {
        super::storage::mark_primary(ri, ctx, primary).await;
    }
    let now = topology::at(snapshot.now);
    let previous = ri
        .status
        .as_ref()
        .map(|s| s.pods.as_slice())
        .unwrap_or_default();
    let mut restored = None;
    if let Some(from) = restore::outstanding(ri, &persisted) {
        // No primary is chosen before the first pod holds the backup.
        let pass = restore::pass(ri, ctx, from, &observed, access, material).await;
        if pass
            .restored
            .as_ref()
            .is_none_or(|r| r.completed_at.is_none())
        {
            return restore_pass(ctx, snapshot, persisted, &observed, previous, pass);
        }
        info!(restore = ?pass.restored, "restored");
        restored = pass.restored;
    }
    let action = decide(&persisted, &observed, &policy, now);
    if matches!(
        action,
        TopologyAction::Bootstrap { .. }
            | TopologyAction::StartFailover { .. }
            | TopologyAction::SetTargetPrimary { .. }
            | TopologyAction::StartSwitchover { .. }
            | TopologyAction::AbortSwitchover { .. }
            | TopologyAction::AbortFailover { .. }
            | TopologyAction::DeletePod { .. }
            | TopologyAction::Stop { .. }
    ) {
        info!(
            ?action,
            recorded = ?persisted,
            observed = %topology::observation_line(&observed),
            "topology decision"
        );
    }
    let next = persisted
        .after(&action)
        .unwrap_or_else(|| persisted.clone());
    let mut requeue = topology::requeue_after(&action, now).unwrap_or(ctx.settings.resync);
    if replicas >= 2 {
        // The operator watches the primary itself, not only through pod events: a primary busy in a script or
        // at maxclients keeps its readiness (see `readiness_script`), and must still be seen within the delay.
        requeue = requeue.min(topology::watch_interval(policy.failover_delay));
    }
    if let TopologyAction::DeletePod { pod, .. } = &action {
        replace_pod(ri, ctx, snapshot, pod).await;
    } else if action.is_command() {
        let leadership = ctx.leadership.clone();
        match topology::execute(&action, &observed, access, || leadership.is_held()).await {
            Ok(()) => {
                info!(?action, "topology command sent");
                if ctx.command_is_new(ri, &action) {
                    // A server answers once the command is carried out, and nothing announces that by a watch
                    // event: observe the outcome now rather than at the requeue's pace (which paced each failover
                    // step by 0.5 s).
                    requeue = requeue.min(AFTER_COMMAND);
                }
                disconnect_demoted(&persisted, &action, &observed, ctx, access).await;
            }
            Err(error) => warn!(%error, ?action, "topology command failed; observing again"),
        }
    } else {
        if action != TopologyAction::Steady {
            debug!(?action, "topology step");
        }
        disconnect_demoted(&persisted, &action, &observed, ctx, access).await;
    }
    report_topology_action(ri, ctx, &persisted, &action).await;
    let roles = desired_roles(&next, &observed, topology::MAX_LAG_BYTES);
    if roles
        .iter()
        .zip(&observed)
        .any(|((_, role), pod)| role.is_none() && pod.is_observed())
    {
        // A replica still syncing becomes labelled without any watch event: look again soon.
        requeue = requeue.min(Duration::from_secs(2));
    }
    let primary_offset = confirmed_primary(&next, &observed)
        .and_then(PodReplication::state)
        .map(|s| s.repl_offset);
    let manual_intervention = match &action {
        TopologyAction::Stop { reason } => Some(SpecProblem {
            reason: reason.reason(),
            message: format!("Manual intervention needed: {reason}"),
        }),
        _ => None,
    };
    let mut pending = replication_pending(&observed, &roles, replicas);
    if let (
        TopologyAction::Wait {
            reason: reason @ WaitReason::SwitchoverTargetNotCaughtUp(_),
        },
        None,
    ) = (&action, next.switchover_in_flight())
    {
        // A requested switchover that cannot start yet: the instance is not as asked.
        pending.get_or_insert_with(|| format!("switchover requested: {reason}"));
    }
    if let Some(why) = &refused {
        event(
            ctx,
            ri,
            EventType::Warning,
            EventReason::SwitchoverRefused,
            "Switchover",
            why.clone(),
        )
        .await;
    }
    // The request stays until it is done (an abandoned switchover is retried after its back-off), or refused.
    let request_done = refused.is_some()
        || request.as_deref().is_some_and(|to| {
            next.current_primary.as_deref() == Some(to) && !next.failover_in_flight()
        });
    if pending.is_some() {
        // A pod that is starting, parked or syncing changes without any watch event (a parked pod is not Ready
        // and stays so until it is re-pointed): look again soon until every pod serves its role.
        requeue = requeue.min(Duration::from_secs(2));
    }
    if observed.iter().all(|p| p.endpoint.host.is_empty()) {
        // No pod has started (none has an address): nothing changes on a server before a pod event announces
        // it, so no timer either. 1,000 new instances requeued every 2 s kept the controller busy re-reading
        // instances that waited for the node, and new instances waited behind them. A deadline of the decision
        // itself (the failover delay running out) still brings the reconcile that acts on it.
        requeue = topology::deadline_after(&action, now)
            .map_or(ctx.settings.resync, |d| d.min(ctx.settings.resync));
    }
    TopologyPass {
        pending,
        rollout: rollout_progress(&action),
        request_done,
        failover: topology::failover_message(&next, &action),
        manual_intervention,
        pods: topology::pod_summaries(
            previous,
            &observed,
            &roles,
            primary_offset,
            &crate::status::rfc3339(snapshot.now),
        ),
        status: next,
        roles,
        requeue,
        restored,
    }
}

/// The pass of an instance being seeded from a backup: no role, no command; the restore's progress or its stop.
fn restore_pass(
    ctx: &Context,
    snapshot: &Snapshot,
    persisted: TopologyStatus,
    observed: &[PodReplication],
    previous: &[crate::api::PodStatus],
    pass: restore::RestorePass,
) -> TopologyPass {
    let roles: Vec<(String, Option<RoleLabel>)> =
        observed.iter().map(|p| (p.pod.clone(), None)).collect();
    let requeue = if pass.stop.is_some() {
        ctx.settings.resync.min(restore::RETRY_AFTER)
    } else {
        Duration::from_secs(2)
    };
    TopologyPass {
        pods: topology::pod_summaries(
            previous,
            observed,
            &roles,
            None,
            &crate::status::rfc3339(snapshot.now),
        ),
        status: persisted,
        roles,
        requeue,
        failover: None,
        manual_intervention: pass.stop.map(|message| SpecProblem {
            reason: Reason::RestoreFailed,
            message: format!("Restore failed: {message}"),
        }),
        pending: pass.pending,
        rollout: None,
        request_done: false,
        // The plan of a restore from an archive, recorded before it starts.
        restored: pass.restored,
    }
}

/// How soon the pass after a topology command observes its outcome.
const AFTER_COMMAND: Duration = Duration::from_millis(10);

/// Disconnects the clients of the servers `action` demoted (`redis_fsm::demoted_by`), once it is carried out.
pub(super) async fn disconnect_demoted(
    persisted: &TopologyStatus,
    action: &TopologyAction,
    observed: &[PodReplication],
    ctx: &Context,
    access: &Access,
) {
    let demoted = redis_fsm::demoted_by(persisted, action, observed);
    if demoted.is_empty() {
        return;
    }
    let leadership = ctx.leadership.clone();
    match topology::disconnect_clients(&demoted, observed, access, || leadership.is_held()).await {
        Ok(clients) => info!(
            ?demoted,
            clients, "disconnected the clients of demoted servers"
        ),
        Err(error) => {
            warn!(%error, ?demoted, "could not disconnect the clients of demoted servers")
        }
    }
}

/// Events for the topology steps a user wants to see: a failover starting, a primary confirmed, a stop.
pub(super) async fn report_topology_action(
    ri: &RedisInstance,
    ctx: &Context,
    persisted: &TopologyStatus,
    action: &TopologyAction,
) {
    let (type_, reason, note) = match action {
        TopologyAction::StartFailover { failure } => (
            EventType::Warning,
            EventReason::FailoverStarted,
            format!(
                "Failing over from {}: {failure}",
                persisted.current_primary.as_deref().unwrap_or("(none)")
            ),
        ),
        TopologyAction::StartSwitchover { to, reason, .. } => (
            EventType::Normal,
            EventReason::SwitchoverStarted,
            format!(
                "Switching over from {} to {to} ({reason}): writes pause until {to} holds every one, then \
                 the roles swap",
                persisted.current_primary.as_deref().unwrap_or("(none)")
            ),
        ),
        TopologyAction::AbortSwitchover { to, retry_at } => (
            EventType::Warning,
            EventReason::SwitchoverAbandoned,
            format!(
                "The switchover from {} to {to} did not complete in time ({to} did not catch up, or was not \
                 reachable); writes continue on {}. Next attempt after {}",
                persisted.current_primary.as_deref().unwrap_or("(none)"),
                persisted.current_primary.as_deref().unwrap_or("(none)"),
                topology::format_time(*retry_at)
            ),
        ),
        TopologyAction::DeletePod { .. } => {
            let Some(step) = rollout_progress(action) else {
                return;
            };
            // One reason per step: Events of one reason are merged into a series that keeps the first note.
            let reason = match action {
                TopologyAction::DeletePod { step, .. } => step.reason(),
                _ => Reason::StatefulSetUpdating,
            };
            (EventType::Normal, reason.into(), step.message)
        }
        TopologyAction::ConfirmPrimary { pod, .. }
            if persisted.current_primary.as_deref() != Some(pod.as_str())
                || persisted.primary_run_id.is_none() =>
        {
            (
                EventType::Normal,
                Reason::PrimaryConfirmed.into(),
                format!("{pod} is the primary"),
            )
        }
        // Once: the phase engine keeps the reason in status while the stop lasts.
        TopologyAction::Stop { reason }
            if ri.status.as_ref().map(|s| s.reason.as_str()) != Some(reason.reason().as_str()) =>
        {
            (
                EventType::Warning,
                reason.reason().into(),
                format!("Manual intervention needed: {reason}"),
            )
        }
        _ => return,
    };
    let namespace = ri.namespace().unwrap_or_default();
    ctx.metrics
        .record_topology_event(&namespace, &ri.name_any(), reason);
    event(ctx, ri, type_, reason, "Topology", note).await;
}

/// Deletes `pod` (one step of an operator-ordered rolling update) so its StatefulSet re-creates it at the update
/// revision. Only while leading, and only the pod the decision saw (its uid as precondition): a pod re-created
/// meanwhile is left alone. Failures are logged; the next pass decides again.
pub(super) async fn replace_pod(ri: &RedisInstance, ctx: &Context, snapshot: &Snapshot, pod: &str) {
    let namespace = ri.namespace().unwrap_or_default();
    if !ctx.leadership.is_held() {
        warn!(%pod, "not deleting: leadership of the operator is not proven");
        return;
    }
    let uid = snapshot.pod(pod).and_then(|p| p.metadata.uid.clone());
    let params = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    match api.delete(pod, &params).await {
        Ok(_) => info!(%pod, "pod deleted for the rolling update"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => {
            ctx.metrics.record_api_error("delete", &e);
            warn!(%pod, error = %e, "pod deletion for the rolling update failed; observing again");
        }
    }
}

/// Removes the switchover annotation (a metadata patch that leaves everything else alone).
pub(super) async fn remove_switchover_request(ri: &RedisInstance, ctx: &Context) -> Result<()> {
    let api: Api<RedisInstance> =
        Api::namespaced(ctx.client.clone(), &ri.namespace().unwrap_or_default());
    let patch = switchover::annotation_patch(None);
    match api
        .patch(
            &ri.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => {
            ctx.metrics.record_api_error("patch", &e);
            Err(e.into())
        }
    }
}

/// Patches the role labels of the instance's pods towards `desired`, in `label_patches` order: every removal
/// of the primary label before the one that adds it, so no two pods are ever labelled primary.
pub(super) async fn move_labels(
    ri: &RedisInstance,
    ctx: &Context,
    snapshot: &Snapshot,
    desired: &[(String, Option<RoleLabel>)],
) -> Result<()> {
    let namespace = ri.namespace().unwrap_or_default();
    let pods = &snapshot.pods;
    // Every labelled pod, including those beyond spec.replicas, so a stale primary label is removed too.
    // A label this process set that the cache has not seen yet counts as set.
    let instance = ObjectRef::from_obj(ri);
    let version = |pod: &str| {
        snapshot
            .pod(pod)
            .and_then(|p| p.metadata.resource_version.clone())
    };
    let live: Vec<(String, Option<RoleLabel>)> = pods
        .iter()
        .map(|pod| {
            let name = pod.name_any();
            let role = ctx
                .own_writes
                .unseen_label(&instance, &name, pod.metadata.resource_version.as_deref())
                .unwrap_or_else(|| topology::live_role(pod));
            (name, role)
        })
        .collect();
    let mut desired: Vec<(String, Option<RoleLabel>)> = desired
        .iter()
        .filter(|(pod, _)| live.iter().any(|(name, _)| name == pod))
        .cloned()
        .collect();
    for (pod, _) in &live {
        if !desired.iter().any(|(name, _)| name == pod) {
            desired.push((pod.clone(), None));
        }
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    for (pod, role) in label_patches(&live, &desired) {
        let patch =
            serde_json::json!({"metadata": {"labels": {ROLE_LABEL: role.map(RoleLabel::as_str)}}});
        match api
            .patch(&pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                ctx.own_writes
                    .label_set(&instance, &pod, version(&pod), role);
                info!(%pod, role = role.map_or("none", RoleLabel::as_str), "role label set");
            }
            // The pod went away meanwhile; its replacement is labelled by a later pass.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                ctx.metrics.record_api_error("patch", &e);
                return Err(e.into());
            }
        }
    }
    Ok(())
}
