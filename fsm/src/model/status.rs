//! What the replication engine persists in the instance's status: the only memory [`crate::decide`] has.

use std::fmt;
use std::time::Duration;

use crate::model::ReplicationHistory;

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

/// The topology fields persisted in the instance's status; the only memory [`crate::decide`] has.
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

/// A switchover, as persisted before its handover starts.
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
}
