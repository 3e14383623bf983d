//! The vocabulary of the replication engine's decisions: the one next step ([`TopologyAction`]), why it
//! waits or stops, and the status a status write leaves behind ([`TopologyStatus::after`]).

use std::fmt;

use crate::model::{
    ReplicationHistory, SwitchoverReason, SwitchoverRecord, TargetPrimary, Timestamp,
    TopologyStatus,
};
use crate::reasons::Reason;

/// Which step of a rolling update a [`TopologyAction::DeletePod`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RolloutStep {
    /// An outdated replica is replaced.
    UpdatingReplica,
    /// The old primary, a replica since the switchover, is replaced.
    UpdatingOldPrimary,
    /// The only pod of an instance without replicas is replaced (it cannot hand over).
    UpdatingOnlyPod,
}

impl RolloutStep {
    /// The CamelCase reason the phase engine reports for this step.
    pub fn reason(self) -> Reason {
        match self {
            RolloutStep::UpdatingReplica => Reason::UpdatingReplicas,
            RolloutStep::UpdatingOldPrimary => Reason::UpdatingOldPrimary,
            RolloutStep::UpdatingOnlyPod => Reason::StatefulSetUpdating,
        }
    }
}

/// Why no pod can be promoted safely.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoCandidate {
    /// These pods did not answer (or are still loading): any of them may hold the most data.
    Unobserved {
        /// Pod names, in input order.
        pods: Vec<String>,
    },
    /// Other pods share the recorded primary's history, but these observed pods hold none of it:
    /// they restarted empty, are new and still in their initial synchronisation, or are an old
    /// primary not resynced yet. One of them may have been the only replica that received a write
    /// confirmed with `WAIT 1` before it lost its data, so the pods that do share the history may
    /// lack that write.
    NotResynced {
        /// Pod names, in input order.
        pods: Vec<String>,
    },
    /// These pods share the recorded primary's history and are more advanced than every pod that
    /// may be promoted, but they may not be promoted themselves (being deleted, or on a node that
    /// is not Ready): they may hold confirmed writes the others lack.
    NewestUnelectable {
        /// Pod names, in input order.
        pods: Vec<String>,
    },
    /// No pod other than the excluded one holds the recorded primary's history.
    NoSharedHistory {
        /// The electable pods that hold data of another history, in input order.
        divergent: Vec<String>,
    },
}

impl fmt::Display for NoCandidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoCandidate::Unobserved { pods } => write!(
                f,
                "pods {} could not be observed and may hold the newest writes",
                pods.join(", ")
            ),
            NoCandidate::NotResynced { pods } => write!(
                f,
                "pods {} have not (re)synced the primary's replication history and may have lost \
                 confirmed writes that the other replicas lack",
                pods.join(", ")
            ),
            NoCandidate::NewestUnelectable { pods } => write!(
                f,
                "pods {} hold writes that no promotable replica has, but are being deleted or on a \
                 node that is not Ready",
                pods.join(", ")
            ),
            NoCandidate::NoSharedHistory { divergent } if divergent.is_empty() => {
                write!(f, "no replica shares the primary's replication history")
            }
            NoCandidate::NoSharedHistory { divergent } => write!(
                f,
                "no replica shares the primary's replication history; {} hold data of another history",
                divergent.join(", ")
            ),
        }
    }
}

/// Why the current primary is considered failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrimaryFailure {
    /// The primary's pod does not exist.
    PodMissing,
    /// The server did not answer (or is still loading its dataset).
    Unreachable(String),
    /// The pod's `Ready` condition is false.
    PodNotReady,
    /// The pod's node is not `Ready`.
    NodeNotReady,
    /// The pod is being deleted.
    PodDeleting,
    /// The server restarted (new `run_id`) or, as a replica, left the recorded history: its data
    /// may be gone, replicas must not follow it.
    Restarted,
    /// The elected target lost its data or became unelectable before its promotion.
    TargetLost,
    /// The primary failed or left the history during a switchover, before the handover was seen complete.
    SwitchoverInterrupted,
    /// The server answers `BUSY`: a script or function has run past `busy-reply-threshold`, and it
    /// serves no client until that ends. Alive, not unreachable: after the delay its script is killed,
    /// and only a script that cannot be killed (it wrote) leads to a failover that shuts it down.
    Busy,
}

