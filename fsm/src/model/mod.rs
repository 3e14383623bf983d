//! The replication engine's model: what the operator observed of each pod's server
//! ([`PodReplication`]). Types only: the decisions ([`crate::elect`], [`crate::decide`], the
//! rollout and the role labels) depend on them, never the other way round.

pub(crate) mod replication;

pub use replication::{
    Endpoint, FailoverState, PodReplication, Refusal, ReplicaLink, ReplicationHistory, ServerRole,
    ServerState, Unobserved,
};
