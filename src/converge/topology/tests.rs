//! Tests of `topology`.

use redis_fsm::{ReplicaLink, ServerState};

use super::*;

fn state(role: ServerRole) -> ServerState {
    ServerState {
        run_id: "r".into(),
        uptime_seconds: 1,
        role,
        replid: "a".into(),
        replid2: None,
        repl_offset: 100,
        second_repl_offset: None,
        aof_enabled: false,
        loading: false,
        keys: 0,
        failover_state: Default::default(),
        server: Default::default(),
    }
}

#[test]
fn topology_fields_round_trip_through_status() {
    let topology = TopologyStatus {
        current_primary: Some("c-0".into()),
        target_primary: Some(TargetPrimary::Pending),
        primary_failing_since: Some(Timestamp(1_700_000_000_123)),
        primary_history: Some(ReplicationHistory {
            replid: "a".into(),
            replid2: Some("b".into()),
            second_offset: Some(7),
        }),
        primary_run_id: Some("run".into()),
        switchover: Some(SwitchoverRecord {
            from: "c-1".into(),
            reason: SwitchoverReason::NodeCordoned,
            since: Timestamp(1_700_000_000_456),
        }),
        switchover_retry_at: Some(Timestamp(1_700_000_030_000)),
    };
    let mut status = RedisInstanceStatus::default();
    record_topology(&mut status, &topology);
    assert_eq!(status.target_primary.as_deref(), Some(PENDING));
    assert_eq!(
        status.primary_failing_since.as_deref(),
        Some("2023-11-14T22:13:20.123Z")
    );
    assert_eq!(topology_status(Some(&status)), topology);
    let steady = TopologyStatus {
        target_primary: Some(TargetPrimary::Pod("c-0".into())),
        primary_failing_since: None,
        ..topology
    };
    record_topology(&mut status, &steady);
    assert_eq!(topology_status(Some(&status)), steady);
    assert_eq!(topology_status(None), TopologyStatus::default());
}

#[test]
fn a_missing_pod_is_passed_as_unobserved_and_unelectable() {
    let p = pod_replication(
        "c",
        2,
        None,
        &PodContext::default(),
        Err(Unobserved::unreachable("gone")),
    );
    assert_eq!(p.pod, "c-2");
    assert!(!p.is_observed() && !p.is_electable() && !p.pod_ready);
}

#[test]
fn summaries_report_role_link_lag_and_keep_last_seen_of_unreachable_pods() {
    let replica = ServerRole::Replica(ReplicaLink {
        master_host: "10.0.0.1".into(),
        master_port: 6379,
        link_up: true,
        sync_in_progress: false,
        replica_offset: 90,
    });
    let pods = vec![
        pod_replication(
            "c",
            0,
            None,
            &PodContext::default(),
            Ok(state(ServerRole::Master)),
        ),
        pod_replication("c", 1, None, &PodContext::default(), Ok(state(replica))),
        pod_replication(
            "c",
            2,
            None,
            &PodContext::default(),
            Err(Unobserved::unreachable("refused")),
        ),
    ];
    let previous = vec![PodStatus {
        name: "c-2".into(),
        last_seen: Some("earlier".into()),
        ..Default::default()
    }];
    let roles = vec![
        ("c-0".to_string(), Some(RoleLabel::Primary)),
        ("c-1".to_string(), Some(RoleLabel::Replica)),
        ("c-2".to_string(), None),
    ];
    let s = pod_summaries(&previous, &pods, &roles, Some(100), "now");
    assert_eq!(
        (s[0].role.as_str(), s[0].label.as_str()),
        ("master", "primary")
    );
    assert_eq!(s[1].link, "up");
    assert_eq!(s[1].lag_bytes, Some(10));
    assert_eq!(s[1].last_seen.as_deref(), Some("now"));
    assert_eq!(s[2].role, "unreachable");
    assert_eq!(s[2].last_seen.as_deref(), Some("earlier"));
    assert_eq!(s[2].message, "refused");
    let mut a = RedisInstanceStatus {
        pods: s.clone(),
        ..Default::default()
    };
    let mut b = a.clone();
    b.pods[1].lag_bytes = Some(0);
    b.pods[1].last_seen = Some("later".into());
    assert_eq!(without_volatile(&a), without_volatile(&b));
    a.pods[1].link = "down".into();
    assert_ne!(without_volatile(&a), without_volatile(&b));
}

#[test]
fn a_failover_message_exists_only_while_one_is_in_flight() {
    let mut status = TopologyStatus {
        current_primary: Some("c-0".into()),
        target_primary: Some(TargetPrimary::Pod("c-0".into())),
        ..Default::default()
    };
    let steady = TopologyAction::Steady;
    assert_eq!(failover_message(&status, &steady), None);
    status.target_primary = Some(TargetPrimary::Pending);
    assert!(failover_message(&status, &steady)
        .unwrap()
        .contains("from c-0"));
    let blocked = TopologyAction::Wait {
        reason: redis_fsm::WaitReason::OldPrimaryMayHoldLostWrites {
            primary: "c-0".into(),
            pods: vec!["c-1".into()],
        },
    };
    assert_eq!(
        failover_message(&status, &blocked).unwrap(),
        "Failing over from c-0: fencing it and electing the most advanced replica; waiting for the old \
         primary c-0 to return: pods c-1 have not (re)synced its replication history and may have lost \
         confirmed writes that only c-0 still holds"
    );
    status.target_primary = Some(TargetPrimary::Pod("c-2".into()));
    assert!(failover_message(&status, &steady)
        .unwrap()
        .contains("promoting c-2"));
}

