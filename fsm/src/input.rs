//! The input alphabet of the phase machine and the one guard that picks an input.

use std::fmt;

use crate::observation::{Change, Observation};
use crate::reasons::Reason;

/// What one reconcile amounts to, as far as the phase is concerned.
///
/// Exactly one input is chosen per reconcile, by [`classify`]; the variants are listed in the
/// priority order `classify` checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Input {
    /// The object is being deleted.
    DeletionRequested,
    /// The spec is invalid or cannot be applied.
    SpecInvalid,
    /// A child that should exist is absent.
    ChildMissing,
    /// The reconciler created the StatefulSet and the other children in this reconcile.
    ChildrenCreated,
    /// The reconciler changed the StatefulSet (update, restart or storage) or, live, the configuration in
    /// this reconcile.
    ChangeApplied,
    /// The replication topology needs a person: no pod can be promoted without losing data.
    ManualInterventionNeeded,
    /// A failover is in flight.
    FailingOver,
    /// No StatefulSet was observed and nothing was created in this reconcile.
    StatefulSetNotObserved,
    /// At least one pod is failing.
    PodsFailing,
    /// The StatefulSet rollout is not done (generation, scale, outdated pods or revisions).
    RolloutProgressing,
    /// The rollout is done but no replica is ready.
    NoReplicasReady,
    /// The rollout is done and every replica is ready.
    AllReplicasReady,
    /// The rollout is done and some, but not all, replicas are ready.
    PartiallyReady,
}

impl Input {
    /// Every input, in the priority order [`classify`] checks them.
    pub const ALL: [Input; 13] = [
        Input::DeletionRequested,
        Input::SpecInvalid,
        Input::ChildMissing,
        Input::ChildrenCreated,
        Input::ChangeApplied,
        Input::ManualInterventionNeeded,
        Input::FailingOver,
        Input::StatefulSetNotObserved,
        Input::PodsFailing,
        Input::RolloutProgressing,
        Input::NoReplicasReady,
        Input::AllReplicasReady,
        Input::PartiallyReady,
    ];

    /// The name of the input.
    pub fn as_str(self) -> &'static str {
        match self {
            Input::DeletionRequested => "DeletionRequested",
            Input::SpecInvalid => "SpecInvalid",
            Input::ChildMissing => "ChildMissing",
            Input::ChildrenCreated => "ChildrenCreated",
            Input::ChangeApplied => "ChangeApplied",
            Input::ManualInterventionNeeded => "ManualInterventionNeeded",
            Input::FailingOver => "FailingOver",
            Input::StatefulSetNotObserved => "StatefulSetNotObserved",
            Input::PodsFailing => "PodsFailing",
            Input::RolloutProgressing => "RolloutProgressing",
            Input::NoReplicasReady => "NoReplicasReady",
            Input::PartiallyReady => "PartiallyReady",
            Input::AllReplicasReady => "AllReplicasReady",
        }
    }

    /// The condition under which [`classify`] picks this input, for the generated docs.
    pub fn guard(self) -> &'static str {
        match self {
            Input::DeletionRequested => "`deletion_requested`",
            Input::SpecInvalid => "`spec_problem` is set",
            Input::ChildMissing => "`missing_child` is set",
            Input::ChildrenCreated => "`change == Created`",
            Input::ChangeApplied => {
                "`change` is `RollingUpdate`, `Restart`, `StorageChange` or `LiveConfig`"
            }
            Input::ManualInterventionNeeded => "`manual_intervention` is set",
            Input::FailingOver => "`failover` is set",
            Input::StatefulSetNotObserved => "`statefulset` is `None`",
            Input::PodsFailing => "`failing_pods` is not empty",
            Input::RolloutProgressing => {
                "rollout not done: `observed_generation` missing or behind `generation`, \
                 `replicas != spec_replicas`, `updated_replicas < replicas` or \
                 `current_revision != update_revision`"
            }
            Input::NoReplicasReady => "`ready_replicas == 0` and `spec_replicas > 0`",
            Input::AllReplicasReady => {
                "`ready_replicas == spec_replicas`, `replication_pending` and `config_pending` are `None`"
            }
            Input::PartiallyReady => {
                "otherwise: some but not all replicas are ready, or a pod does not serve its replication role \
                 or hold its live configuration yet"
            }
        }
    }
}

