//! Exact reasons and messages for representative observations.

use redis_fsm::{
    classify, step, Change, FailingPod, Input, Observation, Phase, Reason, RolloutStatus,
    SpecProblem,
};

/// A StatefulSet whose rollout towards `replicas` is done, with `ready` pods ready.
fn settled(replicas: i32, ready: i32) -> RolloutStatus {
    RolloutStatus {
        generation: 2,
        observed_generation: Some(2),
        replicas,
        ready_replicas: ready,
        updated_replicas: replicas,
        current_revision: Some("demo-abc".into()),
        update_revision: Some("demo-abc".into()),
    }
}

fn observed(replicas: i32, sts: RolloutStatus) -> Observation {
    Observation {
        generation: 3,
        spec_replicas: replicas,
        statefulset: Some(sts),
        ..Observation::default()
    }
}

#[test]
fn guard_priority_follows_the_documented_order() {
    let mut o = observed(3, settled(3, 3));
    assert_eq!(classify(&o), Input::AllReplicasReady);
    o.statefulset = Some(settled(3, 1));
    assert_eq!(classify(&o), Input::PartiallyReady);
    o.statefulset = Some(settled(3, 0));
    assert_eq!(classify(&o), Input::NoReplicasReady);
    o.statefulset.as_mut().unwrap().observed_generation = Some(1);
    assert_eq!(classify(&o), Input::RolloutProgressing);
    o.failing_pods = vec![FailingPod {
        pod: "demo-0".into(),
        reason: "CrashLoopBackOff".into(),
        message: "oops".into(),
    }];
    assert_eq!(classify(&o), Input::PodsFailing);
    o.statefulset = None;
    assert_eq!(classify(&o), Input::StatefulSetNotObserved);
    o.failover = Some("promoting demo-1".into());
    assert_eq!(classify(&o), Input::FailingOver);
    o.manual_intervention = Some(SpecProblem {
        reason: Reason::DivergentHistories,
        message: "choose which to keep".into(),
    });
    assert_eq!(classify(&o), Input::ManualInterventionNeeded);
    o.change = Change::Restart;
    assert_eq!(classify(&o), Input::ChangeApplied);
    o.change = Change::Created;
    assert_eq!(classify(&o), Input::ChildrenCreated);
    o.missing_child = Some("StatefulSet demo".into());
    assert_eq!(classify(&o), Input::ChildMissing);
    o.spec_problem = Some(SpecProblem {
        reason: Reason::InvalidSpec,
        message: "spec.replicas must be at least 1".into(),
    });
    assert_eq!(classify(&o), Input::SpecInvalid);
    o.deletion_requested = true;
    assert_eq!(classify(&o), Input::DeletionRequested);
}

#[test]
fn each_rollout_blocker_counts_as_progressing() {
    let blockers: [fn(&mut RolloutStatus); 5] = [
        |s| s.observed_generation = None,
        |s| s.observed_generation = Some(1),
        |s| s.updated_replicas = 2,
        |s| s.update_revision = Some("demo-def".into()),
        |s| s.replicas = 4,
    ];
    for block in blockers {
        let mut sts = settled(3, 3);
        block(&mut sts);
        assert!(sts.incomplete(3).is_some(), "{sts:?}");
        assert_eq!(classify(&observed(3, sts)), Input::RolloutProgressing);
    }
    assert_eq!(settled(3, 3).incomplete(3), None);
}

#[test]
fn running_and_pending_messages_count_ready_replicas() {
    let running = step(Phase::Updating, &observed(3, settled(3, 3)), "t");
    assert_eq!(running.phase, Phase::Running);
    assert_eq!(running.reason, "AllReplicasReady");
    assert_eq!(running.message, "All 3/3 replicas are ready");

    let pending = step(Phase::Running, &observed(3, settled(3, 0)), "t");
    assert_eq!(pending.phase, Phase::Pending);
    assert_eq!(pending.reason, "PodsPending");
    assert_eq!(
        pending.message,
        "Waiting for pods to become ready. Ready: 0/3"
    );
}

