//! Rolling updates ordered by the operator, and the switchovers of a healthy primary.
//!
//! The StatefulSet uses the `OnDelete` update strategy: its controller re-creates a deleted pod at
//! the update revision but never deletes one itself. [`plan`] says which pod to delete next, so
//! that the primary is never taken down while it serves:
//!
//! ```text
//! outdated replicas, one at a time   DeletePod (an outdated replica that does not serve first,
//!                                    then the highest ordinal), each only once every updated
//!                                    replica is caught up with the primary
//! every replica updated              StartSwitchover to the most advanced caught-up replica
//!                                    (Supervised: only once a person asks for it)
//!                                    -> Switchover (handover: writes paused until it caught up)
//!                                    -> ConfirmPrimary
//! the old primary, now a replica     DeletePod, like any outdated replica
//! ```
//!
//! It runs only when the primary is confirmed and healthy and every other server follows it: a
//! failing primary is the failover's business, and a rollout never adds a restart to one.
//! Besides the rolling update, a healthy primary switches over when a person asks for it (the
//! `redis-operator.github.io/switchover-to` annotation) or when its node is cordoned.

use crate::election::rank;
use crate::model::{
    find, PodReplication, RolloutPolicy, RolloutStep, SwitchoverReason, Timestamp, TopologyAction,
    TopologyPolicy, TopologyStatus, WaitReason,
};
use crate::reasons::Reason;

/// Whether `pod` is a replica of `primary` that has caught up: linked to it, not in a full
/// synchronisation, at most `max_lag_bytes` behind, and not being deleted.
pub fn caught_up(pod: &PodReplication, primary: &PodReplication, max_lag_bytes: u64) -> bool {
    let primary_offset = primary.state().map_or(0, |s| s.repl_offset);
    pod.pod != primary.pod
        && !pod.pod_deleting
        && pod.streams_from(&primary.endpoint)
        && pod
            .replica_link()
            .is_some_and(|link| primary_offset.saturating_sub(link.replica_offset) <= max_lag_bytes)
}

/// `StartSwitchover` to `to`, unless an abandoned switchover's back-off still runs.
pub(crate) fn switch_over(
    status: &TopologyStatus,
    to: String,
    reason: SwitchoverReason,
    now: Timestamp,
) -> TopologyAction {
    match status.switchover_retry_at {
        Some(at) if now < at => TopologyAction::Wait {
            reason: WaitReason::SwitchoverBackOff(at),
        },
        _ => TopologyAction::StartSwitchover {
            to,
            reason,
            at: now,
        },
    }
}

/// The caught-up replicas that may take over from `primary`, most advanced first.
fn targets<'a>(
    status: &TopologyStatus,
    primary: &PodReplication,
    pods: &'a [PodReplication],
    policy: &TopologyPolicy,
) -> Vec<&'a PodReplication> {
    let Some(anchor) = status.primary_history.as_ref() else {
        return Vec::new();
    };
    rank(anchor, Some(&primary.pod), pods)
        .into_iter()
        .filter(|p| caught_up(p, primary, policy.max_lag_bytes))
        .collect()
}

/// The next step for a confirmed, healthy primary that every other server follows: a requested
/// switchover, a switchover off a cordoned node, or the next step of a rolling update.
pub(crate) fn plan(
    status: &TopologyStatus,
    primary: &PodReplication,
    pods: &[PodReplication],
    policy: &TopologyPolicy,
    now: Timestamp,
) -> TopologyAction {
    if let Some(to) = policy.switchover_request.as_deref() {
        if to != primary.pod {
            return match find(pods, to) {
                Some(target)
                    if target.is_electable()
                        && caught_up(target, primary, policy.max_lag_bytes) =>
                {
                    switch_over(status, to.to_string(), SwitchoverReason::Requested, now)
                }
                _ => TopologyAction::Wait {
                    reason: WaitReason::SwitchoverTargetNotCaughtUp(to.to_string()),
                },
            };
        }
    }
    if primary.node_cordoned {
        let candidates = targets(status, primary, pods, policy);
        // Off the cordoned node if any replica runs elsewhere; otherwise once (a drain of the only
        // node then waits on the new primary's budget, and the primary does not bounce between
        // pods of one cordoned node).
        let target = candidates.iter().find(|p| !p.node_cordoned).or_else(|| {
            let last = status.switchover.as_ref().map(|s| s.reason);
            candidates
                .first()
                .filter(|_| last != Some(SwitchoverReason::NodeCordoned))
        });
        if let Some(target) = target {
            return switch_over(
                status,
                target.pod.clone(),
                SwitchoverReason::NodeCordoned,
                now,
            );
        }
    }
    next_replacement(status, primary, pods, policy, now).unwrap_or(TopologyAction::Steady)
}