#[test]
fn a_scale_down_that_would_remove_the_primary_is_held() {
    let status = |primary: &str| TopologyStatus {
        current_primary: Some(primary.into()),
        target_primary: Some(TargetPrimary::Pod(primary.into())),
        ..Default::default()
    };
    assert_eq!(scale_down_hold("c", 1, Some(3), &status("c-0")), None);
    assert_eq!(scale_down_hold("c", 1, Some(3), &status("c-2")), Some(3));
    assert_eq!(scale_down_hold("c", 2, Some(3), &status("c-1")), None);
    // Scaling up, or no StatefulSet yet: nothing to hold.
    assert_eq!(scale_down_hold("c", 3, Some(1), &status("c-2")), None);
    assert_eq!(scale_down_hold("c", 1, None, &status("c-2")), None);
    // A failover's target counts like the primary.
    let moving = TopologyStatus {
        current_primary: Some("c-0".into()),
        target_primary: Some(TargetPrimary::Pod("c-2".into())),
        ..Default::default()
    };
    assert_eq!(scale_down_hold("c", 1, Some(3), &moving), Some(3));
    // Another instance's pod name with the same prefix is not an ordinal of this one.
    assert_eq!(scale_down_hold("c", 1, Some(3), &status("cache-2")), None);
}

#[test]
fn a_steady_replicated_instance_is_watched_within_the_failover_delay() {
    assert_eq!(watch_interval(Duration::ZERO), Duration::from_secs(2));
    assert_eq!(
        watch_interval(Duration::from_secs(3)),
        Duration::from_secs(3)
    );
    assert_eq!(
        watch_interval(Duration::from_secs(10)),
        Duration::from_secs(5)
    );
}

#[test]
fn requeue_is_quick_while_moving_and_at_the_deadline_while_waiting() {
    let now = Timestamp(10_000);
    assert_eq!(requeue_after(&TopologyAction::Steady, now), None);
    let wait = TopologyAction::WaitFailoverDelay {
        since: Timestamp(0),
        until: Timestamp(13_000),
        failure: redis_fsm::PrimaryFailure::PodNotReady,
    };
    assert_eq!(requeue_after(&wait, now), Some(Duration::from_secs(3)));
    assert_eq!(
        requeue_after(&TopologyAction::Promote { pod: "c-1".into() }, now),
        Some(Duration::from_millis(500))
    );
    // A switchover leaves no pod labelled primary until it is confirmed: look again at once.
    let switchover = TopologyAction::Switchover {
        from: "c-0".into(),
        to: "c-1".into(),
    };
    assert_eq!(
        requeue_after(&switchover, now),
        Some(Duration::from_millis(100))
    );
    let running = TopologyAction::Wait {
        reason: WaitReason::SwitchoverRunning("c-0".into()),
    };
    assert_eq!(
        requeue_after(&running, now),
        Some(Duration::from_millis(100))
    );
    // A supervised rollout waits for a request, which is an instance change: no timer.
    let supervised = TopologyAction::Wait {
        reason: WaitReason::SwitchoverNotRequested("c-0".into()),
    };
    assert_eq!(requeue_after(&supervised, now), None);
    let back_off = TopologyAction::Wait {
        reason: WaitReason::SwitchoverBackOff(Timestamp(40_000)),
    };
    assert_eq!(requeue_after(&back_off, now), Some(Duration::from_secs(30)));
}

#[test]
fn only_the_failover_delay_and_a_switchover_back_off_are_deadlines() {
    let now = Timestamp(10_000);
    let wait = TopologyAction::WaitFailoverDelay {
        since: Timestamp(0),
        until: Timestamp(13_000),
        failure: redis_fsm::PrimaryFailure::PodNotReady,
    };
    assert_eq!(deadline_after(&wait, now), Some(Duration::from_secs(3)));
    let back_off = TopologyAction::Wait {
        reason: WaitReason::SwitchoverBackOff(Timestamp(40_000)),
    };
    assert_eq!(
        deadline_after(&back_off, now),
        Some(Duration::from_secs(30))
    );
    // Waits that a pod event ends are no deadline: with no pod started they bring no timer.
    let running = TopologyAction::Wait {
        reason: WaitReason::SwitchoverRunning("c-0".into()),
    };
    assert_eq!(deadline_after(&running, now), None);
    assert_eq!(deadline_after(&TopologyAction::Steady, now), None);
    assert_eq!(
        deadline_after(&TopologyAction::Promote { pod: "c-1".into() }, now),
        None
    );
}
