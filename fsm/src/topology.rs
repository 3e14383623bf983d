//! Which pod is primary, and the one next step towards a single, confirmed primary.
//!
//! [`decide`] is a pure function of the persisted [`TopologyStatus`], this pass's observation of
//! every pod and the caller's `now`. It returns exactly one [`TopologyAction`]: either a status
//! write (intent is recorded *before* anything is done to a server, so a restarted operator
//! resumes instead of re-deciding) or one kind of command to send to servers. The caller performs
//! it and returns; the next pass observes the effect and decides again.
//!
//! A failover, from the persisted fields' point of view:
//!
//! ```text
//! current=P target=P  failing_since=None      healthy
//!   MarkPrimaryFailing  -> failing_since=t0      (P unreachable, or not ready with a ready pod to take over)
//!   WaitFailoverDelay      until t0 + failoverDelay
//!   StartFailover       -> target=Pending        (no pod carries the primary label from now on)
//!   Fence                  P and the replicas following it are parked (read-only, detached)
//!   SetTargetPrimary    -> target=T              (T elected: shares P's history, most advanced)
//!     or AbortFailover  -> target=P, failing_since=None (nobody is safe to elect and P is back
//!                          intact: it is promoted again, its run_id and history still recorded)
//!   Promote                REPLICAOF NO ONE on T
//!   ConfirmPrimary      -> current=T target=T, T's run_id and history, failing_since=None
//!   Repoint                the others (P included, when it returns) replicate from T
//! ```
//!
//! A primary whose server restarted (new `run_id`) skips the delay: it comes back parked by the
//! boot guard, possibly empty, and replicas must never synchronise from it.

use crate::election::{elect, rank, Election};
use crate::model::{
    find, FailoverState, NoCandidate, PodReplication, PrimaryFailure, Refusal, RolloutPolicy,
    RolloutStep, StopReason, SwitchoverReason, TargetPrimary, Timestamp, TopologyAction,
    TopologyPolicy, TopologyStatus, WaitReason,
};
use crate::rollout;

