//! Properties of `step`, `History` and `conditions` over arbitrary observations.

use proptest::prelude::*;
use redis_fsm::{
    condition_types, conditions, is_noop, step, transition, Change, Condition, FailingPod, History,
    Input, Observation, Phase, Progress, Reason, RolloutStatus, SpecProblem, Transition,
    HISTORY_LIMIT,
};

fn phase() -> impl Strategy<Value = Phase> {
    proptest::sample::select(Phase::ALL.to_vec())
}

fn input() -> impl Strategy<Value = Input> {
    proptest::sample::select(Input::ALL.to_vec())
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        6 => Just(Change::None),
        1 => Just(Change::Created),
        1 => Just(Change::RollingUpdate),
        1 => Just(Change::Restart),
        1 => Just(Change::StorageChange),
        1 => Just(Change::LiveConfig),
    ]
}

fn revision() -> impl Strategy<Value = Option<String>> {
    proptest::option::weighted(
        0.9,
        prop_oneof![Just("rev-a"), Just("rev-b")].prop_map(String::from),
    )
}

fn rollout(spec_replicas: i32) -> impl Strategy<Value = RolloutStatus> {
    (
        1..4i64,
        proptest::option::weighted(0.9, 0..4i64),
        0..5i32,
        0..5i32,
        0..5i32,
        revision(),
        revision(),
        any::<bool>(),
    )
        .prop_map(
            move |(generation, observed, replicas, ready, updated, current, update, settled)| {
                if settled {
                    // A finished rollout, so that readiness inputs are common too.
                    RolloutStatus {
                        generation,
                        observed_generation: Some(generation),
                        replicas: spec_replicas,
                        ready_replicas: ready.min(spec_replicas),
                        updated_replicas: spec_replicas,
                        current_revision: current.clone(),
                        update_revision: current,
                    }
                } else {
                    RolloutStatus {
                        generation,
                        observed_generation: observed,
                        replicas,
                        ready_replicas: ready,
                        updated_replicas: updated,
                        current_revision: current,
                        update_revision: update,
                    }
                }
            },
        )
}

fn failing_pod() -> impl Strategy<Value = FailingPod> {
    (
        0..5u8,
        prop_oneof![Just("CrashLoopBackOff"), Just("ImagePullBackOff")],
    )
        .prop_map(|(index, reason)| FailingPod {
            pod: format!("demo-{index}"),
            reason: reason.into(),
            message: "boom".into(),
        })
}

fn observation() -> impl Strategy<Value = Observation> {
    (0..5i32).prop_flat_map(|spec_replicas| {
        (
            1..6i64,
            proptest::bool::weighted(0.1),
            proptest::option::weighted(
                0.1,
                proptest::sample::select(Input::SpecInvalid.reasons()).prop_map(|reason| {
                    SpecProblem {
                        reason,
                        message: "spec.storage.size: cannot shrink".into(),
                    }
                }),
            ),
            proptest::option::weighted(0.1, Just("StatefulSet demo".to_owned())),
            change(),
            proptest::option::of(Just("existing claims keep storage class fast".to_owned())),
            proptest::option::weighted(0.85, rollout(spec_replicas)),
            prop_oneof![3 => Just(vec![]), 1 => proptest::collection::vec(failing_pod(), 1..4)],
            (
                proptest::option::weighted(
                    0.1,
                    Just("the primary's server restarted; promoting cache-1".to_owned()),
                ),
                proptest::bool::weighted(0.3),
                proptest::option::weighted(
                    0.2,
                    prop_oneof![
                        Just(Reason::UpdatingReplicas),
                        Just(Reason::AwaitingSwitchover),
                        Just(Reason::UpdatingOldPrimary)
                    ]
                    .prop_map(|reason| Progress {
                        reason,
                        message: "Replacing replica demo-2".into(),
                    }),
                ),
            ),
            proptest::option::weighted(
                0.05,
                proptest::sample::select(Input::ManualInterventionNeeded.reasons()).prop_map(
                    |reason| SpecProblem {
                        reason,
                        message: "no pod can be promoted without losing data".into(),
                    },
                ),
            ),
            proptest::option::weighted(
                0.2,
                Just("replication: cache-1 is syncing from the primary".to_owned()),
            ),
            (
                proptest::option::weighted(
                    0.1,
                    Just("config: cache-2 does not have maxmemory yet: refused".to_owned()),
                ),
                proptest::option::weighted(
                    0.1,
                    Just("cache-1 cannot be scheduled: 0/1 nodes are available".to_owned()),
                ),
            ),
        )
            .prop_map(
                move |(
                    generation,
                    deletion,
                    problem,
                    missing,
                    change,
                    note,
                    sts,
                    failing,
                    (failover, switchover, rollout_step),
                    manual,
                    pending,
                    (config_pending, scheduling_pending),
                )| {
                    Observation {
                        generation,
                        deletion_requested: deletion,
                        spec_replicas,
                        spec_problem: problem,
                        missing_child: missing,
                        change,
                        change_note: note,
                        statefulset: sts,
                        failing_pods: failing,
                        failover,
                        switchover,
                        rollout: rollout_step,
                        manual_intervention: manual,
                        replication_pending: pending,
                        config_pending,
                        scheduling_pending,
                    }
                },
            )
    })
}