impl fmt::Display for PrimaryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrimaryFailure::PodMissing => write!(f, "the primary's pod does not exist"),
            PrimaryFailure::Unreachable(why) => write!(f, "the primary is unreachable: {why}"),
            PrimaryFailure::PodNotReady => write!(f, "the primary's pod is not ready"),
            PrimaryFailure::NodeNotReady => write!(f, "the primary's node is not ready"),
            PrimaryFailure::PodDeleting => write!(f, "the primary's pod is being deleted"),
            PrimaryFailure::Restarted => write!(
                f,
                "the primary's server restarted or replaced its data; it may have lost writes"
            ),
            PrimaryFailure::TargetLost => write!(
                f,
                "the elected replica lost its data or its node before it was promoted"
            ),
            PrimaryFailure::SwitchoverInterrupted => write!(
                f,
                "the primary failed during a switchover, before the handover was seen complete"
            ),
            PrimaryFailure::Busy => write!(
                f,
                "the primary is busy running a script (BUSY) and serves no client"
            ),
        }
    }
}

/// Why [`crate::decide`] waits without acting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitReason {
    /// The instance has no pod yet.
    NoPods,
    /// These pods must be observed before a primary can be chosen.
    PodsUnobserved(Vec<String>),
    /// The elected target did not answer.
    TargetUnobserved(String),
    /// The failed primary cannot be observed, and these pods have not (re)synced its history: a
    /// write confirmed through one of them before it lost its data may now live on the old primary
    /// only. Nothing is promoted until the old primary returns (it is then kept when it lost
    /// nothing) or these pods hold the history again.
    OldPrimaryMayHoldLostWrites {
        /// The failed primary.
        primary: String,
        /// The observed pods that hold none of its history.
        pods: Vec<String>,
    },
    /// These pods hold more of the primary's history than any pod that may be promoted, but are
    /// being deleted or on a node that is not Ready.
    NewestPodsUnelectable(Vec<String>),
    /// The primary is already running a `FAILOVER` someone else started (writes paused, roles being swapped).
    SwitchoverRunning(String),
    /// A rolling update waits for this pod: it is being re-created, or it is not yet a caught-up
    /// replica of the primary.
    PodCatchingUp(String),
    /// A rolling update waits for its old primary (a replica since the switchover), being replaced
    /// last.
    OldPrimaryBeingReplaced(String),
    /// A supervised rolling update updated every replica; the primary waits for a person to ask
    /// for the switchover.
    SwitchoverNotRequested(String),
    /// The requested switchover target is not a caught-up replica of the primary yet.
    SwitchoverTargetNotCaughtUp(String),
    /// The primary must hand over, but no replica is caught up with it.
    NoCaughtUpReplica,
    /// An earlier switchover was abandoned; the next one may start at this time.
    SwitchoverBackOff(Timestamp),
    /// The primary answers, but refuses new connections (`maxclients` reached): it is alive and serves
    /// the clients it has, so it is not failed over (a new primary would be refused the same way).
    PrimaryRefusingConnections(String),
    /// The operator could not open a connection to the primary for a reason of its own host (no local port
    /// or file descriptor left): nothing is known of the primary, and a failover could not be carried out
    /// either, so it waits.
    OperatorCannotConnect(String),
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::NoPods => write!(f, "no pod exists yet"),
            WaitReason::PodsUnobserved(pods) => write!(
                f,
                "waiting to observe {} before choosing a primary",
                pods.join(", ")
            ),
            WaitReason::TargetUnobserved(pod) => {
                write!(f, "waiting for the elected replica {pod} to answer")
            }
            WaitReason::OldPrimaryMayHoldLostWrites { primary, pods } => write!(
                f,
                "waiting for the old primary {primary} to return: pods {} have not (re)synced its \
                 replication history and may have lost confirmed writes that only {primary} still \
                 holds",
                pods.join(", ")
            ),
            WaitReason::NewestPodsUnelectable(pods) => write!(
                f,
                "waiting for pods {}: they hold writes that no promotable replica has, but are being \
                 deleted or on a node that is not Ready",
                pods.join(", ")
            ),
            WaitReason::SwitchoverRunning(primary) => write!(
                f,
                "{primary} is handing over (FAILOVER: writes paused until the target caught up)"
            ),
            WaitReason::PodCatchingUp(pod) => write!(
                f,
                "waiting for {pod} to be re-created and catch up with the primary"
            ),
            WaitReason::OldPrimaryBeingReplaced(pod) => write!(
                f,
                "waiting for the old primary {pod} to be re-created and catch up with the new primary"
            ),
            WaitReason::SwitchoverNotRequested(primary) => write!(
                f,
                "every replica is updated; the primary {primary} is updated after a switchover, \
                 which waits to be requested (primaryUpdateStrategy: Supervised)"
            ),
            WaitReason::SwitchoverTargetNotCaughtUp(pod) => write!(
                f,
                "the switchover waits for {pod} to be a caught-up replica of the primary"
            ),
            WaitReason::NoCaughtUpReplica => write!(
                f,
                "the switchover waits for a replica to catch up with the primary"
            ),
            WaitReason::PrimaryRefusingConnections(primary) => write!(
                f,
                "the primary {primary} is alive but refuses new connections (max number of clients \
                 reached); it is not failed over"
            ),
            WaitReason::OperatorCannotConnect(primary) => write!(
                f,
                "the operator cannot open connections (its own host is out of local ports or files), so it \
                 cannot observe the primary {primary}; it is not failed over for that"
            ),
            WaitReason::SwitchoverBackOff(at) => write!(
                f,
                "the last switchover did not complete; the next attempt waits until {} ms after \
                 the epoch",
                at.0
            ),
        }
    }
}