/// The servers `action` demotes from master, once it is carried out: the old primary a `Fence`
/// parks, a returning master a `Repoint` brings under the primary, the primary a confirmed switchover
/// handed over from. Their normal and Pub/Sub clients are disconnected then (`CLIENT KILL TYPE normal`,
/// `TYPE pubsub`), so pooled connections reconnect through the `NAME` Service to the new primary
/// instead of getting `READONLY` (or writing to a server about to be re-pointed). Replication links
/// (`TYPE master`, `TYPE replica`) are other client types and stay.
pub fn demoted_by(
    status: &TopologyStatus,
    action: &TopologyAction,
    pods: &[PodReplication],
) -> Vec<String> {
    match action {
        TopologyAction::Fence { pods: names } | TopologyAction::Repoint { pods: names, .. } => {
            names
                .iter()
                .filter(|name| find(pods, name).is_some_and(PodReplication::is_master))
                .cloned()
                .collect()
        }
        TopologyAction::ConfirmPrimary { pod, .. } => status
            .switchover_in_flight()
            .map(|s| s.from.clone())
            .filter(|from| from != pod)
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// Decides the next step. Pure: the same inputs always give the same action.
pub fn decide(
    status: &TopologyStatus,
    pods: &[PodReplication],
    policy: &TopologyPolicy,
    now: Timestamp,
) -> TopologyAction {
    if let Some(action) = unsupported_server(pods, policy) {
        return action;
    }
    let stray = stray_replicas(pods);
    if !stray.is_empty() {
        return TopologyAction::Fence { pods: stray };
    }
    let Some(current) = status.current_primary.as_deref() else {
        return replace_before_any_primary(pods, policy)
            .unwrap_or_else(|| choose_from_scratch(pods, policy));
    };
    match &status.target_primary {
        Some(TargetPrimary::Pending) => fence_and_elect(status, current, pods),
        Some(TargetPrimary::Pod(target)) if target != current => {
            continue_failover(status, current, target, pods, policy, now)
        }
        _ => watch_primary(status, current, pods, policy, now),
    }
}

/// A pod running a server the operator does not support gets no command, and neither does any other pod: a
/// mixed instance is not half run. Once the image is changed, such a pod (outdated then) is replaced, one at a
/// time; its claim and data stay.
fn unsupported_server(pods: &[PodReplication], policy: &TopologyPolicy) -> Option<TopologyAction> {
    let (pod, why) = pods.iter().find_map(|p| {
        let why = p.state()?.server.unsupported()?;
        Some((p, why))
    })?;
    if pod.outdated
        && policy.rollout != RolloutPolicy::Controller
        && !pods.iter().any(|p| p.pod_deleting)
    {
        return Some(TopologyAction::DeletePod {
            pod: pod.pod.clone(),
            step: if policy.replicas <= 1 {
                RolloutStep::UpdatingOnlyPod
            } else {
                RolloutStep::UpdatingReplica
            },
        });
    }
    Some(TopologyAction::Stop {
        reason: StopReason::UnsupportedServer {
            pod: pod.pod.clone(),
            why,
        },
    })
}

/// Before any primary was recorded: a pod that cannot be observed and runs an outdated template is
/// replaced, one at a time. No primary ever served, so nothing is lost, and the spec may have been
/// corrected (an image that could not be pulled, a configuration that did not start).
fn replace_before_any_primary(
    pods: &[PodReplication],
    policy: &TopologyPolicy,
) -> Option<TopologyAction> {
    if policy.rollout == RolloutPolicy::Controller || pods.iter().any(|p| p.pod_deleting) {
        return None;
    }
    let pod = pods
        .iter()
        .filter(|p| !p.is_electable() && p.outdated)
        .min_by_key(|p| p.ordinal)?;
    Some(TopologyAction::DeletePod {
        pod: pod.pod.clone(),
        step: if policy.replicas <= 1 {
            RolloutStep::UpdatingOnlyPod
        } else {
            RolloutStep::UpdatingReplica
        },
    })
}

/// No usable primary history: an empty instance starts from its lowest ordinal, the only pod with
/// data is adopted. Of several pods with data, the one a person chose is taken, or else the one whose claim
/// records it was the confirmed primary last (an instance re-created over its claims: the others were its
/// replicas); without either, a person must choose.
fn choose_from_scratch(pods: &[PodReplication], policy: &TopologyPolicy) -> TopologyAction {
    if pods.is_empty() {
        return TopologyAction::Wait {
            reason: WaitReason::NoPods,
        };
    }
    let unobserved: Vec<String> = pods
        .iter()
        .filter(|p| !p.is_electable())
        .map(|p| p.pod.clone())
        .collect();
    if !unobserved.is_empty() {
        return TopologyAction::Wait {
            reason: WaitReason::PodsUnobserved(unobserved),
        };
    }
    let holders: Vec<&PodReplication> = pods.iter().filter(|p| p.holds_data()).collect();
    match holders.as_slice() {
        [] => {
            let lowest = pods.iter().min_by_key(|p| p.ordinal).expect("not empty");
            TopologyAction::Bootstrap {
                primary: lowest.pod.clone(),
            }
        }
        [only] => TopologyAction::Bootstrap {
            primary: only.pod.clone(),
        },
        several => {
            let holder = |name: &Option<String>| {
                several
                    .iter()
                    .find(|p| name.as_deref() == Some(p.pod.as_str()))
            };
            match holder(&policy.chosen_primary).or_else(|| holder(&policy.recorded_primary)) {
                Some(pod) => TopologyAction::Bootstrap {
                    primary: pod.pod.clone(),
                },
                None => TopologyAction::Stop {
                    reason: StopReason::SeveralPodsHoldData(
                        several.iter().map(|p| p.pod.clone()).collect(),
                    ),
                },
            }
        }
    }
}

/// Replicas configured to follow an address that belongs to no pod of the instance: the pod they
/// followed was deleted or came back with another IP. The address may be handed to another server
/// at any moment — a Redis of another instance, whose full sync would replace this instance's data
/// with its own — so they are parked at once, before any other step.
fn stray_replicas(pods: &[PodReplication]) -> Vec<String> {
    pods.iter()
        .filter(|p| {
            p.replica_link().is_some()
                && !pods
                    .iter()
                    .any(|q| !q.endpoint.host.is_empty() && p.follows(&q.endpoint))
        })
        .map(|p| p.pod.clone())
        .collect()
}

/// Servers that could still acknowledge writes for the old primary: the old primary itself if it
/// answers as a master, and every replica configured to follow it. A replica whose link is down
/// right now is parked too: the old primary may come back as a master (a partition heals), and a
/// replica that reconnects would acknowledge its writes with `WAIT` after another pod was
/// promoted.
fn to_fence(old: &str, exclude: Option<&str>, pods: &[PodReplication]) -> Vec<String> {
    let Some(old_pod) = find(pods, old) else {
        return Vec::new();
    };
    pods.iter()
        .filter(|p| Some(p.pod.as_str()) != exclude)
        .filter(|p| {
            (p.pod == old && p.is_master()) || (p.pod != old && p.follows(&old_pod.endpoint))
        })
        .map(|p| p.pod.clone())
        .collect()
}

/// The old primary answers `BUSY`: it may still be a master, and a busy server accepts no
/// `REPLICAOF`. Once its script ends (killed or not) it would accept writes again, so it is shut down
/// before anyone is elected, and whenever it is seen busy again before the new primary is confirmed.
fn busy_old_primary(old: &str, pods: &[PodReplication]) -> Option<TopologyAction> {
    find(pods, old)
        .filter(|p| p.refusal() == Some(Refusal::Busy))
        .map(|p| TopologyAction::ShutDown { pod: p.pod.clone() })
}

/// Whether the recorded primary is still the same process with the same history: it lost nothing.
fn is_intact(status: &TopologyStatus, pod: &PodReplication) -> bool {
    let (Some(run_id), Some(history)) = (&status.primary_run_id, &status.primary_history) else {
        return false;
    };
    pod.is_electable()
        && pod.state().is_some_and(|s| &s.run_id == run_id)
        && pod.shares_history(history)
}

/// `target: Pending`: fence the old primary, then elect.
fn fence_and_elect(
    status: &TopologyStatus,
    current: &str,
    pods: &[PodReplication],
) -> TopologyAction {
    if let Some(busy) = busy_old_primary(current, pods) {
        return busy;
    }
    let fence = to_fence(current, None, pods);
    if !fence.is_empty() {
        return TopologyAction::Fence { pods: fence };
    }
    let election = match &status.primary_history {
        Some(anchor) => elect(anchor, Some(current), pods),
        None => Election::NoSafeCandidate(NoCandidate::NoSharedHistory {
            divergent: Vec::new(),
        }),
    };
    match election {
        Election::Candidate(pod) => TopologyAction::SetTargetPrimary { pod },
        Election::NoSafeCandidate(why) => {
            // The old primary, still the same process with its history, lost nothing: go back.
            // Not through `Bootstrap`, which forgets its run_id: a restart before its promotion
            // would then go unnoticed, and an empty server would be promoted.
            if find(pods, current).is_some_and(|p| is_intact(status, p)) {
                return TopologyAction::AbortFailover {
                    primary: current.to_string(),
                };
            }
            match why {
                NoCandidate::Unobserved { pods } => TopologyAction::Wait {
                    reason: WaitReason::PodsUnobserved(pods),
                },
                // The writes the lacking pods may have lost may still be on the old primary: while
                // it cannot be observed it may come back intact (a partition heals), and is kept.
                NoCandidate::NotResynced { pods: lacking }
                    if find(pods, current).is_none_or(|p| !p.is_observed()) =>
                {
                    TopologyAction::Wait {
                        reason: WaitReason::OldPrimaryMayHoldLostWrites {
                            primary: current.to_string(),
                            pods: lacking,
                        },
                    }
                }
                // The old primary answers but is not intact (it restarted, lost the history, or is
                // being deleted or on a NotReady node): promoting a pod that shares the history
                // could silently give up confirmed writes, so a person decides. Nothing is recorded:
                // a later pass that finds the old primary intact again takes it back.
                NoCandidate::NotResynced { pods: lacking } => TopologyAction::Stop {
                    reason: StopReason::NoSafeCandidate(NoCandidate::NotResynced { pods: lacking }),
                },
                // The pods being deleted or on a NotReady node either come back electable, or
                // return without their data and are handled as above.
                NoCandidate::NewestUnelectable { pods } => TopologyAction::Wait {
                    reason: WaitReason::NewestPodsUnelectable(pods),
                },
                // Data of another history may be stale or may be the newest: a person decides.
                NoCandidate::NoSharedHistory { divergent } if !divergent.is_empty() => {
                    TopologyAction::Stop {
                        reason: StopReason::NoSafeCandidate(NoCandidate::NoSharedHistory {
                            divergent,
                        }),
                    }
                }
                // Nobody else holds data: start again from the only data left (the old primary
                // restarted with persistence), or from scratch when every pod is empty. (A person's or the
                // claims' choice is for an instance without a recorded primary, not for a failover.)
                NoCandidate::NoSharedHistory { .. } => {
                    choose_from_scratch(pods, &TopologyPolicy::default())
                }
            }
        }
    }
}

/// `target: T != current`: fence again if needed, promote T, confirm it.
fn continue_failover(
    status: &TopologyStatus,
    current: &str,
    target: &str,
    pods: &[PodReplication],
    policy: &TopologyPolicy,
    now: Timestamp,
) -> TopologyAction {
    let old_intact = find(pods, current).filter(|old| old.is_master() && is_intact(status, old));
    let switchover = status.switchover_in_flight();
    if let (Some(old), Some(record)) = (old_intact, switchover) {
        // A handover gives up when the target does not catch up in time, and writes resume on the
        // old primary: past the deadline give up the switchover too (whatever became of the target,
        // promoted by a cut handover or not), and try again later rather than force it.
        if now >= record.since.after(policy.switchover_timeout)
            && old
                .state()
                .is_some_and(|s| s.failover_state == FailoverState::None)
        {
            return TopologyAction::AbortSwitchover {
                to: target.to_string(),
                retry_at: now.after(policy.switchover_retry),
            };
        }
    }
    if switchover.is_some() && old_intact.is_none() {
        // The old primary failed (or left the history) during a switchover. Its target was chosen as caught up
        // within `max_lag_bytes`, not as holding every confirmed write, and after a cut handover the old
        // primary may have taken writes once its pause ended: only a handover seen complete (the target a
        // master, the old primary following it) is confirmed; anything else is a failover, whose election
        // finds the pod that holds the most.
        let handed_over = find(pods, target).is_some_and(|t| t.is_master())
            && find(pods, current)
                .is_some_and(|old| find(pods, target).is_some_and(|t| old.follows(&t.endpoint)));
        if !handed_over {
            return TopologyAction::StartFailover {
                failure: PrimaryFailure::SwitchoverInterrupted,
            };
        }
    }
    let Some(target_pod) = find(pods, target).filter(|p| p.is_observed()) else {
        return TopologyAction::Wait {
            reason: WaitReason::TargetUnobserved(target.to_string()),
        };
    };
    if let Some(old) = old_intact {
        // The old primary is healthy (a switchover, or a failed primary that came back intact): hand
        // over (writes paused until the target holds them all), which loses nothing, never by fencing
        // it and promoting a target that may lag behind it.
        if old
            .state()
            .is_some_and(|s| s.failover_state != FailoverState::None)
        {
            return TopologyAction::Wait {
                reason: WaitReason::SwitchoverRunning(current.to_string()),
            };
        }
        let caught_up = target_pod.streams_from(&old.endpoint);
        return match (caught_up, switchover) {
            (true, _) => TopologyAction::Switchover {
                from: current.to_string(),
                to: target.to_string(),
            },
            // A switchover's target lost its link: it may get it back before the deadline.
            (false, Some(_)) => TopologyAction::Wait {
                reason: WaitReason::SwitchoverTargetNotCaughtUp(target.to_string()),
            },
            (false, None) => TopologyAction::AbortFailover {
                primary: current.to_string(),
            },
        };
    }
    if let Some(busy) = busy_old_primary(current, pods) {
        return busy;
    }
    let fence = to_fence(current, Some(target), pods);
    if !fence.is_empty() {
        return TopologyAction::Fence { pods: fence };
    }
    if let (Some(state), Some(history)) = (target_pod.state(), target_pod.history()) {
        if target_pod.is_master() {
            return TopologyAction::ConfirmPrimary {
                pod: target.to_string(),
                run_id: state.run_id.clone(),
                history,
            };
        }
    }
    let keeps_history = status
        .primary_history
        .as_ref()
        .is_some_and(|anchor| target_pod.shares_history(anchor));
    if keeps_history && target_pod.is_electable() {
        TopologyAction::Promote {
            pod: target.to_string(),
        }
    } else {
        TopologyAction::StartFailover {
            failure: PrimaryFailure::TargetLost,
        }
    }
}

/// No failover in flight: confirm, repoint, or detect a failing primary.
fn watch_primary(
    status: &TopologyStatus,
    current: &str,
    pods: &[PodReplication],
    policy: &TopologyPolicy,
    now: Timestamp,
) -> TopologyAction {
    let standalone = policy.replicas <= 1;
    let failure = match find(pods, current) {
        None => PrimaryFailure::PodMissing,
        Some(pod) => match &pod.server {
            // Alive, serving the clients it has: no failover (a new primary would be refused the same
            // way). Its readiness probe is refused too, so pod readiness is not held against it.
            Err(unobserved) if unobserved.refusal.is_some_and(Refusal::presumed_alive) => {
                if pod.pod_deleting {
                    PrimaryFailure::PodDeleting
                } else if !pod.node_ready {
                    PrimaryFailure::NodeNotReady
                } else if status.primary_failing_since.is_some() {
                    return TopologyAction::ClearPrimaryFailing;
                } else {
                    return TopologyAction::Wait {
                        reason: if unobserved.refusal == Some(Refusal::MaxClients) {
                            WaitReason::PrimaryRefusingConnections(current.to_string())
                        } else {
                            WaitReason::OperatorCannotConnect(current.to_string())
                        },
                    };
                }
            }
            Err(unobserved) if unobserved.refusal == Some(Refusal::Busy) => PrimaryFailure::Busy,
            Err(unobserved) => PrimaryFailure::Unreachable(unobserved.reason.clone()),
            Ok(state) if state.loading => PrimaryFailure::Unreachable("loading its dataset".into()),
            Ok(state) => {
                let same_process = status
                    .primary_run_id
                    .as_ref()
                    .is_none_or(|r| r == &state.run_id);
                let same_history = status
                    .primary_history
                    .as_ref()
                    .is_none_or(|anchor| pod.shares_history(anchor));
                if !same_process || (!pod.is_master() && !same_history) {
                    if standalone {
                        // Nobody to fail over to: the restarted server is all there is.
                        return TopologyAction::Bootstrap {
                            primary: current.to_string(),
                        };
                    }
                    return TopologyAction::StartFailover {
                        failure: PrimaryFailure::Restarted,
                    };
                }
                if !pod.is_master() && pod.is_electable() {
                    return TopologyAction::Promote {
                        pod: current.to_string(),
                    };
                }
                let history = pod.history();
                if pod.is_master()
                    && (status.primary_run_id.is_none() || status.primary_history != history)
                {
                    // Same process, new or first replication id (e.g. its backlog was created).
                    if let Some(history) = history {
                        return TopologyAction::ConfirmPrimary {
                            pod: current.to_string(),
                            run_id: state.run_id.clone(),
                            history,
                        };
                    }
                }
                if pod.pod_deleting {
                    PrimaryFailure::PodDeleting
                } else if (!pod.node_ready || !pod.pod_ready)
                    && a_ready_pod_would_take_over(status, current, pods)
                {
                    if !pod.node_ready {
                        PrimaryFailure::NodeNotReady
                    } else {
                        PrimaryFailure::PodNotReady
                    }
                } else {
                    // Ready, or not ready in Kubernetes' eyes only while its server answers and no ready
                    // pod could take over: it stays (the phase still reports the pods that are not ready).
                    return healthy(status, pod, pods, policy, now);
                }
            }
        },
    };
    if standalone {
        // Nobody to fail over to; an outdated server that fails (e.g. a configuration that does
        // not start) is replaced, as the rolling update would replace it anyway.
        return rollout::replace_failing_standalone(pods, current, policy)
            .unwrap_or(TopologyAction::Steady);
    }
    match status.primary_failing_since {
        None => TopologyAction::MarkPrimaryFailing {
            since: now,
            failure,
        },
        Some(since) => {
            let until = since.after(policy.failover_delay);
            if now >= until
                && failure == PrimaryFailure::Busy
                && now < until.after(policy.script_kill_grace)
            {
                // First try to end the script: a primary that serves again needs no failover.
                TopologyAction::KillScript {
                    pod: current.to_string(),
                }
            } else if now >= until {
                TopologyAction::StartFailover { failure }
            } else {
                TopologyAction::WaitFailoverDelay {
                    since,
                    until,
                    failure,
                }
            }
        }
    }
}

/// Whether a failover away from `current`, a primary whose server answers but whose pod or node is not ready,
/// would promote a pod that is ready itself. Otherwise it would move the primary to a pod no better off (e.g.
/// when the node's kubelet stopped reporting, every pod on it turns not ready while the servers serve on), and
/// from there on again, round and round.
fn a_ready_pod_would_take_over(
    status: &TopologyStatus,
    current: &str,
    pods: &[PodReplication],
) -> bool {
    let Some(anchor) = status.primary_history.as_ref() else {
        return false;
    };
    match elect(anchor, Some(current), pods) {
        Election::Candidate(pod) => find(pods, &pod).is_some_and(|p| p.pod_ready && p.node_ready),
        Election::NoSafeCandidate(_) => false,
    }
}

/// The primary is confirmed and healthy: clear a stale failing mark, then bring every other
/// observed server under it.
fn healthy(
    status: &TopologyStatus,
    primary: &PodReplication,
    pods: &[PodReplication],
    policy: &TopologyPolicy,
    now: Timestamp,
) -> TopologyAction {
    if status.primary_failing_since.is_some() {
        return TopologyAction::ClearPrimaryFailing;
    }
    let stray: Vec<String> = pods
        .iter()
        .filter(|p| p.pod != primary.pod && p.is_observed() && !p.pod_deleting)
        .filter(|p| !p.follows(&primary.endpoint))
        .map(|p| p.pod.clone())
        .collect();
    if !stray.is_empty() {
        return TopologyAction::Repoint {
            pods: stray,
            to: primary.pod.clone(),
        };
    }
    // A scale-down would remove the primary: record the switchover first (persisted intent, like
    // a failover's), then `continue_failover` hands over.
    if let ScaleDown::SwitchoverFirst { to } = plan_scale_down(status, pods, policy.replicas) {
        return rollout::switch_over(status, to, SwitchoverReason::ScaleDown, now);
    }
    rollout::plan(status, primary, pods, policy, now)
}

/// What a scale-down to `replicas` pods must do first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScaleDown {
    /// The primary survives the scale-down (or none is recorded yet).
    Safe,
    /// The primary's ordinal would be removed: switch over to this in-sync pod first.
    SwitchoverFirst {
        /// The pod to switch over to.
        to: String,
    },
    /// The primary would be removed and no surviving pod is a safe, in-sync target.
    Blocked,
}

/// Whether scaling down to `replicas` pods would remove the primary, and where to move it first:
/// the most advanced surviving replica that shares the primary's history and is linked to it.
pub fn plan_scale_down(
    status: &TopologyStatus,
    pods: &[PodReplication],
    replicas: u32,
) -> ScaleDown {
    let Some(current) = status.current_primary.as_deref() else {
        return ScaleDown::Safe;
    };
    let Some(primary) = find(pods, current) else {
        return ScaleDown::Blocked;
    };
    if primary.ordinal < replicas {
        return ScaleDown::Safe;
    }
    let Some(anchor) = status.primary_history.as_ref() else {
        return ScaleDown::Blocked;
    };
    rank(anchor, Some(current), pods)
        .into_iter()
        .find(|p| p.ordinal < replicas && p.streams_from(&primary.endpoint))
        .map_or(ScaleDown::Blocked, |p| ScaleDown::SwitchoverFirst {
            to: p.pod.clone(),
        })
}

#[cfg(test)]
mod unsupported_tests {
    use super::*;
    use crate::model::replication::test_pod;
    use crate::model::{ReplicaLink, ServerRole};
    use crate::{ServerName, ServerSoftware, Version};

    fn pods() -> Vec<PodReplication> {
        let replica = ServerRole::Replica(ReplicaLink {
            master_host: "10.0.0.0".into(),
            master_port: 6379,
            link_up: true,
            sync_in_progress: false,
            replica_offset: 100,
        });
        vec![
            test_pod("c-0".into(), 0, ServerRole::Master, "h", 100, 5),
            test_pod("c-1".into(), 1, replica, "h", 100, 5),
        ]
    }

    fn running_6_2(pod: &mut PodReplication) {
        if let Ok(state) = pod.server.as_mut() {
            state.server = ServerSoftware {
                name: ServerName::Redis,
                version: Version(6, 2, 14),
            };
        }
    }

    #[test]
    fn a_pod_of_an_unsupported_server_stops_every_command_until_the_image_changes() {
        let status = TopologyStatus {
            current_primary: Some("c-0".into()),
            ..Default::default()
        };
        let policy = TopologyPolicy {
            replicas: 2,
            ..Default::default()
        };
        let now = Timestamp(1_000_000);
        let steady = decide(&status, &pods(), &policy, now);
        assert!(!matches!(steady, TopologyAction::Stop { .. }), "{steady:?}");
        let mut mixed = pods();
        running_6_2(&mut mixed[1]);
        match decide(&status, &mixed, &policy, now) {
            TopologyAction::Stop {
                reason: reason @ StopReason::UnsupportedServer { .. },
            } => {
                assert_eq!(reason.reason(), crate::Reason::UnsupportedServer);
                assert!(
                    reason
                        .to_string()
                        .contains("pod c-1: redis 6.2.14 is not supported"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        // The image was changed: the pod is outdated and replaced (its claim keeps the data).
        mixed[1].outdated = true;
        assert_eq!(
            decide(&status, &mixed, &policy, now),
            TopologyAction::DeletePod {
                pod: "c-1".into(),
                step: RolloutStep::UpdatingReplica
            }
        );
        // Not while another pod is going away.
        mixed[0].pod_deleting = true;
        assert!(matches!(
            decide(&status, &mixed, &policy, now),
            TopologyAction::Stop { .. }
        ));
    }
}