fn transition_record(index: usize) -> Transition {
    Transition {
        from: Phase::Pending,
        to: Phase::Running,
        reason: Reason::AllReplicasReady.to_string(),
        message: format!("entry {index}"),
        time: format!("2024-01-01T00:00:{:02}Z", index % 60),
        generation: index as i64,
    }
}

proptest! {
    #[test]
    fn every_pair_is_a_move_or_an_explicit_noop(from in phase(), input in input()) {
        let to = transition(from, input);
        prop_assert!(to.is_some(), "({}, {}) has no entry", from, input);
        prop_assert_eq!(to == Some(from), is_noop(from, input));
    }

    #[test]
    fn terminated_is_absorbing(input in input(), observation in observation()) {
        prop_assert!(is_noop(Phase::Terminated, input));
        let decision = step(Phase::Terminated, &observation, "now");
        prop_assert_eq!(decision.phase, Phase::Terminated);
        prop_assert!(decision.transition.is_none());
        prop_assert_eq!(decision.reason, Reason::Deleting);
    }

    #[test]
    fn terminated_is_reachable_from_every_phase(from in phase(), mut observation in observation()) {
        observation.deletion_requested = true;
        let decision = step(from, &observation, "now");
        prop_assert_eq!(decision.input, Input::DeletionRequested);
        prop_assert_eq!(decision.phase, Phase::Terminated);
        prop_assert_eq!(transition(from, Input::DeletionRequested), Some(Phase::Terminated));
    }

    #[test]
    fn running_only_when_rollout_complete_and_all_ready(from in phase(), observation in observation()) {
        let decision = step(from, &observation, "now");
        if decision.phase == Phase::Running {
            let sts = observation.statefulset.as_ref().expect("Running without a StatefulSet");
            prop_assert!(sts.is_complete(observation.spec_replicas), "{:?}", sts.incomplete(observation.spec_replicas));
            prop_assert_eq!(sts.ready_replicas, observation.spec_replicas);
            prop_assert!(observation.failing_pods.is_empty());
            prop_assert_eq!(observation.change, Change::None);
            prop_assert!(!observation.deletion_requested);
            prop_assert!(observation.spec_problem.is_none() && observation.missing_child.is_none());
            prop_assert!(observation.config_pending.is_none(), "Running while a pod lacks a live value");
        }
    }

    #[test]
    fn a_change_applied_now_is_reported_as_updating(from in phase(), mut observation in observation(),
        change in prop_oneof![Just(Change::RollingUpdate), Just(Change::Restart), Just(Change::StorageChange), Just(Change::LiveConfig)]) {
        observation.change = change;
        observation.deletion_requested = false;
        observation.spec_problem = None;
        observation.missing_child = None;
        let decision = step(from, &observation, "now");
        if from != Phase::Terminated {
            prop_assert_eq!(decision.phase, Phase::Updating);
            let expected = match change {
                Change::RollingUpdate => Reason::StatefulSetUpdate,
                Change::LiveConfig => Reason::ConfigAppliedLive,
                _ => Reason::StatefulSetRestart,
            };
            prop_assert_eq!(decision.reason, expected);
        }
    }

    #[test]
    fn step_is_idempotent(from in phase(), observation in observation()) {
        let first = step(from, &observation, "t1");
        let second = step(first.phase, &observation, "t2");
        prop_assert_eq!(second.phase, first.phase);
        prop_assert!(second.transition.is_none());
        prop_assert_eq!(second.reason, first.reason);
        prop_assert_eq!(second.message, first.message);
    }

    #[test]
    fn transition_is_recorded_exactly_when_the_phase_changes(from in phase(), observation in observation()) {
        let decision = step(from, &observation, "2024-05-01T12:00:00Z");
        prop_assert_ne!(decision.phase, Phase::Unknown);
        match &decision.transition {
            None => prop_assert_eq!(decision.phase, from),
            Some(t) => {
                prop_assert_ne!(decision.phase, from);
                prop_assert_eq!(t, &Transition {
                    from,
                    to: decision.phase,
                    reason: decision.reason.to_string(),
                    message: decision.message.clone(),
                    time: "2024-05-01T12:00:00Z".into(),
                    generation: observation.generation,
                });
            }
        }
    }

    #[test]
    fn reasons_are_the_documented_ones(from in phase(), observation in observation()) {
        let decision = step(from, &observation, "now");
        prop_assert!(!decision.message.is_empty());
        if from == Phase::Terminated {
            prop_assert_eq!(decision.reason, Reason::Deleting);
        } else if let (Input::SpecInvalid, Some(problem)) = (decision.input, &observation.spec_problem) {
            prop_assert_eq!(decision.reason, problem.reason);
            prop_assert_eq!(&decision.message, &problem.message);
        } else {
            prop_assert!(decision.input.reasons().contains(&decision.reason),
                "{} not among the reasons of {}", decision.reason, decision.input);
        }
    }

    #[test]
    fn history_never_exceeds_the_limit_and_keeps_the_newest(count in 0..40usize) {
        let mut history = History::new();
        for index in 0..count {
            history.record(transition_record(index));
            prop_assert!(history.len() <= HISTORY_LIMIT);
            prop_assert_eq!(history.last(), Some(&transition_record(index)));
        }
        let expected: Vec<Transition> = (count.saturating_sub(HISTORY_LIMIT)..count).map(transition_record).collect();
        prop_assert_eq!(history.entries(), expected.as_slice());
        prop_assert_eq!(history.is_empty(), count == 0);
    }

    #[test]
    fn deserialising_a_long_history_keeps_the_newest(count in 0..40usize) {
        let all: Vec<Transition> = (0..count).map(transition_record).collect();
        let json = serde_json::to_string(&all).unwrap();
        let history: History = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(history.entries(), &all[count.saturating_sub(HISTORY_LIMIT)..]);
        prop_assert_eq!(History::from_entries(all.clone()), history.clone());
        // Serialises as the bare list and round-trips.
        let again: History = serde_json::from_str(&serde_json::to_string(&history).unwrap()).unwrap();
        prop_assert_eq!(again, history);
    }

    #[test]
    fn conditions_move_their_time_only_when_their_status_changes(
        start in phase(),
        observations in proptest::collection::vec(observation(), 1..12),
    ) {
        let mut phase = start;
        let mut previous: Vec<Condition> = Vec::new();
        for (tick, observation) in observations.iter().enumerate() {
            let now = format!("t{tick}");
            let decision = step(phase, observation, &now);
            let current = conditions(&previous, &decision, observation.generation, &now);
            let types: Vec<&str> = current.iter().map(|c| c.type_.as_str()).collect();
            prop_assert_eq!(types, condition_types::ALL.to_vec());
            for condition in &current {
                prop_assert_eq!(condition.observed_generation, Some(observation.generation));
                let expected = match condition.type_.as_str() {
                    condition_types::READY => decision.phase == Phase::Running,
                    condition_types::PROGRESSING => matches!(decision.phase, Phase::Creating | Phase::Pending | Phase::Updating),
                    _ => decision.phase == Phase::Failed,
                };
                prop_assert_eq!(&condition.status, if expected { "True" } else { "False" });
                match previous.iter().find(|c| c.type_ == condition.type_) {
                    Some(before) if before.status == condition.status =>
                        prop_assert_eq!(&condition.last_transition_time, &before.last_transition_time),
                    _ => prop_assert_eq!(&condition.last_transition_time, &now),
                }
            }
            phase = decision.phase;
            previous = current;
        }
    }
}

/// The generator above must reach every guard, or the properties prove little.
#[test]
fn observations_reach_every_input() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = observation();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        seen.insert(redis_fsm::classify(
            &strategy.new_tree(&mut runner).unwrap().current(),
        ));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), Input::ALL);
}
