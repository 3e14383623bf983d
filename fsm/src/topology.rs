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

use std::fmt;
use std::time::Duration;

use crate::election::{elect, rank, Election, NoCandidate};
use crate::model::{FailoverState, PodReplication, Refusal, ReplicationHistory};
use crate::rollout::{self, RolloutStep};

/// The default of `spec.replication.failoverDelaySeconds`, see `docs/replication.md`.
pub const DEFAULT_FAILOVER_DELAY_SECONDS: u64 = 10;

/// A point in time supplied by the caller, in milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// This time plus `duration` (saturating).
    pub fn after(self, duration: Duration) -> Timestamp {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }
}

/// Which pod a failover in flight is moving the primary to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPrimary {
    /// The failover started, the old primary is being fenced, no pod is elected yet.
    Pending,
    /// This pod is being promoted.
    Pod(String),
}

/// The topology fields persisted in the instance's status; the only memory [`decide`] has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopologyStatus {
    /// `status.currentPrimary`: the pod that is (or was last) the confirmed primary.
    pub current_primary: Option<String>,
    /// `status.targetPrimary`: differs from `current_primary` while a failover is in flight.
    /// `None` means "same as current".
    pub target_primary: Option<TargetPrimary>,
    /// `status.primaryFailingSince`: when the current primary was first seen failing.
    pub primary_failing_since: Option<Timestamp>,
    /// `status.primaryReplicationId` and `primaryReplicationId2`: the confirmed primary's
    /// history, which a failover candidate must share. `None` until the primary is confirmed.
    pub primary_history: Option<ReplicationHistory>,
    /// `status.primaryRunId`: the confirmed primary's `run_id`; a different one means it restarted.
    pub primary_run_id: Option<String>,
    /// `status.switchover`: the switchover in flight (while a target other than the current
    /// primary is recorded), or else the last one that completed. `None` after a failover.
    pub switchover: Option<SwitchoverRecord>,
    /// `status.switchoverRetryAt`: a switchover that did not complete was abandoned; no new one
    /// starts before this time.
    pub switchover_retry_at: Option<Timestamp>,
}

/// Why a healthy primary hands over to a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SwitchoverReason {
    /// A scale-down removes the primary's ordinal.
    ScaleDown,
    /// A rolling update replaced every replica; the primary is updated last.
    Rollout,
    /// A person asked for it (the switchover annotation).
    Requested,
    /// The primary's node is cordoned (unschedulable): hand over before a drain evicts it.
    NodeCordoned,
}

impl SwitchoverReason {
    /// Every reason.
    pub const ALL: [SwitchoverReason; 4] = [
        SwitchoverReason::ScaleDown,
        SwitchoverReason::Rollout,
        SwitchoverReason::Requested,
        SwitchoverReason::NodeCordoned,
    ];

    /// The CamelCase name, as persisted in status.
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchoverReason::ScaleDown => "ScaleDown",
            SwitchoverReason::Rollout => "Rollout",
            SwitchoverReason::Requested => "Requested",
            SwitchoverReason::NodeCordoned => "NodeCordoned",
        }
    }

    /// The reason named `text` ([`SwitchoverReason::as_str`]).
    pub fn parse(text: &str) -> Option<SwitchoverReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for SwitchoverReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SwitchoverReason::ScaleDown => "the scale-down removes the primary's ordinal",
            SwitchoverReason::Rollout => "rolling update, the primary is updated last",
            SwitchoverReason::Requested => "requested",
            SwitchoverReason::NodeCordoned => "the primary's node is cordoned",
        })
    }
}

/// A switchover, as persisted before its `FAILOVER TO` is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchoverRecord {
    /// The primary handing over.
    pub from: String,
    /// Why.
    pub reason: SwitchoverReason,
    /// When it was recorded; it is abandoned when it has not completed within the policy's
    /// `switchover_timeout`.
    pub since: Timestamp,
}

