//! What the steps of one reconcile found, for its one status write, and whether they go on.

use kube::runtime::controller::Action;
use redis_fsm::{Observation, SpecProblem};

use super::context::Snapshot;
use super::publish::Passes;
use crate::api::RedisInstance;
use crate::observe::rollout::rollout_status;

/// Whether the steps of a reconcile go on with what a step produced, or stop here with what comes next.
pub(super) enum Next<T> {
    /// Go on with this.
    Go(T),
    /// Stop this reconcile; then this.
    Stop(Action),
}

/// What the steps of one reconcile found, for its one status write.
pub(super) struct Report {
    /// The phase engine's input.
    pub(super) observation: Observation,
    /// Whether the status is to be written: not after an API error that tells the user nothing.
    pub(super) publish: bool,
    /// The instance as a step of this reconcile last wrote it: its resourceVersion guards the status write.
    pub(super) recorded: Option<RedisInstance>,
    /// What the passes on the pods found.
    pub(super) passes: Passes,
}

/// Records `problem` for the status; nothing is applied, and the next reconcile comes with a change of the
/// instance or of a watched object (a Secret it names, for instance).
pub(super) fn refuse<T>(snapshot: &Snapshot, problem: SpecProblem, report: &mut Report) -> Next<T> {
    report.observation.spec_problem = Some(problem);
    report.observation.statefulset = snapshot.statefulset.as_deref().map(rollout_status);
    report.publish = true;
    Next::Stop(Action::await_change())
}