#[test]
fn observed_rollout_reports_updated_and_ready_against_the_spec() {
    let mut sts = settled(3, 2);
    sts.updated_replicas = 1;
    sts.update_revision = Some("demo-def".into());
    let decision = step(Phase::Running, &observed(3, sts), "t");
    assert_eq!(decision.phase, Phase::Updating);
    assert_eq!(decision.reason, "StatefulSetUpdating");
    assert_eq!(
        decision.message,
        "StatefulSet is being updated. Updated: 1/3, Ready: 2/3"
    );
}

#[test]
fn applied_changes_name_what_changed_and_carry_the_note() {
    let mut o = observed(3, settled(3, 3));
    o.change = Change::RollingUpdate;
    let update = step(Phase::Running, &o, "2024-05-01T00:00:00Z");
    assert_eq!(update.phase, Phase::Updating);
    assert_eq!(update.reason, "StatefulSetUpdate");
    assert_eq!(
        update.message,
        "Applying new image/replicas/resources to StatefulSet"
    );
    let transition = update.transition.unwrap();
    assert_eq!(
        (transition.from, transition.to),
        (Phase::Running, Phase::Updating)
    );
    assert_eq!(transition.time, "2024-05-01T00:00:00Z");
    assert_eq!(transition.generation, 3);

    o.change = Change::Restart;
    let restart = step(Phase::Running, &o, "t");
    assert_eq!(restart.reason, "StatefulSetRestart");
    assert_eq!(restart.message, "Configuration changed; restarting pods");

    o.change = Change::StorageChange;
    o.change_note = Some("existing claims keep storage class fast".into());
    let storage = step(Phase::Running, &o, "t");
    assert_eq!(storage.reason, "StatefulSetRestart");
    assert!(storage
        .message
        .ends_with("; existing claims keep storage class fast"));
}

#[test]
fn failures_name_their_cause() {
    let mut o = observed(3, settled(3, 1));
    o.failing_pods = vec![
        FailingPod {
            pod: "demo-1".into(),
            reason: "CrashLoopBackOff".into(),
            message: "FATAL CONFIG FILE ERROR".into(),
        },
        FailingPod {
            pod: "demo-2".into(),
            reason: "CrashLoopBackOff".into(),
            message: "same".into(),
        },
    ];
    let pods = step(Phase::Running, &o, "t");
    assert_eq!(pods.phase, Phase::Failed);
    assert_eq!(pods.reason, "PodsFailing");
    assert_eq!(
        pods.message,
        "2 pods failing; demo-1: CrashLoopBackOff: FATAL CONFIG FILE ERROR"
    );

    // The message is used as it is: it already says what is missing (it once read "... is missing is missing").
    o.missing_child = Some("StatefulSet demo was missing and has been re-created".into());
    let missing = step(Phase::Running, &o, "t");
    assert_eq!(missing.reason, "ChildMissing");
    assert_eq!(
        missing.message,
        "StatefulSet demo was missing and has been re-created"
    );

    o.spec_problem = Some(SpecProblem {
        reason: Reason::StorageChangeRefused,
        message: "spec.storage.size cannot shrink from 10Gi to 5Gi".into(),
    });
    let spec = step(Phase::Running, &o, "t");
    assert_eq!(spec.reason, "StorageChangeRefused");
    assert_eq!(
        spec.message,
        "spec.storage.size cannot shrink from 10Gi to 5Gi"
    );
}

#[test]
fn failed_recovers_when_the_cause_clears() {
    let healthy = observed(3, settled(3, 3));
    let recovered = step(Phase::Failed, &healthy, "t");
    assert_eq!(recovered.phase, Phase::Running);
    assert!(recovered.transition.is_some());
}

