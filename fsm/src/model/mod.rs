//! The replication engine's model: what the operator observed of each pod's server
//! ([`PodReplication`]), what it persisted ([`TopologyStatus`]), the knobs it follows
//! ([`TopologyPolicy`]) and the steps it can take ([`TopologyAction`]). Types only: the decisions
//! ([`crate::elect`], [`crate::decide`], the rollout and the role labels) depend on them, never the
//! other way round.

mod action;
mod policy;
pub(crate) mod replication;
mod status;

pub use action::{
    NoCandidate, PrimaryFailure, RolloutStep, StopReason, TopologyAction, WaitReason,
};
pub use policy::{RolloutPolicy, TopologyPolicy, DEFAULT_FAILOVER_DELAY_SECONDS};
pub use replication::{
    Endpoint, FailoverState, PodReplication, Refusal, ReplicaLink, ReplicationHistory, ServerRole,
    ServerState, Unobserved,
};
pub use status::{SwitchoverReason, SwitchoverRecord, TargetPrimary, Timestamp, TopologyStatus};

/// The pod named `name`, if `pods` holds it.
pub(crate) fn find<'a>(pods: &'a [PodReplication], name: &str) -> Option<&'a PodReplication> {
    pods.iter().find(|p| p.pod == name)
}
