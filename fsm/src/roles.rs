//! Role labels: which pod the `NAME` (read-write) and `NAME-replicas` (read-only) Services select.
//!
//! Labels follow the persisted intent, confirmed by observation: only the recorded current
//! primary can carry the primary label, only while no failover is in flight and while it answers
//! as a master with the recorded `run_id`. So at most one pod is ever labelled primary, and a pod
//! whose role is not confirmed is in no read-write endpoint.

use crate::replication::PodReplication;
use crate::topology::TopologyStatus;

/// The value of the `redis.github.com/role` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoleLabel {
    /// `primary`: selected by the `NAME` Service.
    Primary,
    /// `replica`: an in-sync replica, selected by the `NAME-replicas` Service.
    Replica,
}

impl RoleLabel {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleLabel::Primary => "primary",
            RoleLabel::Replica => "replica",
        }
    }
}

/// The confirmed primary: recorded as current, no failover in flight, observed as a master with
/// the recorded `run_id`.
pub fn confirmed_primary<'a>(
    status: &TopologyStatus,
    pods: &'a [PodReplication],
) -> Option<&'a PodReplication> {
    if status.failover_in_flight() {
        return None;
    }
    let current = status.current_primary.as_deref()?;
    let run_id = status.primary_run_id.as_deref()?;
    pods.iter().find(|p| {
        p.pod == current && p.is_master() && p.state().is_some_and(|s| s.run_id == run_id)
    })
}

/// The replicas `NAME-replicas` should select: linked to the confirmed primary, not in a full
/// synchronisation, and at most `max_lag_bytes` behind it. In `pods` order.
pub fn in_sync_replicas<'a>(
    status: &TopologyStatus,
    pods: &'a [PodReplication],
    max_lag_bytes: u64,
) -> Vec<&'a PodReplication> {
    let Some(primary) = confirmed_primary(status, pods) else {
        return Vec::new();
    };
    let primary_offset = primary.state().map_or(0, |s| s.repl_offset);
    pods.iter()
        .filter(|p| p.pod != primary.pod && !p.pod_deleting && p.linked_to(&primary.endpoint))
        .filter(|p| {
            p.replica_link().is_some_and(|link| {
                !link.sync_in_progress
                    && primary_offset.saturating_sub(link.replica_offset) <= max_lag_bytes
            })
        })
        .collect()
}

/// The role label every pod should carry (`None`: no role label), in `pods` order.
pub fn desired_roles(
    status: &TopologyStatus,
    pods: &[PodReplication],
    max_lag_bytes: u64,
) -> Vec<(String, Option<RoleLabel>)> {
    let primary = confirmed_primary(status, pods).map(|p| p.pod.as_str());
    let replicas: Vec<&str> = in_sync_replicas(status, pods, max_lag_bytes)
        .into_iter()
        .map(|p| p.pod.as_str())
        .collect();
    pods.iter()
        .map(|p| {
            let role = if Some(p.pod.as_str()) == primary {
                Some(RoleLabel::Primary)
            } else if replicas.contains(&p.pod.as_str()) {
                Some(RoleLabel::Replica)
            } else {
                None
            };
            (p.pod.clone(), role)
        })
        .collect()
}

/// The label patches that turn `live` into `desired` (both `(pod, role)`), ordered so that every
/// patch taking a primary label away comes before the one giving it: applied one at a time, in
/// order, no prefix ever leaves two pods labelled primary.
pub fn label_patches(
    live: &[(String, Option<RoleLabel>)],
    desired: &[(String, Option<RoleLabel>)],
) -> Vec<(String, Option<RoleLabel>)> {
    let live_role = |pod: &str| {
        live.iter()
            .find(|(name, _)| name == pod)
            .and_then(|(_, role)| *role)
    };
    let mut patches: Vec<(String, Option<RoleLabel>)> = desired
        .iter()
        .filter(|(pod, role)| live_role(pod) != *role)
        .cloned()
        .collect();
    // Stable sort: removals of the primary label first, the new primary label last.
    patches.sort_by_key(|(_, role)| *role == Some(RoleLabel::Primary));
    patches
}
