//! The RedisInstance phase engine.
//!
//! A RedisInstance is always in one of seven [`Phase`]s. Each reconcile the operator fills an
//! [`Observation`] from what it saw and did, and calls [`step`]:
//!
//! 1. [`classify`] — the only guard — turns the observation into one [`Input`], by a fixed priority;
//! 2. the transition table, declared once with rust-fsm's `state_machine!` (see [`transition`]),
//!    maps `(previous phase, input)` to the next phase; it is total, so every pair is either a
//!    transition or an explicit no-op;
//! 3. the [`Decision`] carries the next phase, a CamelCase [`Reason`], a human message
//!    and, only when the phase changed, a [`Transition`] for the bounded [`History`].
//!
//! [`conditions`] derives the `Ready`/`Progressing`/`Degraded` conditions from a decision, and
//! [`render`]/[`docs_page`] draw the table from the machine itself.
//!
//! Replication has its own pure core beside the phase table: [`PodReplication`] is what the operator
//! observed of each pod's server, [`elect`] chooses a failover candidate, [`decide`] returns the one
//! next [`TopologyAction`] from the persisted [`TopologyStatus`], and [`desired_roles`] says which
//! pod carries which role label (see `docs/replication.md`).
//!
//! The crate is pure: no I/O, no clock (the caller passes `now`), no Kubernetes client.
#![warn(missing_docs)]

mod conditions;
mod decision;
mod diagram;
mod election;
mod handover;
mod history;
mod input;
mod machine;
mod model;
mod observation;
mod phase;
mod reasons;
mod roles;
mod rollout;
mod seed;
mod server;
mod topology;

pub use conditions::{
    condition_types, conditions, replication_conditions, replication_reasons, Condition,
    ReplicationSummary,
};
pub use decision::{step, Decision};
pub use diagram::{docs_page, render, DiagramFormat, UnknownDiagramFormat};
pub use election::{elect, rank, Election};
pub use handover::{
    handover_step, stream_check, HandoverGiveUp, HandoverLimits, HandoverPoll, HandoverStep,
    PrimaryPoll, StreamCheck, TargetPoll,
};
pub use history::{History, Transition, HISTORY_LIMIT, MAX_GENERATION};
pub use input::{classify, Input};
pub use machine::{is_noop, phase_machine, transition};
pub use model::{
    Endpoint, FailoverState, NoCandidate, PodReplication, PrimaryFailure, Refusal, ReplicaLink,
    ReplicationHistory, RolloutPolicy, RolloutStep, ServerRole, ServerState, StopReason,
    SwitchoverReason, SwitchoverRecord, TargetPrimary, Timestamp, TopologyAction, TopologyPolicy,
    TopologyStatus, Unobserved, WaitReason, DEFAULT_FAILOVER_DELAY_SECONDS,
};
pub use observation::{
    Change, FailingPod, Observation, Progress, RolloutIncomplete, RolloutStatus, SpecProblem,
};
pub use phase::Phase;
pub use reasons::Reason;
pub use roles::{
    confirmed_primary, desired_roles, in_sync_replicas, label_patches, replication_pending,
    RoleLabel,
};
pub use rollout::{caught_up, progress as rollout_progress};
pub use seed::{seed_step, SeedStep};
pub use server::{
    image_change_problem, image_problem, image_server, parse_recorded, ServerName, ServerSoftware,
    Version,
};
pub use topology::{decide, demoted_by, plan_scale_down, ScaleDown};