/// Why [`crate::decide`] refuses to choose a primary: a person has to. Nothing is recorded: every pass
/// decides again, so the stop ends by itself when the observation changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// No pod can be promoted without risking confirmed writes, and the old primary cannot be
    /// taken back: no pod shares the recorded primary's history while another pod holds data, or
    /// pods that lost the history may have held confirmed writes the others lack
    /// ([`NoCandidate::NotResynced`], with the old primary observed but not intact).
    NoSafeCandidate(NoCandidate),
    /// No primary is recorded, or the recorded history is gone, and several pods hold data.
    SeveralPodsHoldData(Vec<String>),
    /// A pod runs a server the operator does not support (see [`crate::ServerSoftware::unsupported`]), on the
    /// current template: no command is sent to any pod until the image is changed.
    UnsupportedServer {
        /// The pod.
        pod: String,
        /// What it runs and why that is not supported.
        why: String,
    },
}

impl StopReason {
    /// The CamelCase reason, for the condition telling the user manual intervention is needed.
    pub fn reason(&self) -> crate::Reason {
        match self {
            StopReason::NoSafeCandidate(_) => crate::Reason::NoSafeFailoverCandidate,
            StopReason::SeveralPodsHoldData(_) => crate::Reason::DivergentHistories,
            StopReason::UnsupportedServer { .. } => crate::Reason::UnsupportedServer,
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::NoSafeCandidate(why) => {
                write!(f, "no pod can be promoted without losing data: {why}")
            }
            StopReason::SeveralPodsHoldData(pods) => write!(
                f,
                "pods {} hold data and none is recorded as the last primary; choose the one to keep with \
                 the annotation redis-operator.github.io/bootstrap-primary=POD on the instance (the others are \
                 emptied and replicate from it)",
                pods.join(", ")
            ),
            StopReason::UnsupportedServer { pod, why } => write!(
                f,
                "pod {pod}: {why}; change spec.image to a supported release (the pods are then replaced)"
            ),
        }
    }
}

