//! One reconcile's decision: guard, table, then reason and message.

use crate::history::Transition;
use crate::input::{classify, Input};
use crate::machine::transition;
use crate::observation::{Change, Observation};
use crate::phase::Phase;
use crate::reasons::Reason;

/// What [`step`] decided for one reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The input the guard chose.
    pub input: Input,
    /// The next phase.
    pub phase: Phase,
    /// The reason.
    pub reason: Reason,
    /// The human message.
    pub message: String,
    /// The phase change to record; `Some` only when `phase` differs from the previous phase.
    pub transition: Option<Transition>,
}

/// Decides the next phase from the previous one and what this reconcile observed.
///
/// `now` (RFC 3339, supplied by the caller) is only used for the [`Transition`], which exists only
/// when the phase changes. Repeating the same observation is idempotent: the second step keeps the
/// phase and records no transition.
pub fn step(previous: Phase, observation: &Observation, now: &str) -> Decision {
    let input = classify(observation);
    // The table is total (tested); a missing entry would be a no-op.
    let phase = transition(previous, input).unwrap_or(previous);
    let (reason, message) = explain(input, phase, observation);
    let transition = (phase != previous).then(|| Transition {
        from: previous,
        to: phase,
        reason: reason.to_string(),
        message: message.clone(),
        time: now.to_owned(),
        generation: observation.generation,
    });
    Decision {
        input,
        phase,
        reason,
        message,
        transition,
    }
}

/// Reason and message for landing in `phase` because of `input`.
fn explain(input: Input, phase: Phase, observation: &Observation) -> (Reason, String) {
    let n = observation.spec_replicas;
    let sts = observation.statefulset.as_ref();
    let ready = sts.map_or(0, |s| s.ready_replicas);
    let updated = sts.map_or(0, |s| s.updated_replicas);
    match (phase, input) {
        (Phase::Terminated, _) => (
            Reason::Deleting,
            "Deletion requested; children are being removed".into(),
        ),
        (Phase::Failed, _) => failure(observation),
        (Phase::Updating, Input::ChangeApplied) => {
            let (reason, what) = match observation.change {
                Change::Restart => (
                    Reason::StatefulSetRestart,
                    "Configuration changed; restarting pods",
                ),
                Change::StorageChange => (
                    Reason::StatefulSetRestart,
                    "Storage changed; StatefulSet replaced and pods restarting",
                ),
                Change::LiveConfig => (
                    Reason::ConfigAppliedLive,
                    "Configuration changed; set at runtime on every pod, no restart",
                ),
                _ => (
                    Reason::StatefulSetUpdate,
                    "Applying new image/replicas/resources to StatefulSet",
                ),
            };
            (reason, with_note(what, observation))
        }
        (Phase::Updating, Input::FailingOver) => (
            if observation.switchover {
                Reason::Switchover
            } else {
                Reason::Failover
            },
            observation.failover.clone().unwrap_or_default(),
        ),
        (Phase::Updating, Input::ChildrenCreated) => (
            Reason::StatefulSetRecreated,
            with_note(
                "StatefulSet recreated; pods are being replaced",
                observation,
            ),
        ),
        (Phase::Updating, Input::StatefulSetNotObserved) => (
            Reason::StatefulSetUpdating,
            "StatefulSet is being updated; its status is not observed yet".into(),
        ),
        (Phase::Updating, Input::RolloutProgressing | Input::PartiallyReady)
            if observation.rollout.is_some() =>
        {
            let (reason, message) = observation
                .rollout
                .as_ref()
                .map_or((Reason::StatefulSetUpdating, ""), |step| {
                    (step.reason, step.message.as_str())
                });
            (
                reason,
                with_replication(
                    format!("{message}. Updated: {updated}/{n}, Ready: {ready}/{n}"),
                    observation,
                ),
            )
        }
        (Phase::Updating, _) => (
            Reason::StatefulSetUpdating,
            with_replication(
                format!("StatefulSet is being updated. Updated: {updated}/{n}, Ready: {ready}/{n}"),
                observation,
            ),
        ),
        (Phase::Creating, Input::ChildrenCreated) => (
            Reason::Creating,
            with_note("Created StatefulSet and children", observation),
        ),
        (Phase::Creating, Input::StatefulSetNotObserved) => (
            Reason::Creating,
            "Waiting for the StatefulSet to be observed".into(),
        ),
        (Phase::Creating, _) => (
            Reason::Creating,
            with_replication(
                format!("Creating pods. Updated: {updated}/{n}, Ready: {ready}/{n}"),
                observation,
            ),
        ),
        (Phase::Pending, Input::StatefulSetNotObserved) => (
            Reason::PodsPending,
            "Waiting for pods to become ready; the StatefulSet is not observed yet".into(),
        ),
        (Phase::Pending, _) => (
            Reason::PodsPending,
            with_replication(
                format!("Waiting for pods to become ready. Ready: {ready}/{n}"),
                observation,
            ),
        ),
        (Phase::Running, _) => (
            Reason::AllReplicasReady,
            format!("All {ready}/{n} replicas are ready"),
        ),
        // No table entry leads to Unknown; kept total for the match.
        (Phase::Unknown, _) => (Reason::Creating, "No phase decided yet".into()),
    }
}

/// `message`, followed by what scheduling, replication and the live configuration still wait for, if anything.
fn with_replication(message: String, observation: &Observation) -> String {
    [
        &observation.scheduling_pending,
        &observation.replication_pending,
        &observation.config_pending,
    ]
    .into_iter()
    .flatten()
    .fold(message, |message, pending| format!("{message}; {pending}"))
}

/// Reason and message for [`Phase::Failed`], from the highest-priority cause present.
fn failure(observation: &Observation) -> (Reason, String) {
    if let Some(problem) = &observation.spec_problem {
        return (problem.reason, problem.message.clone());
    }
    if let Some(message) = &observation.missing_child {
        // Already a sentence that says what is missing and why; appending to it doubled " is missing".
        return (Reason::ChildMissing, message.clone());
    }
    if let Some(problem) = &observation.manual_intervention {
        return (problem.reason, problem.message.clone());
    }
    let pods = &observation.failing_pods;
    let message = match pods.first() {
        None => "Pods are failing".to_owned(),
        Some(first) => format!(
            "{} failing; {}: {}: {}",
            count(pods.len(), "pod"),
            first.pod,
            first.reason,
            first.message
        ),
    };
    (Reason::PodsFailing, message)
}

/// `"1 pod"`, `"2 pods"`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `text`, followed by the reconciler's change note when there is one.
fn with_note(text: &str, observation: &Observation) -> String {
    match &observation.change_note {
        Some(note) if !note.is_empty() => format!("{text}; {note}"),
        _ => text.to_owned(),
    }
}
