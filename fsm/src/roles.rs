//! Role labels: which pod the `NAME` (read-write) and `NAME-replicas` (read-only) Services select.
//!
//! Labels follow the persisted intent, confirmed by observation: only the recorded current
//! primary can carry the primary label, only while no failover is in flight and while it answers
//! as a master with the recorded `run_id`. So at most one pod is ever labelled primary, and a pod
//! whose role is not confirmed is in no read-write endpoint.

use crate::model::{PodReplication, ServerRole, TopologyStatus};

/// The value of the `redis-operator.github.io/role` label.
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

/// The replicas `NAME-replicas` should select: caught up with the confirmed primary (linked to it, not in a
/// full synchronisation, at most `max_lag_bytes` behind it, not being deleted; see [`crate::caught_up`]). In
/// `pods` order.
pub fn in_sync_replicas<'a>(
    status: &TopologyStatus,
    pods: &'a [PodReplication],
    max_lag_bytes: u64,
) -> Vec<&'a PodReplication> {
    let Some(primary) = confirmed_primary(status, pods) else {
        return Vec::new();
    };
    pods.iter()
        .filter(|p| crate::rollout::caught_up(p, primary, max_lag_bytes))
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

/// What keeps the pods below `replicas` from serving their role, as one sentence for the phase
/// message, or `None` once there is a confirmed primary and every other pod is an in-sync replica.
///
/// `roles` is [`desired_roles`] for `pods`. Until this is `None` the instance is not `Running`: a
/// replica that is still syncing is Ready to Kubernetes but in no Service yet.
pub fn replication_pending(
    pods: &[PodReplication],
    roles: &[(String, Option<RoleLabel>)],
    replicas: u32,
) -> Option<String> {
    let role_of = |pod: &str| {
        roles
            .iter()
            .find(|(name, _)| name == pod)
            .and_then(|(_, role)| *role)
    };
    let expected: Vec<&PodReplication> = pods.iter().filter(|p| p.ordinal < replicas).collect();
    if !expected
        .iter()
        .any(|p| role_of(&p.pod) == Some(RoleLabel::Primary))
    {
        return Some("replication: no confirmed primary yet".to_owned());
    }
    let waiting: Vec<String> = expected
        .iter()
        .filter(|p| role_of(&p.pod).is_none())
        .map(|p| format!("{} {}", p.pod, why_not_serving(p)))
        .collect();
    (!waiting.is_empty()).then(|| format!("replication: {}", waiting.join(", ")))
}

/// Why a pod without a role label is not an in-sync replica.
fn why_not_serving(pod: &PodReplication) -> &'static str {
    let Some(state) = pod.state() else {
        return "cannot be reached";
    };
    if state.loading {
        return "is loading its dataset";
    }
    match &state.role {
        ServerRole::Master => "answers as a master but is not the primary",
        ServerRole::Replica(link) if link.sync_in_progress => "is syncing from the primary",
        ServerRole::Replica(_) if pod.follows(&pod.endpoint) => {
            "is parked, not yet pointed at the primary"
        }
        ServerRole::Replica(link) if !link.link_up => "has no link to the primary",
        ServerRole::Replica(_) => "lags behind the primary",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::replication::{test_pod, ReplicaLink, Unobserved};

    fn pod(ordinal: u32, role: ServerRole) -> PodReplication {
        test_pod(format!("cache-{ordinal}"), ordinal, role, "A", 100, 1)
    }

    fn replica_of(host: &str, link_up: bool, syncing: bool) -> ServerRole {
        ServerRole::Replica(ReplicaLink {
            master_host: host.into(),
            master_port: 6379,
            link_up,
            sync_in_progress: syncing,
            replica_offset: 100,
        })
    }

    #[test]
    fn says_which_pod_waits_and_why_until_every_pod_serves() {
        let mut unreachable = pod(3, ServerRole::Master);
        unreachable.server = Err(Unobserved::unreachable("timeout"));
        let pods = [
            pod(0, ServerRole::Master),
            pod(1, replica_of("10.0.0.0", true, true)),
            pod(2, replica_of("10.0.0.2", false, false)),
            unreachable,
            // Beyond spec.replicas (a held scale-down): not waited for.
            pod(4, replica_of("10.0.0.0", false, false)),
        ];
        let mut roles: Vec<(String, Option<RoleLabel>)> =
            pods.iter().map(|p| (p.pod.clone(), None)).collect();
        assert_eq!(
            replication_pending(&pods, &roles, 4).as_deref(),
            Some("replication: no confirmed primary yet")
        );
        roles[0].1 = Some(RoleLabel::Primary);
        assert_eq!(
            replication_pending(&pods, &roles, 4).as_deref(),
            Some(
                "replication: cache-1 is syncing from the primary, cache-2 is parked, not yet \
                 pointed at the primary, cache-3 cannot be reached"
            )
        );
        for role in &mut roles[1..4] {
            role.1 = Some(RoleLabel::Replica);
        }
        assert_eq!(replication_pending(&pods, &roles, 4), None);
        assert_eq!(replication_pending(&pods[..1], &roles[..1], 1), None);
    }
}
