//! The knobs of `spec.replication` and `spec.replicas` the replication engine follows.

use std::time::Duration;

/// The default of `spec.replication.failoverDelaySeconds`, see `docs/replication.md`.
pub const DEFAULT_FAILOVER_DELAY_SECONDS: u64 = 10;

/// The knobs of `spec.replication` and `spec.replicas` that [`crate::decide`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyPolicy {
    /// `spec.replicas`; with 1 there is no replica to fail over to.
    pub replicas: u32,
    /// How long the primary must be failing before a failover starts.
    pub failover_delay: Duration,
    /// How long a switchover may take, from its record to the target's confirmation, before it
    /// is abandoned (two handovers' wait plus slack for the passes around them).
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
    /// With no primary recorded and several pods holding data (an instance re-created over its retained
    /// claims): the pod a person chose to start from (the `redis-operator.github.io/bootstrap-primary` annotation).
    pub chosen_primary: Option<String>,
    /// Likewise, the pod whose data claim the operator marked last as the confirmed primary's: taken when no
    /// person chose.
    pub recorded_primary: Option<String>,
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
            chosen_primary: None,
            recorded_primary: None,
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