/// The one next step, as returned by [`crate::decide`].
///
/// Status writes: `Bootstrap`, `MarkPrimaryFailing`, `ClearPrimaryFailing`, `StartFailover`,
/// `SetTargetPrimary`, `StartSwitchover`, `AbortSwitchover`, `AbortFailover`, `ConfirmPrimary`
/// ([`TopologyStatus::after`] computes the new status). Commands to servers: `Fence`,
/// `KillScript`, `ShutDown`, `Switchover`, `Promote`, `Repoint`. To the API: `DeletePod`. Nothing to do: `Steady`, `Wait`,
/// `WaitFailoverDelay`, `Stop`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopologyAction {
    /// The topology is as intended.
    Steady,
    /// Nothing can be decided yet.
    Wait {
        /// What is missing.
        reason: WaitReason,
    },
    /// Record `primary` as current and target primary with no history yet; it is then promoted
    /// and confirmed. Used for a fresh instance (every pod empty: the lowest ordinal), to adopt
    /// the only pod that holds data, and to take back a standalone server that restarted.
    Bootstrap {
        /// The pod to make primary.
        primary: String,
    },
    /// Record when the primary was first seen failing.
    MarkPrimaryFailing {
        /// `now` of the pass that first saw it.
        since: Timestamp,
        /// What is wrong.
        failure: PrimaryFailure,
    },
    /// The primary is failing but the delay has not passed yet; look again at `until`.
    WaitFailoverDelay {
        /// When it was first seen failing.
        since: Timestamp,
        /// When the failover may start.
        until: Timestamp,
        /// What is wrong.
        failure: PrimaryFailure,
    },
    /// The primary recovered before the delay passed: forget `primary_failing_since`.
    ClearPrimaryFailing,
    /// Record `targetPrimary: Pending`: the failover starts, the primary label is dropped.
    StartFailover {
        /// Why.
        failure: PrimaryFailure,
    },
    /// Record the elected pod as target primary.
    SetTargetPrimary {
        /// The elected pod.
        pod: String,
    },
    /// Record a switchover from the healthy primary to `to` (target primary and the
    /// [`SwitchoverRecord`]); `Switchover` then hands over.
    StartSwitchover {
        /// The caught-up replica taking over.
        to: String,
        /// Why.
        reason: SwitchoverReason,
        /// `now` of the pass that decided it.
        at: Timestamp,
    },
    /// The switchover did not complete in time (the target could not catch up, or a handover was
    /// cut after promoting it): the current primary stays, the target follows it again, and no
    /// switchover starts before `retry_at`.
    AbortSwitchover {
        /// The pod that was to take over.
        to: String,
        /// When another switchover may start.
        retry_at: Timestamp,
    },
    /// No other pod can be promoted safely, and the failed primary is back as the same process
    /// with its history: it lost nothing, so record it as the target again and forget
    /// `primary_failing_since`. Its recorded `run_id` and history are kept, so a restart before it
    /// is promoted again is still seen as a restart (it is then promoted and confirmed as usual).
    AbortFailover {
        /// The primary that is kept.
        primary: String,
    },
    /// Park these servers (replicate from themselves: read-only, data kept, detached): the old
    /// primary if it still answers as a master, and the replicas following it, so that no write
    /// can be acknowledged on the old primary any more.
    Fence {
        /// Pod names.
        pods: Vec<String>,
    },
    /// The operator's handover from `from`, the healthy primary, to `to` (see [`crate::handover_step`]):
    /// writes paused on `from` until `to` has processed every one, `to` promoted, `from` demoted to its
    /// replica, writes unpaused (answered `READONLY` by `from`), so no acknowledged write is lost; if
    /// `to` does not catch up in time nothing changes and `from` stays the primary (the next pass tries
    /// again until the switchover's deadline).
    Switchover {
        /// The current primary.
        from: String,
        /// The in-sync replica taking over.
        to: String,
    },
    /// `SCRIPT KILL` (or `FUNCTION KILL`) on the busy primary, once the failover delay has passed:
    /// a script that has not written ends, and the primary serves again without a failover.
    KillScript {
        /// The busy primary.
        pod: String,
    },
    /// `SHUTDOWN NOSAVE NOW` on a busy server that a failover must fence: a script that wrote cannot
    /// be killed, and a busy server accepts neither `REPLICAOF` nor `CLIENT KILL`, so stopping the
    /// process is the only fence. Its container restarts parked (the boot guard); the script's writes,
    /// never replicated nor acknowledged, are discarded.
    ShutDown {
        /// The busy server.
        pod: String,
    },
    /// `REPLICAOF NO ONE` on this pod.
    Promote {
        /// The pod to promote.
        pod: String,
    },
    /// Record the promoted pod as current primary, with its `run_id` and replication history.
    ConfirmPrimary {
        /// The primary.
        pod: String,
        /// Its `run_id`.
        run_id: String,
        /// Its replication ids.
        history: ReplicationHistory,
    },
    /// `REPLICAOF <to>` on these pods: masters that are not the primary, and replicas following
    /// anything else.
    Repoint {
        /// Pod names.
        pods: Vec<String>,
        /// The confirmed primary.
        to: String,
    },
    /// Delete this outdated pod so its StatefulSet re-creates it at the update revision: one step
    /// of a rolling update that the operator orders (replicas first, the primary last).
    DeletePod {
        /// The pod.
        pod: String,
        /// Which step of the rolling update this is.
        step: RolloutStep,
    },
    /// Manual intervention is needed; nothing is done until the observation changes.
    Stop {
        /// Why.
        reason: StopReason,
    },
}