impl TopologyStatus {
    /// The switchover in flight, if the move in flight is one (and not a failover).
    pub fn switchover_in_flight(&self) -> Option<&SwitchoverRecord> {
        self.switchover
            .as_ref()
            .filter(|_| self.failover_in_flight())
    }

    /// Whether a failover is in flight (a target other than the current primary is recorded).
    pub fn failover_in_flight(&self) -> bool {
        match &self.target_primary {
            None => false,
            Some(TargetPrimary::Pending) => true,
            Some(TargetPrimary::Pod(pod)) => self.current_primary.as_deref() != Some(pod),
        }
    }

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

/// The knobs of `spec.replication` and `spec.replicas` that [`decide`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyPolicy {
    /// `spec.replicas`; with 1 there is no replica to fail over to.
    pub replicas: u32,
    /// How long the primary must be failing before a failover starts.
    pub failover_delay: Duration,
    /// How long a switchover may take, from its record to the target's confirmation, before it
    /// is abandoned (Redis's own `FAILOVER` timeout plus slack for the passes around it).
    pub switchover_timeout: Duration,
    /// How long to wait after an abandoned switchover before starting another.
    pub switchover_retry: Duration,
    /// How far behind the primary, in bytes, a replica may be and still count as caught up.
    pub max_lag_bytes: u64,
    /// Who orders the pod replacements of a rolling update.
    pub rollout: RolloutPolicy,
    /// A switchover a person asked for: the pod to make primary.
    pub switchover_request: Option<String>,
    /// How long, once the failover delay has passed, the operator tries to end a busy primary's script
    /// (`KillScript`) before it fails over and shuts the busy server down (`ShutDown`).
    pub script_kill_grace: Duration,
}

impl Default for TopologyPolicy {
    fn default() -> Self {
        TopologyPolicy {
            replicas: 1,
            failover_delay: Duration::from_secs(DEFAULT_FAILOVER_DELAY_SECONDS),
            switchover_timeout: Duration::from_secs(12),
            switchover_retry: Duration::from_secs(30),
            max_lag_bytes: 1024 * 1024,
            rollout: RolloutPolicy::default(),
            switchover_request: None,
            script_kill_grace: Duration::from_secs(2),
        }
    }
}

/// How a rolling update replaces pods (`spec.replication.primaryUpdateStrategy` and the
/// operator's rollout mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RolloutPolicy {
    /// The operator deletes outdated pods one at a time, replicas first, switches over to an
    /// updated replica, and updates the old primary last.
    #[default]
    PrimaryLast,
    /// As `PrimaryLast`, but the switchover waits until a person asks for it.
    Supervised,
    /// The StatefulSet controller replaces pods itself; the operator does not order them.
    Controller,
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
            PrimaryFailure::Busy => write!(
                f,
                "the primary is busy running a script (BUSY) and serves no client"
            ),
        }
    }
}

/// Why [`decide`] waits without acting.
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
    /// The primary is already running a `FAILOVER` (writes paused, roles being swapped).
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
            WaitReason::SwitchoverBackOff(at) => write!(
                f,
                "the last switchover did not complete; the next attempt waits until {} ms after \
                 the epoch",
                at.0
            ),
        }
    }
}

/// Why [`decide`] refuses to choose a primary: a person has to. Nothing is recorded: every pass
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
}

impl StopReason {
    /// The CamelCase reason, for the condition telling the user manual intervention is needed.
    pub fn reason(&self) -> crate::Reason {
        match self {
            StopReason::NoSafeCandidate(_) => crate::Reason::NoSafeFailoverCandidate,
            StopReason::SeveralPodsHoldData(_) => crate::Reason::DivergentHistories,
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
                "pods {} hold data of different replication histories; choose which to keep",
                pods.join(", ")
            ),
        }
    }
}