/// The next step of a rolling update ordered by the operator, or `None` when no pod is outdated.
fn next_replacement(
    status: &TopologyStatus,
    primary: &PodReplication,
    pods: &[PodReplication],
    policy: &TopologyPolicy,
    now: Timestamp,
) -> Option<TopologyAction> {
    if policy.rollout == RolloutPolicy::Controller || !pods.iter().any(|p| p.outdated) {
        return None;
    }
    let wait = |pod: &PodReplication| TopologyAction::Wait {
        reason: WaitReason::PodCatchingUp(pod.pod.clone()),
    };
    if let Some(deleting) = pods.iter().find(|p| p.pod_deleting) {
        return Some(match delete(status, deleting, primary, pods) {
            TopologyAction::DeletePod {
                step: RolloutStep::UpdatingOldPrimary,
                ..
            } => TopologyAction::Wait {
                reason: WaitReason::OldPrimaryBeingReplaced(deleting.pod.clone()),
            },
            _ => wait(deleting),
        });
    }
    let others = || pods.iter().filter(|p| p.pod != primary.pod);
    // An outdated replica that serves nothing (not Ready: crash-looping, unreachable, in a full
    // sync) is replaced first: replacing it loses nothing, and may be what repairs it.
    let broken = others()
        .find(|p| p.outdated && !p.pod_ready && !caught_up(p, primary, policy.max_lag_bytes));
    if let Some(pod) = broken {
        return Some(delete(status, pod, primary, pods));
    }
    // One at a time: every updated replica has caught up before the next one goes.
    if let Some(pod) =
        others().find(|p| !p.outdated && !caught_up(p, primary, policy.max_lag_bytes))
    {
        return Some(wait(pod));
    }
    if let Some(pod) = others().filter(|p| p.outdated).max_by_key(|p| p.ordinal) {
        return Some(delete(status, pod, primary, pods));
    }
    // Only the primary is outdated.
    if policy.replicas <= 1 {
        return Some(TopologyAction::DeletePod {
            pod: primary.pod.clone(),
            step: RolloutStep::UpdatingOnlyPod,
        });
    }
    if policy.rollout == RolloutPolicy::Supervised {
        return Some(TopologyAction::Wait {
            reason: WaitReason::SwitchoverNotRequested(primary.pod.clone()),
        });
    }
    let target = targets(status, primary, pods, policy)
        .into_iter()
        .find(|p| !p.outdated);
    Some(match target {
        Some(target) => switch_over(status, target.pod.clone(), SwitchoverReason::Rollout, now),
        None => TopologyAction::Wait {
            reason: WaitReason::NoCaughtUpReplica,
        },
    })
}

/// `DeletePod` of the outdated replica `pod`; the old primary of this rollout's switchover (the
/// last outdated pod, and the source of the last switchover, made for a rollout) is named as such.
fn delete(
    status: &TopologyStatus,
    pod: &PodReplication,
    primary: &PodReplication,
    pods: &[PodReplication],
) -> TopologyAction {
    let last = pods.iter().filter(|p| p.outdated).all(|p| p.pod == pod.pod);
    let old_primary = last
        && status.switchover.as_ref().is_some_and(|s| {
            s.reason == SwitchoverReason::Rollout
                && s.from == pod.pod
                && status.current_primary.as_deref() == Some(primary.pod.as_str())
        });
    TopologyAction::DeletePod {
        pod: pod.pod.clone(),
        step: if old_primary {
            RolloutStep::UpdatingOldPrimary
        } else {
            RolloutStep::UpdatingReplica
        },
    }
}

/// An instance without replicas whose only server fails: replace its pod if it is outdated and
/// not already going away (e.g. a configuration that did not start was corrected).
pub(crate) fn replace_failing_standalone(
    pods: &[PodReplication],
    current: &str,
    policy: &TopologyPolicy,
) -> Option<TopologyAction> {
    if policy.rollout == RolloutPolicy::Controller {
        return None;
    }
    let pod = find(pods, current)?;
    (pod.outdated && !pod.pod_deleting).then(|| TopologyAction::DeletePod {
        pod: pod.pod.clone(),
        step: RolloutStep::UpdatingOnlyPod,
    })
}

/// What a rolling update is doing, for the phase engine ([`crate::Observation::rollout`]), when
/// `action` is one of its steps; `None` otherwise.
pub fn progress(action: &TopologyAction) -> Option<crate::Progress> {
    let (reason, message) = match action {
        TopologyAction::DeletePod { pod, step } => (
            step.reason(),
            match step {
                RolloutStep::UpdatingOldPrimary => {
                    format!("Replacing the old primary {pod}, a replica since the switchover")
                }
                RolloutStep::UpdatingReplica => {
                    format!("Replacing replica {pod}, one at a time, the primary last")
                }
                RolloutStep::UpdatingOnlyPod => format!("Replacing {pod}"),
            },
        ),
        TopologyAction::Wait {
            reason: WaitReason::PodCatchingUp(pod),
        } => (
            // Outdated pods remain, so the pod catching up is not the rollout's old primary (replaced last).
            Reason::UpdatingReplicas,
            format!(
                "Updating replicas one at a time, the primary last: {}",
                WaitReason::PodCatchingUp(pod.clone())
            ),
        ),
        TopologyAction::Wait {
            reason: reason @ WaitReason::OldPrimaryBeingReplaced(_),
        } => (Reason::UpdatingOldPrimary, capitalised(&reason.to_string())),
        TopologyAction::Wait {
            reason: reason @ WaitReason::SwitchoverNotRequested(_),
        } => (Reason::AwaitingSwitchover, capitalised(&reason.to_string())),
        TopologyAction::Wait {
            reason: reason @ (WaitReason::NoCaughtUpReplica | WaitReason::SwitchoverBackOff(_)),
        } => (Reason::UpdatingReplicas, capitalised(&reason.to_string())),
        _ => return None,
    };
    Some(crate::Progress { reason, message })
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
