//! One reconcile's decision: guard, table, then reason and message.

use crate::history::Transition;
use crate::input::{classify, Input};
use crate::machine::transition;
use crate::observation::{Change, Observation};
use crate::phase::Phase;
use crate::reasons;

/// What [`step`] decided for one reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The input the guard chose.
    pub input: Input,
    /// The next phase.
    pub phase: Phase,
    /// The CamelCase machine reason (see [`crate::reasons`]).
    pub reason: String,
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
        reason: reason.clone(),
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
fn explain(input: Input, phase: Phase, observation: &Observation) -> (String, String) {
    let n = observation.spec_replicas;
    let sts = observation.statefulset.as_ref();
    let ready = sts.map_or(0, |s| s.ready_replicas);
    let updated = sts.map_or(0, |s| s.updated_replicas);
    match (phase, input) {
        (Phase::Terminated, _) => (
            reasons::DELETING.into(),
            "Deletion requested; children are being removed".into(),
        ),
        (Phase::Failed, _) => failure(observation),
        (Phase::Updating, Input::ChangeApplied) => {
            let (reason, what) = match observation.change {
                Change::Restart => (
                    reasons::STATEFULSET_RESTART,
                    "Configuration changed; restarting pods",
                ),
                Change::StorageChange => (
                    reasons::STATEFULSET_RESTART,
                    "Storage changed; StatefulSet replaced and pods restarting",
                ),
                Change::LiveConfig => (
                    reasons::CONFIG_APPLIED_LIVE,
                    "Configuration changed; set at runtime on every pod, no restart",
                ),
                _ => (
                    reasons::STATEFULSET_UPDATE,
                    "Applying new image/replicas/resources to StatefulSet",
                ),
            };
            (reason.into(), with_note(what, observation))
        }
        (Phase::Updating, Input::FailingOver) => (
            if observation.switchover {
                reasons::SWITCHOVER.into()
            } else {
                reasons::FAILOVER.into()
            },
            observation.failover.clone().unwrap_or_default(),
        ),
        (Phase::Updating, Input::ChildrenCreated) => (
            reasons::STATEFULSET_RECREATED.into(),
            with_note(
                "StatefulSet recreated; pods are being replaced",
                observation,
            ),
        ),
        (Phase::Updating, Input::StatefulSetNotObserved) => (
            reasons::STATEFULSET_UPDATING.into(),
            "StatefulSet is being updated; its status is not observed yet".into(),
        ),
        (Phase::Updating, Input::RolloutProgressing | Input::PartiallyReady)
            if observation.rollout.is_some() =>
        {
            let step = observation.rollout.clone().unwrap_or_default();
            (
                step.reason,
                with_replication(
                    format!(
                        "{}. Updated: {updated}/{n}, Ready: {ready}/{n}",
                        step.message
                    ),
                    observation,
                ),
            )
        }
        (Phase::Updating, _) => (
            reasons::STATEFULSET_UPDATING.into(),
            with_replication(
                format!("StatefulSet is being updated. Updated: {updated}/{n}, Ready: {ready}/{n}"),
                observation,
            ),
        ),
        (Phase::Creating, Input::ChildrenCreated) => (
            reasons::CREATING.into(),
            with_note("Created StatefulSet and children", observation),
        ),
        (Phase::Creating, Input::StatefulSetNotObserved) => (
            reasons::CREATING.into(),
            "Waiting for the StatefulSet to be observed".into(),
        ),
        (Phase::Creating, _) => (
            reasons::CREATING.into(),
            with_replication(
                format!("Creating pods. Updated: {updated}/{n}, Ready: {ready}/{n}"),
                observation,
            ),
        ),
        (Phase::Pending, Input::StatefulSetNotObserved) => (
            reasons::PODS_PENDING.into(),
            "Waiting for pods to become ready; the StatefulSet is not observed yet".into(),
        ),
        (Phase::Pending, _) => (
            reasons::PODS_PENDING.into(),
            with_replication(
                format!("Waiting for pods to become ready. Ready: {ready}/{n}"),
                observation,
            ),
        ),
        (Phase::Running, _) => (
            reasons::ALL_REPLICAS_READY.into(),
            format!("All {ready}/{n} replicas are ready"),
        ),
        // No table entry leads to Unknown; kept total for the match.
        (Phase::Unknown, _) => (reasons::CREATING.into(), "No phase decided yet".into()),
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
fn failure(observation: &Observation) -> (String, String) {
    if let Some(problem) = &observation.spec_problem {
        let reason = if problem.reason.is_empty() {
            reasons::INVALID_SPEC
        } else {
            &problem.reason
        };
        return (reason.to_owned(), problem.message.clone());
    }
    if let Some(message) = &observation.missing_child {
        // Already a sentence that says what is missing and why; appending to it doubled " is missing".
        return (reasons::CHILD_MISSING.into(), message.clone());
    }
    if let Some(problem) = &observation.manual_intervention {
        return (problem.reason.clone(), problem.message.clone());
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
    (reasons::PODS_FAILING.into(), message)
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
