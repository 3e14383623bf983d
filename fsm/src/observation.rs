//! What the reconciler saw and did in one reconcile: the engine's only input.

use std::fmt;

use crate::reasons::Reason;

/// What the reconciler did to the StatefulSet in this very reconcile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Change {
    /// Nothing was changed.
    #[default]
    None,
    /// The StatefulSet and the other children were created for the first time.
    Created,
    /// Replicas, image or resources were changed in place (reason `StatefulSetUpdate`).
    RollingUpdate,
    /// The configuration hash changed, so pods restart (reason `StatefulSetRestart`).
    Restart,
    /// Claims were expanded or the StatefulSet was replaced by an orphaning delete
    /// (reason `StatefulSetRestart`).
    StorageChange,
    /// Only the configuration changed, and only in directives Redis sets at runtime: the ConfigMap was
    /// updated and the values are set on every pod without a restart (reason `ConfigAppliedLive`).
    LiveConfig,
}

/// The rollout state of the StatefulSet, copied from its metadata and status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutStatus {
    /// `metadata.generation`.
    pub generation: i64,
    /// `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    /// `status.replicas`: pods the controller currently has.
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready_replicas: i32,
    /// `status.updatedReplicas`: pods at the update revision.
    pub updated_replicas: i32,
    /// `status.currentRevision`.
    pub current_revision: Option<String>,
    /// `status.updateRevision`.
    pub update_revision: Option<String>,
}

/// Why a StatefulSet rollout is not done yet, in the order [`RolloutStatus::incomplete`] checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutIncomplete {
    /// The controller has not observed the latest generation.
    GenerationNotObserved {
        /// `metadata.generation`.
        generation: i64,
        /// `status.observedGeneration`.
        observed: Option<i64>,
    },
    /// The StatefulSet does not have the replica count the spec asks for yet.
    Scaling {
        /// Replicas the RedisInstance spec asks for.
        desired: i32,
        /// `status.replicas`.
        current: i32,
    },
    /// Some pods still run an outdated revision.
    ReplicasOutdated {
        /// `status.updatedReplicas`.
        updated: i32,
        /// `status.replicas`.
        replicas: i32,
    },
    /// `status.currentRevision` differs from `status.updateRevision`.
    RevisionMismatch {
        /// `status.currentRevision`.
        current: Option<String>,
        /// `status.updateRevision`.
        update: Option<String>,
    },
}

impl fmt::Display for RolloutIncomplete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RolloutIncomplete::GenerationNotObserved {
                generation,
                observed,
            } => match observed {
                Some(observed) => write!(
                    f,
                    "generation {generation} not observed yet (observed {observed})"
                ),
                None => write!(f, "generation {generation} not observed yet"),
            },
            RolloutIncomplete::Scaling { desired, current } => {
                write!(f, "scaling from {current} to {desired} replicas")
            }
            RolloutIncomplete::ReplicasOutdated { updated, replicas } => {
                write!(f, "{updated}/{replicas} replicas updated")
            }
            RolloutIncomplete::RevisionMismatch { current, update } => write!(
                f,
                "current revision {} differs from update revision {}",
                current.as_deref().unwrap_or("<none>"),
                update.as_deref().unwrap_or("<none>")
            ),
        }
    }
}

impl RolloutStatus {
    /// Why the rollout towards `spec_replicas` replicas is not done, or `None` when it is.
    ///
    /// Readiness is not part of this check; the engine looks at it separately.
    pub fn incomplete(&self, spec_replicas: i32) -> Option<RolloutIncomplete> {
        if self.observed_generation.is_none_or(|g| g < self.generation) {
            return Some(RolloutIncomplete::GenerationNotObserved {
                generation: self.generation,
                observed: self.observed_generation,
            });
        }
        if self.replicas != spec_replicas {
            return Some(RolloutIncomplete::Scaling {
                desired: spec_replicas,
                current: self.replicas,
            });
        }
        if self.updated_replicas < self.replicas {
            return Some(RolloutIncomplete::ReplicasOutdated {
                updated: self.updated_replicas,
                replicas: self.replicas,
            });
        }
        if self.current_revision != self.update_revision {
            return Some(RolloutIncomplete::RevisionMismatch {
                current: self.current_revision.clone(),
                update: self.update_revision.clone(),
            });
        }
        None
    }