#[test]
fn a_new_instance_is_creating_until_its_pods_exist() {
    let created = Observation {
        generation: 1,
        spec_replicas: 3,
        change: Change::Created,
        ..Observation::default()
    };
    let decision = step(Phase::Unknown, &created, "t");
    assert_eq!(decision.phase, Phase::Creating);
    assert_eq!(decision.reason, "Creating");

    let not_yet = Observation {
        change: Change::None,
        ..created
    };
    assert_eq!(step(Phase::Creating, &not_yet, "t").phase, Phase::Creating);
    let mut scaling = settled(1, 0);
    scaling.generation = 1;
    scaling.observed_generation = Some(1);
    assert_eq!(
        step(Phase::Creating, &observed(3, scaling), "t").phase,
        Phase::Creating
    );
}

#[test]
fn deletion_wins_and_sticks() {
    let mut o = observed(3, settled(3, 3));
    o.deletion_requested = true;
    let decision = step(Phase::Running, &o, "t");
    assert_eq!(decision.phase, Phase::Terminated);
    assert_eq!(decision.reason, "Deleting");
    o.deletion_requested = false;
    assert_eq!(step(Phase::Terminated, &o, "t").phase, Phase::Terminated);
}

#[test]
fn a_failover_is_an_update_and_a_stop_a_failure_with_the_topology_reason() {
    let mut o = observed(3, settled(3, 2));
    o.failover = Some("the primary's server restarted; promoting demo-1".into());
    let d = step(Phase::Running, &o, "t");
    assert_eq!(d.phase, Phase::Updating);
    assert_eq!(d.reason, Reason::Failover);
    assert_eq!(
        d.message,
        "the primary's server restarted; promoting demo-1"
    );
    o.manual_intervention = Some(SpecProblem {
        reason: Reason::NoSafeFailoverCandidate,
        message: "no pod can be promoted without losing data".into(),
    });
    let d = step(Phase::Updating, &o, "t");
    assert_eq!(d.phase, Phase::Failed);
    assert_eq!(d.reason, Reason::NoSafeFailoverCandidate);
    assert_eq!(d.message, "no pod can be promoted without losing data");
}

#[test]
fn every_pod_ready_is_not_running_while_replication_is_pending() {
    let mut o = observed(3, settled(3, 3));
    o.replication_pending = Some("replication: cache-2 is syncing from the primary".into());
    assert_eq!(classify(&o), Input::PartiallyReady);
    let pending = step(Phase::Creating, &o, "t");
    assert_eq!(pending.phase, Phase::Pending);
    assert_eq!(
        pending.message,
        "Waiting for pods to become ready. Ready: 3/3; replication: cache-2 is syncing from the primary"
    );
    let updating = step(Phase::Updating, &o, "t");
    assert_eq!(updating.phase, Phase::Updating);
    assert!(
        updating
            .message
            .ends_with("cache-2 is syncing from the primary"),
        "{}",
        updating.message
    );
    o.replication_pending = None;
    assert_eq!(step(Phase::Pending, &o, "t").phase, Phase::Running);
}

#[test]
fn a_live_config_change_is_updating_and_not_running_until_every_pod_holds_it() {
    let mut o = observed(3, settled(3, 3));
    o.change = Change::LiveConfig;
    o.change_note = Some("maxmemory".into());
    let applied = step(Phase::Running, &o, "t");
    assert_eq!(
        (applied.phase, applied.reason),
        (Phase::Updating, Reason::ConfigAppliedLive)
    );
    assert_eq!(
        applied.message,
        "Configuration changed; set at runtime on every pod, no restart; maxmemory"
    );
    o.change = Change::None;
    o.config_pending = Some("config: cache-1 does not have maxmemory yet: refused".into());
    assert_eq!(classify(&o), Input::PartiallyReady);
    let waiting = step(Phase::Updating, &o, "t");
    assert_eq!(waiting.phase, Phase::Updating);
    assert!(
        waiting
            .message
            .ends_with("; config: cache-1 does not have maxmemory yet: refused"),
        "{}",
        waiting.message
    );
    o.config_pending = None;
    assert_eq!(step(Phase::Updating, &o, "t").phase, Phase::Running);
}