/// The one next step, as returned by [`decide`].
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
    /// [`SwitchoverRecord`]); `Switchover` then hands over with `FAILOVER TO`.
    StartSwitchover {
        /// The caught-up replica taking over.
        to: String,
        /// Why.
        reason: SwitchoverReason,
        /// `now` of the pass that decided it.
        at: Timestamp,
    },
    /// The switchover did not complete in time (the target could not catch up, or Redis rolled
    /// the `FAILOVER` back): the current primary stays, and no switchover starts before
    /// `retry_at`.
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
    /// `FAILOVER TO <to> TIMEOUT ..` on `from`, the healthy primary: Redis pauses writes until `to`
    /// has caught up, then swaps the roles, so no acknowledged write is lost; on a timeout it rolls
    /// back and `from` stays the primary (the next pass tries again).
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

pub(crate) fn find<'a>(pods: &'a [PodReplication], name: &str) -> Option<&'a PodReplication> {
    pods.iter().find(|p| p.pod == name)
}

/// Decides the next step. Pure: the same inputs always give the same action.
pub fn decide(
    status: &TopologyStatus,
    pods: &[PodReplication],
    policy: &TopologyPolicy,
    now: Timestamp,
) -> TopologyAction {
    let stray = stray_replicas(pods);
    if !stray.is_empty() {
        return TopologyAction::Fence { pods: stray };
    }
    let Some(current) = status.current_primary.as_deref() else {
        return replace_before_any_primary(pods, policy)
            .unwrap_or_else(|| choose_from_scratch(pods));
    };
    match &status.target_primary {
        Some(TargetPrimary::Pending) => fence_and_elect(status, current, pods),
        Some(TargetPrimary::Pod(target)) if target != current => {
            continue_failover(status, current, target, pods, policy, now)
        }
        _ => watch_primary(status, current, pods, policy, now),
    }
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
/// data is adopted, several pods with data need a person.
fn choose_from_scratch(pods: &[PodReplication]) -> TopologyAction {
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
        several => TopologyAction::Stop {
            reason: StopReason::SeveralPodsHoldData(
                several.iter().map(|p| p.pod.clone()).collect(),
            ),
        },
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
                // restarted with persistence), or from scratch when every pod is empty.
                NoCandidate::NoSharedHistory { .. } => choose_from_scratch(pods),
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
        // Redis gives up a FAILOVER that does not finish within its timeout, and writes resume on
        // the old primary: give up too (whatever became of the target), and try again later rather
        // than force it.
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
    let Some(target_pod) = find(pods, target).filter(|p| p.is_observed()) else {
        return TopologyAction::Wait {
            reason: WaitReason::TargetUnobserved(target.to_string()),
        };
    };
    if let Some(old) = old_intact {
        // The old primary is healthy (a switchover, or a failed primary that came back intact): hand
        // over with FAILOVER TO, which loses nothing, never by fencing it and promoting a target
        // that may lag behind it.
        if old
            .state()
            .is_some_and(|s| s.failover_state != FailoverState::None)
        {
            return TopologyAction::Wait {
                reason: WaitReason::SwitchoverRunning(current.to_string()),
            };
        }
        let caught_up = target_pod.linked_to(&old.endpoint)
            && target_pod
                .replica_link()
                .is_some_and(|link| !link.sync_in_progress);
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
            Err(unobserved) if unobserved.refusal == Some(Refusal::MaxClients) => {
                if pod.pod_deleting {
                    PrimaryFailure::PodDeleting
                } else if !pod.node_ready {
                    PrimaryFailure::NodeNotReady
                } else if status.primary_failing_since.is_some() {
                    return TopologyAction::ClearPrimaryFailing;
                } else {
                    return TopologyAction::Wait {
                        reason: WaitReason::PrimaryRefusingConnections(current.to_string()),
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
    // a failover's), then `continue_failover` hands over with FAILOVER TO.
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
        .find(|p| {
            p.ordinal < replicas
                && p.linked_to(&primary.endpoint)
                && p.replica_link().is_some_and(|l| !l.sync_in_progress)
        })
        .map_or(ScaleDown::Blocked, |p| ScaleDown::SwitchoverFirst {
            to: p.pod.clone(),
        })
}