    /// Whether the rollout towards `spec_replicas` replicas is done (readiness aside).
    pub fn is_complete(&self, spec_replicas: i32) -> bool {
        self.incomplete(spec_replicas).is_none()
    }
}

/// A pod that is failing, e.g. `("demo-0", "CrashLoopBackOff", "last lines of output")`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailingPod {
    /// The pod name.
    pub pod: String,
    /// A CamelCase reason, typically the container's waiting or terminated reason.
    pub reason: String,
    /// Human detail, e.g. the last lines of the container's output.
    pub message: String,
}

/// Why the spec cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    /// The reason, one of those [`crate::Input::SpecInvalid`] lists (e.g. [`Reason::InvalidSpec`]) or, for
    /// [`Observation::manual_intervention`], of [`crate::Input::ManualInterventionNeeded`].
    pub reason: Reason,
    /// A human message naming the offending field.
    pub message: String,
}

/// A step of work in progress, as the reason and message of a phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The reason of the step.
    pub reason: Reason,
    /// What is being done or waited for.
    pub message: String,
}

/// Everything the engine needs from one reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// The RedisInstance's `metadata.generation`.
    pub generation: i64,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deletion_requested: bool,
    /// Replicas the RedisInstance spec asks for.
    pub spec_replicas: i32,
    /// Why the spec cannot be applied; `None` when it is valid and applicable.
    pub spec_problem: Option<SpecProblem>,
    /// A child that should exist (the instance was created before) but is absent or was refused, as the
    /// complete status message, e.g. `"StatefulSet demo was missing and has been re-created"`.
    pub missing_child: Option<String>,
    /// What the reconciler did to the StatefulSet in this reconcile.
    pub change: Change,
    /// Extra human detail appended to the message of a just-applied change,
    /// e.g. `"existing claims keep storage class fast"`.
    pub change_note: Option<String>,
    /// The StatefulSet's rollout state; `None` when no StatefulSet was observed.
    pub statefulset: Option<RolloutStatus>,
    /// Pods that are failing, most relevant first.
    pub failing_pods: Vec<FailingPod>,
    /// A failover in flight (from `StartFailover` until the new primary is confirmed): what happened and
    /// where the primary is moving.
    pub failover: Option<String>,
    /// The move in flight (`failover`) is a switchover of a healthy primary, not a failover.
    pub switchover: bool,
    /// The step a rolling update ordered by the operator is at (replacing replicas, waiting for a
    /// requested switchover, replacing the old primary): the reason and message of `Updating`
    /// while the rollout is not done.
    pub rollout: Option<Progress>,
    /// The replication topology needs a person: no pod can be promoted without losing data. The reason is
    /// the topology's `StopReason::reason()`.
    pub manual_intervention: Option<SpecProblem>,
    /// Pods that do not serve their replication role yet, as a sentence (no confirmed primary, a replica
    /// still syncing or lagging): until it is `None`, the instance is not fully ready even when every pod is.
    /// Always `None` for an instance without replication.
    pub replication_pending: Option<String>,
    /// A pod that does not hold a live configuration value yet (its `CONFIG SET` was refused or not sent),
    /// as a sentence naming the pod and the directive: until it is `None`, the instance is not `Running`.
    pub config_pending: Option<String>,
    /// A pod the scheduler cannot place, as a sentence with the scheduler's reason (e.g. `"cache-0 cannot be
    /// scheduled: 0/1 nodes are available: 1 Insufficient cpu."`). Not a failure: capacity may come (an
    /// autoscaler) or the spec may be changed; the phase stays where readiness puts it and says why.
    pub scheduling_pending: Option<String>,
}