impl TopologyAction {
    /// Whether the action is a status write.
    pub fn is_status_write(&self) -> bool {
        TopologyStatus::default().after(self).is_some()
    }

    /// Whether the action is a command: to servers, or (`DeletePod`) to the API server.
    pub fn is_command(&self) -> bool {
        matches!(
            self,
            TopologyAction::Fence { .. }
                | TopologyAction::KillScript { .. }
                | TopologyAction::ShutDown { .. }
                | TopologyAction::Switchover { .. }
                | TopologyAction::Promote { .. }
                | TopologyAction::Repoint { .. }
                | TopologyAction::DeletePod { .. }
        )
    }
}

impl TopologyStatus {
    /// The status after the status write `action`, or `None` when `action` is not a status write.
    pub fn after(&self, action: &TopologyAction) -> Option<TopologyStatus> {
        let mut next = self.clone();
        match action {
            TopologyAction::Bootstrap { primary } => {
                next = TopologyStatus {
                    current_primary: Some(primary.clone()),
                    target_primary: Some(TargetPrimary::Pod(primary.clone())),
                    ..TopologyStatus::default()
                };
            }
            TopologyAction::MarkPrimaryFailing { since, .. } => {
                next.primary_failing_since = Some(*since)
            }
            TopologyAction::ClearPrimaryFailing => next.primary_failing_since = None,
            TopologyAction::StartFailover { .. } => {
                next.target_primary = Some(TargetPrimary::Pending);
                next.switchover = None;
            }
            TopologyAction::StartSwitchover { to, reason, at } => {
                next.target_primary = Some(TargetPrimary::Pod(to.clone()));
                next.switchover = self.current_primary.clone().map(|from| SwitchoverRecord {
                    from,
                    reason: *reason,
                    since: *at,
                });
                next.switchover_retry_at = None;
            }
            TopologyAction::AbortSwitchover { retry_at, .. } => {
                next.target_primary = self.current_primary.clone().map(TargetPrimary::Pod);
                next.switchover = None;
                next.switchover_retry_at = Some(*retry_at);
            }
            TopologyAction::SetTargetPrimary { pod } => {
                next.target_primary = Some(TargetPrimary::Pod(pod.clone()))
            }
            TopologyAction::AbortFailover { primary } => {
                next.current_primary = Some(primary.clone());
                next.target_primary = Some(TargetPrimary::Pod(primary.clone()));
                next.primary_failing_since = None;
            }
            TopologyAction::ConfirmPrimary {
                pod,
                run_id,
                history,
            } => {
                next = TopologyStatus {
                    current_primary: Some(pod.clone()),
                    target_primary: Some(TargetPrimary::Pod(pod.clone())),
                    primary_failing_since: None,
                    primary_history: Some(history.clone()),
                    primary_run_id: Some(run_id.clone()),
                    // The switchover that completed, if this confirms one.
                    switchover: self.switchover.clone(),
                    switchover_retry_at: None,
                };
            }
            TopologyAction::Steady
            | TopologyAction::Wait { .. }
            | TopologyAction::WaitFailoverDelay { .. }
            | TopologyAction::Fence { .. }
            | TopologyAction::KillScript { .. }
            | TopologyAction::ShutDown { .. }
            | TopologyAction::Switchover { .. }
            | TopologyAction::Promote { .. }
            | TopologyAction::Repoint { .. }
            | TopologyAction::DeletePod { .. }
            | TopologyAction::Stop { .. } => return None,
        }
        Some(next)
    }
}