impl Input {
    /// Every reason a decision driven by this input can carry, except from `Terminated`,
    /// which always keeps [`Reason::Deleting`]. For [`Input::SpecInvalid`] and
    /// [`Input::ManualInterventionNeeded`] the reason is the [`crate::SpecProblem`]'s own: one of these.
    pub fn reasons(self) -> &'static [Reason] {
        match self {
            Input::DeletionRequested => &[Reason::Deleting],
            Input::SpecInvalid => &[
                Reason::InvalidSpec,
                Reason::StorageChangeRefused,
                Reason::ChildConflict,
                Reason::ChangeNotConverging,
                Reason::AuthSecretInvalid,
                Reason::TlsSecretInvalid,
                Reason::TlsChangeRefused,
                Reason::UnsupportedServer,
            ],
            Input::ChildMissing => &[Reason::ChildMissing],
            Input::ChildrenCreated => &[Reason::Creating, Reason::StatefulSetRecreated],
            Input::ChangeApplied => &[
                Reason::StatefulSetUpdate,
                Reason::StatefulSetRestart,
                Reason::ConfigAppliedLive,
            ],
            Input::ManualInterventionNeeded => &[
                Reason::NoSafeFailoverCandidate,
                Reason::DivergentHistories,
                Reason::RestoreFailed,
                Reason::UnsupportedServer,
            ],
            Input::FailingOver => &[Reason::Failover, Reason::Switchover],
            Input::StatefulSetNotObserved => &[
                Reason::Creating,
                Reason::PodsPending,
                Reason::StatefulSetUpdating,
            ],
            Input::PodsFailing => &[Reason::PodsFailing],
            Input::RolloutProgressing => &[
                Reason::Creating,
                Reason::StatefulSetUpdating,
                Reason::UpdatingReplicas,
                Reason::AwaitingSwitchover,
                Reason::UpdatingOldPrimary,
            ],
            Input::NoReplicasReady => &[Reason::PodsPending],
            Input::PartiallyReady => &[
                Reason::PodsPending,
                Reason::StatefulSetUpdating,
                Reason::UpdatingReplicas,
                Reason::AwaitingSwitchover,
                Reason::UpdatingOldPrimary,
            ],
            Input::AllReplicasReady => &[Reason::AllReplicasReady],
        }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The guard: picks the one input an observation amounts to.
///
/// The first matching rule wins, in the order of [`Input::ALL`]: deletion, spec problem, missing
/// child, a change made in this reconcile, a topology that needs a person, a failover in flight, no StatefulSet, failing pods, rollout in progress, and
/// finally readiness: none, all (every pod ready and serving its replication role), or otherwise some
/// (which also covers the odd case of more ready replicas than the spec asks for).
pub fn classify(observation: &Observation) -> Input {
    if observation.deletion_requested {
        return Input::DeletionRequested;
    }
    if observation.spec_problem.is_some() {
        return Input::SpecInvalid;
    }
    if observation.missing_child.is_some() {
        return Input::ChildMissing;
    }
    match observation.change {
        Change::None => {}
        Change::Created => return Input::ChildrenCreated,
        Change::RollingUpdate | Change::Restart | Change::StorageChange | Change::LiveConfig => {
            return Input::ChangeApplied
        }
    }
    if observation.manual_intervention.is_some() {
        return Input::ManualInterventionNeeded;
    }
    if observation.failover.is_some() {
        return Input::FailingOver;
    }
    let Some(statefulset) = &observation.statefulset else {
        return Input::StatefulSetNotObserved;
    };
    if !observation.failing_pods.is_empty() {
        return Input::PodsFailing;
    }
    if !statefulset.is_complete(observation.spec_replicas) {
        return Input::RolloutProgressing;
    }
    let ready = statefulset.ready_replicas;
    if ready == 0 && observation.spec_replicas > 0 {
        Input::NoReplicasReady
    } else if ready == observation.spec_replicas
        && observation.replication_pending.is_none()
        && observation.config_pending.is_none()
    {
        Input::AllReplicasReady
    } else {
        Input::PartiallyReady
    }
}
