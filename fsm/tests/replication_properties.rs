//! Properties and worked examples of `elect`, `decide`, the role labels and the scale-down plan
//! over arbitrary observations.

use std::time::Duration;

use proptest::prelude::*;
use redis_fsm::{
    decide, demoted_by, desired_roles, elect, in_sync_replicas, label_patches, plan_scale_down,
    Election, Endpoint, FailoverState, NoCandidate, PodReplication, PrimaryFailure, Refusal,
    ReplicaLink, ReplicationHistory, RoleLabel, RolloutPolicy, RolloutStep, ScaleDown, ServerRole,
    ServerState, StopReason, SwitchoverReason, SwitchoverRecord, TargetPrimary, Timestamp,
    TopologyAction, TopologyPolicy, TopologyStatus, Unobserved, WaitReason,
};

const IDS: [&str; 3] = ["A", "B", "C"];

fn endpoint(i: u32) -> Endpoint {
    Endpoint {
        host: format!("10.0.0.{i}"),
        port: 6379,
    }
}

fn name(i: u32) -> String {
    format!("cache-{i}")
}

fn id() -> impl Strategy<Value = String> {
    proptest::sample::select(IDS.to_vec()).prop_map(String::from)
}

fn server() -> impl Strategy<Value = ServerState> {
    (
        0..3u32,
        prop_oneof![
            Just(None),
            (0..4u32, any::<bool>(), proptest::bool::weighted(0.1)).prop_map(Some)
        ],
        id(),
        proptest::option::of(id()),
        0..100u64,
        proptest::option::of(0..100u64),
        proptest::bool::weighted(0.05),
        0..3u64,
    )
        .prop_map(
            |(run, link, replid, replid2, offset, second, loading, keys)| ServerState {
                run_id: format!("run-{run}"),
                uptime_seconds: 5,
                role: match link {
                    None => ServerRole::Master,
                    Some((to, link_up, sync_in_progress)) => ServerRole::Replica(ReplicaLink {
                        master_host: endpoint(to).host,
                        master_port: 6379,
                        link_up,
                        sync_in_progress,
                        replica_offset: offset,
                    }),
                },
                replid,
                replid2,
                repl_offset: offset,
                second_repl_offset: second,
                aof_enabled: false,
                loading,
                keys,
                failover_state: FailoverState::None,
                server: Default::default(),
            },
        )
}

fn pods() -> impl Strategy<Value = Vec<PodReplication>> {
    proptest::collection::vec(
        (
            proptest::bool::weighted(0.85),
            proptest::bool::weighted(0.05),
            proptest::bool::weighted(0.9),
            proptest::option::weighted(0.85, server()),
            proptest::bool::weighted(0.1),
            proptest::bool::weighted(0.3),
            proptest::option::weighted(0.4, proptest::sample::select(Refusal::ALL.to_vec())),
        ),
        1..5,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(
                |(
                    i,
                    (pod_ready, pod_deleting, node_ready, server, node_cordoned, outdated, refusal),
                )| {
                    let i = i as u32;
                    PodReplication {
                        pod: name(i),
                        ordinal: i,
                        endpoint: endpoint(i),
                        pod_ready,
                        pod_deleting,
                        node_ready,
                        node_cordoned,
                        outdated,
                        server: server.ok_or(Unobserved {
                            reason: "timeout".into(),
                            refusal,
                        }),
                    }
                },
            )
            .collect()
    })
}

fn switchover() -> impl Strategy<Value = SwitchoverRecord> {
    (
        (0..5u32).prop_map(name),
        proptest::sample::select(SwitchoverReason::ALL.to_vec()),
        0..30_000i64,
    )
        .prop_map(|(from, reason, since)| SwitchoverRecord {
            from,
            reason,
            since: Timestamp(since),
        })
}

fn history() -> impl Strategy<Value = ReplicationHistory> {
    (
        id(),
        proptest::option::of(id()),
        proptest::option::of(0..100u64),
    )
        .prop_map(|(replid, replid2, second_offset)| ReplicationHistory {
            replid,
            replid2,
            second_offset,
        })
}

fn status() -> impl Strategy<Value = TopologyStatus> {
    let pod = (0..5u32).prop_map(name);
    (
        proptest::option::weighted(0.9, pod.clone()),
        proptest::option::of(prop_oneof![
            Just(TargetPrimary::Pending),
            pod.prop_map(TargetPrimary::Pod)
        ]),
        proptest::option::of(0..30_000i64),
        proptest::option::weighted(0.8, history()),
        proptest::option::weighted(0.8, (0..3u32).prop_map(|r| format!("run-{r}"))),
        proptest::option::weighted(0.3, switchover()),
        proptest::option::weighted(0.1, 0..60_000i64),
    )
        .prop_map(
            |(
                current_primary,
                target_primary,
                since,
                primary_history,
                primary_run_id,
                switchover,
                retry_at,
            )| {
                TopologyStatus {
                    current_primary,
                    target_primary,
                    primary_failing_since: since.map(Timestamp),
                    primary_history,
                    primary_run_id,
                    switchover,
                    switchover_retry_at: retry_at.map(Timestamp),
                }
            },
        )
}

fn policy(replicas: u32) -> TopologyPolicy {
    TopologyPolicy {
        replicas,
        failover_delay: Duration::from_secs(10),
        ..TopologyPolicy::default()
    }
}

fn pod_index(pods: &[PodReplication], pod: &str) -> usize {
    pods.iter()
        .position(|p| p.pod == pod)
        .expect("action names an observed pod")
}

/// `pod` after `REPLICAOF NO ONE`: a master with a new replication id, the old one kept as `replid2`.
fn promote(pods: &mut [PodReplication], pod: &str) {
    let i = pod_index(pods, pod);
    if let Ok(state) = &mut pods[i].server {
        state.role = ServerRole::Master;
        state.replid2 = Some(state.replid.clone());
        state.second_repl_offset = Some(state.repl_offset + 1);
        state.replid = "P".into();
    }
}

/// What the servers report once a command has been carried out.
fn reflect(pods: &mut [PodReplication], action: &TopologyAction) {
    let follow = |pod: &mut PodReplication, to: &Endpoint| {
        if let Ok(state) = &mut pod.server {
            state.role = ServerRole::Replica(ReplicaLink {
                master_host: to.host.clone(),
                master_port: to.port,
                link_up: false,
                sync_in_progress: false,
                replica_offset: state.repl_offset,
            });
        }
    };
    match action {
        TopologyAction::Fence { pods: parked } => {
            for pod in parked {
                let i = pod_index(pods, pod);
                let own = pods[i].endpoint.clone();
                follow(&mut pods[i], &own);
            }
        }
        TopologyAction::Repoint { pods: moved, to } => {
            let to = pods[pod_index(pods, to)].endpoint.clone();
            for pod in moved {
                let i = pod_index(pods, pod);
                follow(&mut pods[i], &to);
            }
        }
        TopologyAction::Promote { pod } => promote(pods, pod),
        // The process stopped; its container restarts it later.
        TopologyAction::ShutDown { pod } => {
            let i = pod_index(pods, pod);
            pods[i].server = Err(Unobserved::unreachable("connection refused"));
        }
        TopologyAction::DeletePod { pod, .. } => {
            let i = pod_index(pods, pod);
            pods[i].pod_deleting = true;
        }
        // FAILOVER TO: the target is promoted, the old primary follows it.
        TopologyAction::Switchover { from, to } => {
            promote(pods, to);
            let to = pods[pod_index(pods, to)].endpoint.clone();
            let i = pod_index(pods, from);
            follow(&mut pods[i], &to);
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Only a pod that shares the recorded history, may be promoted and is not the failed primary
    /// is ever elected, and only while every other pod is observed and shares the history too; it
    /// is at least as advanced as every one of them, promotable or not.
    #[test]
    fn a_divergent_replica_is_never_elected(
        pods in pods(),
        anchor in history(),
        excluded in proptest::option::of((0..5u32).prop_map(name)),
    ) {
        if let Election::Candidate(pod) = elect(&anchor, excluded.as_deref(), &pods) {
            let chosen = &pods[pod_index(&pods, &pod)];
            prop_assert!(chosen.shares_history(&anchor));
            prop_assert!(chosen.is_electable());
            prop_assert_ne!(Some(pod.as_str()), excluded.as_deref());
            let offset = chosen.state().map(|s| s.repl_offset);
            for other in pods.iter().filter(|p| Some(p.pod.as_str()) != excluded.as_deref()) {
                prop_assert!(other.is_observed(), "elected while {} unobserved", other.pod);
                prop_assert!(
                    other.shares_history(&anchor),
                    "elected while {} lacks the history",
                    other.pod
                );
                prop_assert!(other.state().map(|s| s.repl_offset) <= offset);
            }
        }
    }

    /// `decide` is a function of its inputs, and once its action is reflected (the status written,
    /// or the servers changed) it moves on instead of repeating it.
    #[test]
    fn decide_is_idempotent_once_its_action_is_reflected(
        status in status(),
        mut pods in pods(),
        replicas in 1..4u32,
        now in 0..60_000i64,
    ) {
        let policy = policy(replicas);
        let now = Timestamp(now);
        let action = decide(&status, &pods, &policy, now);
        prop_assert_eq!(&decide(&status, &pods, &policy, now), &action);
        if let Some(next) = status.after(&action) {
            prop_assert!(action.is_status_write() && !action.is_command());
            prop_assert_ne!(decide(&next, &pods, &policy, now), action);
        } else if action.is_command() && !matches!(action, TopologyAction::KillScript { .. }) {
            // `KillScript` is repeated while its grace runs: a script that wrote cannot be killed and
            // leaves the observation as it was; the clock moves it on (see the busy-primary example).
            reflect(&mut pods, &action);
            prop_assert_ne!(decide(&status, &pods, &policy, now), action);
        }
    }

    /// A busy old primary (it may still be a master, and accepts no `REPLICAOF`) is shut down before
    /// anyone is elected, promoted or confirmed in its place.
    #[test]
    fn a_busy_old_primary_is_shut_down_before_another_pod_takes_over(
        status in status(),
        pods in pods(),
        replicas in 1..4u32,
        now in 0..60_000i64,
    ) {
        let action = decide(&status, &pods, &policy(replicas), Timestamp(now));
        let busy_current = status.current_primary.as_deref().is_some_and(|current| {
            pods.iter().any(|p| p.pod == current && p.refusal() == Some(Refusal::Busy))
        });
        if busy_current && status.failover_in_flight() {
            prop_assert!(
                !matches!(
                    action,
                    TopologyAction::SetTargetPrimary { .. }
                        | TopologyAction::Promote { .. }
                        | TopologyAction::ConfirmPrimary { .. }
                        | TopologyAction::Switchover { .. }
                ),
                "{:?} while the old primary is busy",
                action
            );
        }
    }

    /// A primary that refuses new connections (maxclients), or that the operator cannot connect to for a
    /// reason of its own host, counts as alive: no failover starts for it unless its pod is being deleted or
    /// its node is not Ready.
    #[test]
    fn a_primary_at_maxclients_is_never_failed_over(
        status in status(),
        pods in pods(),
        replicas in 1..4u32,
        now in 0..60_000i64,
    ) {
        let action = decide(&status, &pods, &policy(replicas), Timestamp(now));
        let refusing = status.current_primary.as_deref().and_then(|current| {
            pods.iter()
                .find(|p| p.pod == current && p.refusal().is_some_and(Refusal::presumed_alive))
        });
        if let Some(primary) = refusing.filter(|p| !p.pod_deleting && p.node_ready) {
            if !status.failover_in_flight() && stray_free(&pods) {
                prop_assert!(
                    !matches!(
                        action,
                        TopologyAction::MarkPrimaryFailing { .. }
                            | TopologyAction::StartFailover { .. }
                            | TopologyAction::KillScript { .. }
                    ),
                    "{:?} for {} at maxclients",
                    action,
                    primary.pod
                );
            }
        }
    }

    /// Applied in order, the label patches never leave two pods labelled primary, and they reach
    /// the desired labels.
    #[test]
    fn label_patches_never_label_two_primaries(
        status in status(),
        pods in pods(),
        live_primary in proptest::option::of(0..5u32),
        live_replicas in proptest::collection::vec(any::<bool>(), 5),
    ) {
        let desired = desired_roles(&status, &pods, 10);
        prop_assert!(desired.iter().filter(|(_, r)| *r == Some(RoleLabel::Primary)).count() <= 1);
        let mut live: Vec<(String, Option<RoleLabel>)> = pods
            .iter()
            .map(|p| {
                let role = if Some(p.ordinal) == live_primary {
                    Some(RoleLabel::Primary)
                } else if live_replicas[p.ordinal as usize] {
                    Some(RoleLabel::Replica)
                } else {
                    None
                };
                (p.pod.clone(), role)
            })
            .collect();
        for (pod, role) in label_patches(&live, &desired) {
            let slot = live.iter_mut().find(|(name, _)| *name == pod).expect("known pod");
            slot.1 = role;
            prop_assert!(live.iter().filter(|(_, r)| *r == Some(RoleLabel::Primary)).count() <= 1);
        }
        prop_assert_eq!(live, desired);
    }

    /// A primary whose server answers as a confirmed master is never failed over for its pod or node being not
    /// ready unless the pod the election would promote is ready itself: when a node's kubelet stops reporting,
    /// every pod on it turns not ready while the servers serve on, and moving the primary between such pods
    /// only churns.
    #[test]
    fn a_serving_primary_is_not_failed_over_to_a_pod_no_readier(
        ready in proptest::collection::vec(any::<bool>(), 3),
        nodes_ready in proptest::collection::vec(any::<bool>(), 3),
        now in 0..60_000i64,
    ) {
        let (status, mut pods) = healthy();
        for (i, pod) in pods.iter_mut().enumerate() {
            pod.pod_ready = ready[i];
            pod.node_ready = nodes_ready[i];
        }
        let action = decide(&status, &pods, &policy(3), Timestamp(now));
        let fails_over = matches!(action, TopologyAction::MarkPrimaryFailing { .. });
        // The election's choice among the replicas of `healthy()`: cache-1, the most advanced, if electable.
        let candidate = &pods[1];
        let would_help = candidate.node_ready && candidate.pod_ready;
        let primary_ok = pods[0].pod_ready && pods[0].node_ready;
        prop_assert_eq!(fails_over, !primary_ok && would_help, "{:?}", action);
    }
}

/// No replica follows an address that belongs to no pod (those are parked before anything else).
fn stray_free(pods: &[PodReplication]) -> bool {
    pods.iter()
        .all(|p| p.replica_link().is_none() || pods.iter().any(|q| p.follows(&q.endpoint)))
}

// Worked examples.

fn state(run: &str, role: ServerRole, replid: &str, offset: u64, keys: u64) -> ServerState {
    ServerState {
        run_id: run.into(),
        uptime_seconds: 100,
        role,
        replid: replid.into(),
        replid2: None,
        repl_offset: offset,
        second_repl_offset: None,
        aof_enabled: false,
        loading: false,
        keys,
        failover_state: FailoverState::None,
        server: Default::default(),
    }
}

fn replica_of(to: u32, link_up: bool, offset: u64) -> ServerRole {
    ServerRole::Replica(ReplicaLink {
        master_host: endpoint(to).host,
        master_port: 6379,
        link_up,
        sync_in_progress: false,
        replica_offset: offset,
    })
}

fn pod(i: u32, server: Result<ServerState, Unobserved>) -> PodReplication {
    PodReplication {
        pod: name(i),
        ordinal: i,
        endpoint: endpoint(i),
        pod_ready: true,
        pod_deleting: false,
        node_ready: true,
        node_cordoned: false,
        outdated: false,
        server,
    }
}

/// A healthy three-pod instance: cache-0 primary at offset 100, replicas linked at 100 and 90.
fn healthy() -> (TopologyStatus, Vec<PodReplication>) {
    let status = TopologyStatus {
        current_primary: Some(name(0)),
        target_primary: Some(TargetPrimary::Pod(name(0))),
        primary_failing_since: None,
        primary_history: Some(ReplicationHistory {
            replid: "A".into(),
            replid2: None,
            second_offset: None,
        }),
        primary_run_id: Some("run-0".into()),
        ..TopologyStatus::default()
    };
    let pods = vec![
        pod(0, Ok(state("run-0", ServerRole::Master, "A", 100, 10))),
        pod(
            1,
            Ok(state("run-1", replica_of(0, true, 100), "A", 100, 10)),
        ),
        pod(2, Ok(state("run-2", replica_of(0, true, 90), "A", 90, 9))),
    ];
    (status, pods)
}

#[test]
fn a_healthy_instance_is_steady_and_labels_follow_the_confirmed_primary() {
    let (status, pods) = healthy();
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::Steady
    );
    assert_eq!(
        desired_roles(&status, &pods, 5),
        vec![
            (name(0), Some(RoleLabel::Primary)),
            (name(1), Some(RoleLabel::Replica)),
            (name(2), None), // 10 bytes behind, more than the bound of 5
        ]
    );
    assert_eq!(in_sync_replicas(&status, &pods, 10).len(), 2);
}

#[test]
fn a_fresh_instance_bootstraps_its_lowest_ordinal() {
    let empty = |i: u32, id: &str| {
        pod(
            i,
            Ok(state(
                &format!("run-{i}"),
                replica_of(i, false, 0),
                id,
                0,
                0,
            )),
        )
    };
    let pods = vec![empty(1, "X"), empty(0, "Y"), empty(2, "Z")];
    let status = TopologyStatus::default();
    let action = decide(&status, &pods, &policy(3), Timestamp(0));
    assert_eq!(action, TopologyAction::Bootstrap { primary: name(0) });
    // Then: promote the parked pod, confirm it, repoint the others.
    let status = status.after(&action).expect("status write");
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::Promote { pod: name(0) }
    );
    assert_eq!(
        desired_roles(&status, &pods, 0)
            .iter()
            .filter(|(_, r)| r.is_some())
            .count(),
        0
    );
}

#[test]
fn several_pods_with_data_and_no_recorded_primary_need_a_person() {
    let pods = vec![
        pod(0, Ok(state("run-0", ServerRole::Master, "X", 0, 5))),
        pod(1, Ok(state("run-1", ServerRole::Master, "Y", 0, 7))),
    ];
    let action = decide(&TopologyStatus::default(), &pods, &policy(2), Timestamp(0));
    assert_eq!(
        action,
        TopologyAction::Stop {
            reason: StopReason::SeveralPodsHoldData(vec![name(0), name(1)])
        }
    );
}

/// An instance re-created over its claims: every pod holds data and no primary is recorded. The pod a person
/// chose is started from, else the one whose claim records it was the primary last; one that holds no data is
/// never taken for either; then it is promoted and the others follow it.
#[test]
fn of_several_pods_with_data_the_chosen_or_recorded_primary_is_started_from() {
    // Every server boots parked (a replica of itself), its data loaded.
    let parked = |i: u32, replid: &str, keys: u64| {
        pod(
            i,
            Ok(state(
                &format!("run-{i}"),
                replica_of(i, false, 9),
                replid,
                9,
                keys,
            )),
        )
    };
    let pods = vec![parked(0, "X", 5), parked(1, "X", 7), parked(2, "Y", 0)];
    let with = |chosen: Option<u32>, recorded: Option<u32>| TopologyPolicy {
        chosen_primary: chosen.map(name),
        recorded_primary: recorded.map(name),
        ..policy(3)
    };
    let status = TopologyStatus::default();
    let decided = |policy: &TopologyPolicy| decide(&status, &pods, policy, Timestamp(0));
    assert_eq!(
        decided(&with(None, Some(1))),
        TopologyAction::Bootstrap { primary: name(1) }
    );
    assert_eq!(
        decided(&with(Some(0), Some(1))),
        TopologyAction::Bootstrap { primary: name(0) },
        "a person's choice comes first"
    );
    // A chosen or recorded pod without data (or no pod of the instance) is no choice.
    for policy in [
        with(Some(2), None),
        with(None, Some(2)),
        with(Some(7), None),
    ] {
        assert_eq!(
            decided(&policy),
            TopologyAction::Stop {
                reason: StopReason::SeveralPodsHoldData(vec![name(0), name(1)])
            }
        );
    }
    assert_eq!(
        decided(&with(Some(2), Some(1))),
        TopologyAction::Bootstrap { primary: name(1) }
    );
    let policy = with(None, Some(1));
    let status = status
        .after(&decided(&policy))
        .expect("Bootstrap is a status write");
    assert_eq!(status.current_primary.as_deref(), Some(name(1).as_str()));
    assert_eq!(
        decide(&status, &pods, &policy, Timestamp(0)),
        TopologyAction::Promote { pod: name(1) }
    );
}

/// The node's kubelet stopped: every pod turns not ready, every server serves on. The primary stays, and a
/// failing mark from before is cleared; once a replica is ready again while the primary's pod is not, the
/// failover goes ahead as before.
#[test]
fn every_pod_not_ready_while_the_servers_serve_keeps_the_primary() {
    let (status, mut pods) = healthy();
    for pod in &mut pods {
        pod.pod_ready = false;
    }
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::Steady
    );
    let marked = TopologyStatus {
        primary_failing_since: Some(Timestamp(0)),
        ..status.clone()
    };
    assert_eq!(
        decide(&marked, &pods, &policy(3), Timestamp(60_000)),
        TopologyAction::ClearPrimaryFailing
    );
    pods[1].pod_ready = true;
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::MarkPrimaryFailing {
            since: Timestamp(0),
            failure: PrimaryFailure::PodNotReady
        }
    );
}

#[test]
fn an_unreachable_primary_fails_over_after_the_delay_from_the_persisted_since() {
    let (status, mut pods) = healthy();
    pods[0].server = Err(Unobserved::unreachable("connection refused"));
    let failure = PrimaryFailure::Unreachable("connection refused".into());
    let mark = decide(&status, &pods, &policy(3), Timestamp(1_000));
    assert_eq!(
        mark,
        TopologyAction::MarkPrimaryFailing {
            since: Timestamp(1_000),
            failure: failure.clone()
        }
    );
    // A restarted operator reads `since` from status, so the delay keeps counting from 1 s.
    let status = status.after(&mark).expect("status write");
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(9_000)),
        TopologyAction::WaitFailoverDelay {
            since: Timestamp(1_000),
            until: Timestamp(11_000),
            failure: failure.clone()
        }
    );
    let start = decide(&status, &pods, &policy(3), Timestamp(11_000));
    assert_eq!(start, TopologyAction::StartFailover { failure });
    let status = status.after(&start).expect("status write");
    // Replicas following the old primary are parked before anyone is elected.
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(11_000)),
        TopologyAction::Fence {
            pods: vec![name(1), name(2)]
        }
    );
    let mut parked = pods.clone();
    reflect(
        &mut parked,
        &TopologyAction::Fence {
            pods: vec![name(1), name(2)],
        },
    );
    let elect = decide(&status, &parked, &policy(3), Timestamp(11_000));
    assert_eq!(elect, TopologyAction::SetTargetPrimary { pod: name(1) });
    let status = status.after(&elect).expect("status write");
    assert_eq!(
        decide(&status, &parked, &policy(3), Timestamp(11_000)),
        TopologyAction::Promote { pod: name(1) }
    );
    // No pod is labelled primary while the failover is in flight.
    assert!(desired_roles(&status, &parked, 0)
        .iter()
        .all(|(_, r)| r.is_none()));
}

#[test]
fn a_primary_that_restarted_empty_is_failed_over_at_once() {
    let (status, mut pods) = healthy();
    // The boot guard parked it: a replica of itself, a new run_id, no data.
    pods[0].server = Ok(state("run-9", replica_of(0, false, 0), "Z", 0, 0));
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::StartFailover {
            failure: PrimaryFailure::Restarted
        }
    );
    // Even if it came back as a master, replicas are never pointed at it.
    pods[0].server = Ok(state("run-9", ServerRole::Master, "Z", 0, 0));
    pods[2].server = Ok(state("run-2", replica_of(1, false, 90), "A", 90, 9));
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::StartFailover {
            failure: PrimaryFailure::Restarted
        }
    );
}

#[test]
fn no_replica_with_the_primary_history_stops_for_manual_intervention() {
    let (mut status, mut pods) = healthy();
    status.target_primary = Some(TargetPrimary::Pending);
    pods[0].server = Err(Unobserved::unreachable("timeout"));
    pods[1].server = Ok(state("run-1", replica_of(1, false, 50), "B", 50, 5));
    pods[2].server = Ok(state("run-2", replica_of(2, false, 0), "C", 0, 0));
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::Stop {
            reason: StopReason::NoSafeCandidate(NoCandidate::NoSharedHistory {
                divergent: vec![name(1)]
            })
        }
    );
    // An unobserved replica might hold the newest confirmed write: wait for it.
    pods[1].server = Err(Unobserved::unreachable("timeout"));
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::Wait {
            reason: WaitReason::PodsUnobserved(vec![name(1)])
        }
    );
}

#[test]
fn before_any_primary_an_unobservable_outdated_pod_is_replaced_one_at_a_time() {
    let empty = |i: u32| {
        pod(
            i,
            Ok(state(
                &format!("run-{i}"),
                replica_of(i, false, 0),
                "X",
                0,
                0,
            )),
        )
    };
    let never_started = |i: u32| {
        let mut p = pod(i, Err(Unobserved::unreachable("no address")));
        p.outdated = true;
        p
    };
    let status = TopologyStatus::default();
    // The corrected spec (an image that could not be pulled): the outdated pod that never ran goes.
    let mut pods = vec![never_started(0)];
    assert_eq!(
        decide(&status, &pods, &policy(1), Timestamp(0)),
        TopologyAction::DeletePod {
            pod: name(0),
            step: RolloutStep::UpdatingOnlyPod
        }
    );
    // One at a time: not while one is already going.
    pods = vec![never_started(0), never_started(1), empty(2)];
    pods[1].pod_deleting = true;
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::Wait {
            reason: WaitReason::PodsUnobserved(vec![name(0), name(1)])
        }
    );
    // An unobservable pod of the current template is waited for, as before.
    let mut current = never_started(0);
    current.outdated = false;
    assert_eq!(
        decide(&status, &[current], &policy(1), Timestamp(0)),
        TopologyAction::Wait {
            reason: WaitReason::PodsUnobserved(vec![name(0)])
        }
    );
    // Once a primary was recorded, an unobservable pod is the failover's business, never replaced here.
    let (mut status, mut pods) = healthy();
    status.current_primary = Some(name(0));
    pods[0] = never_started(0);
    assert!(!matches!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::DeletePod { .. }
    ));
}

#[test]
fn an_old_primary_that_returns_rejoins_as_a_replica() {
    let (mut status, mut pods) = healthy();
    // cache-1 was promoted and confirmed; cache-0 comes back still thinking it is master.
    status.current_primary = Some(name(1));
    status.target_primary = Some(TargetPrimary::Pod(name(1)));
    status.primary_run_id = Some("run-1".into());
    status.primary_history = Some(ReplicationHistory {
        replid: "P".into(),
        replid2: Some("A".into()),
        second_offset: Some(101),
    });
    pods[1].server = Ok(ServerState {
        replid2: Some("A".into()),
        second_repl_offset: Some(101),
        ..state("run-1", ServerRole::Master, "P", 120, 12)
    });
    pods[2].server = Ok(state("run-2", replica_of(1, true, 120), "P", 120, 12));
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::Repoint {
            pods: vec![name(0)],
            to: name(1)
        }
    );
    assert_eq!(
        desired_roles(&status, &pods, 0)[0],
        (name(0), None),
        "the old primary carries no primary label"
    );
}

#[test]
fn scale_down_never_removes_the_primary() {
    let (mut status, mut pods) = healthy();
    assert_eq!(plan_scale_down(&status, &pods, 1), ScaleDown::Safe);
    // cache-2 is primary; scaling to 2 removes it: switch over to the best surviving replica.
    status.current_primary = Some(name(2));
    status.target_primary = Some(TargetPrimary::Pod(name(2)));
    pods[2].server = Ok(state("run-2", ServerRole::Master, "A", 100, 10));
    pods[0].server = Ok(state("run-0", replica_of(2, true, 95), "A", 95, 10));
    pods[1].server = Ok(state("run-1", replica_of(2, true, 100), "A", 100, 10));
    assert_eq!(
        plan_scale_down(&status, &pods, 2),
        ScaleDown::SwitchoverFirst { to: name(1) }
    );
    // Scaling to 1 keeps only cache-0.
    assert_eq!(
        plan_scale_down(&status, &pods, 1),
        ScaleDown::SwitchoverFirst { to: name(0) }
    );
    // Without an in-sync survivor the scale-down must wait.
    pods[0].server = Ok(state("run-0", replica_of(2, false, 95), "A", 95, 10));
    assert_eq!(plan_scale_down(&status, &pods, 1), ScaleDown::Blocked);
}

#[test]
fn a_standalone_server_that_restarts_is_taken_back_not_failed_over() {
    let (status, pods) = healthy();
    let solo = vec![PodReplication {
        server: Ok(state("run-7", ServerRole::Master, "Q", 0, 0)),
        ..pods[0].clone()
    }];
    assert_eq!(
        decide(&status, &solo, &policy(1), Timestamp(0)),
        TopologyAction::Bootstrap { primary: name(0) }
    );
}

/// A failover that finds nobody safe to elect while the old primary is back intact is abandoned,
/// and the primary's recorded identity is kept: a restart before its promotion is still a restart.
#[test]
fn an_aborted_failover_keeps_the_primary_run_id_and_history() {
    let (mut status, mut pods) = healthy();
    status.target_primary = Some(TargetPrimary::Pending);
    status.primary_failing_since = Some(Timestamp(0));
    // Fenced: the old primary and cache-2 are parked; cache-1 cannot be observed.
    pods[0].server = Ok(state("run-0", replica_of(0, false, 100), "A", 100, 10));
    pods[1].server = Err(Unobserved::unreachable("timeout"));
    pods[2].server = Ok(state("run-2", replica_of(2, false, 90), "A", 90, 9));
    let abort = decide(&status, &pods, &policy(3), Timestamp(0));
    assert_eq!(abort, TopologyAction::AbortFailover { primary: name(0) });
    let kept = status.after(&abort).expect("status write");
    assert_eq!(
        kept,
        TopologyStatus {
            target_primary: Some(TargetPrimary::Pod(name(0))),
            primary_failing_since: None,
            ..status.clone()
        }
    );
    assert_eq!(
        decide(&kept, &pods, &policy(3), Timestamp(0)),
        TopologyAction::Promote { pod: name(0) }
    );
    // It restarts empty before its promotion: failed over again, never promoted empty.
    pods[0].server = Ok(state("run-9", replica_of(0, false, 0), "Y", 0, 0));
    assert_eq!(
        decide(&kept, &pods, &policy(3), Timestamp(0)),
        TopologyAction::StartFailover {
            failure: PrimaryFailure::Restarted
        }
    );
}

/// The failover of the model's counterexample: a write confirmed through cache-1 only, cache-1
/// restarts empty, the primary cache-0 becomes unreachable. cache-2 shares the history but may lack
/// that write.
fn failover_with_a_wiped_replica() -> (TopologyStatus, Vec<PodReplication>) {
    let (mut status, mut pods) = healthy();
    status.target_primary = Some(TargetPrimary::Pending);
    pods[0].server = Err(Unobserved::unreachable("timeout"));
    // Restarted empty and parked by the boot guard; cache-2 was fenced.
    pods[1].server = Ok(state("run-5", replica_of(1, false, 0), "Z", 0, 0));
    pods[2].server = Ok(state("run-2", replica_of(2, false, 90), "A", 90, 9));
    (status, pods)
}

#[test]
fn a_failover_waits_for_the_old_primary_while_a_replica_has_not_resynced() {
    let (status, mut pods) = failover_with_a_wiped_replica();
    let wait = decide(&status, &pods, &policy(3), Timestamp(0));
    assert_eq!(
        wait,
        TopologyAction::Wait {
            reason: WaitReason::OldPrimaryMayHoldLostWrites {
                primary: name(0),
                pods: vec![name(1)],
            }
        }
    );
    let TopologyAction::Wait { reason } = wait else {
        unreachable!()
    };
    assert_eq!(
        reason.to_string(),
        "waiting for the old primary cache-0 to return: pods cache-1 have not (re)synced its \
         replication history and may have lost confirmed writes that only cache-0 still holds"
    );
    // The partition heals: cache-0 is the same process with its history (parked by the fence).
    pods[0].server = Ok(state("run-0", replica_of(0, false, 100), "A", 100, 10));
    let abort = decide(&status, &pods, &policy(3), Timestamp(0));
    assert_eq!(abort, TopologyAction::AbortFailover { primary: name(0) });
    let kept = status.after(&abort).expect("status write");
    assert_eq!(
        decide(&kept, &pods, &policy(3), Timestamp(0)),
        TopologyAction::Promote { pod: name(0) }
    );
}

#[test]
fn a_failover_stops_when_the_old_primary_returns_without_the_writes_a_replica_lost() {
    let (status, mut pods) = failover_with_a_wiped_replica();
    pods[0].server = Ok(state("run-9", replica_of(0, false, 0), "Y", 0, 0));
    let stop = decide(&status, &pods, &policy(3), Timestamp(0));
    let reason = StopReason::NoSafeCandidate(NoCandidate::NotResynced {
        pods: vec![name(1)],
    });
    assert_eq!(
        stop,
        TopologyAction::Stop {
            reason: reason.clone()
        }
    );
    assert_eq!(reason.reason(), "NoSafeFailoverCandidate");
    assert_eq!(
        reason.to_string(),
        "no pod can be promoted without losing data: pods cache-1 have not (re)synced the \
         primary's replication history and may have lost confirmed writes that the other \
         replicas lack"
    );
    // Nothing is recorded: a pass that sees cache-1 holding the history again elects as usual.
    pods[1].server = Ok(state("run-5", replica_of(1, false, 95), "A", 95, 9));
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::SetTargetPrimary { pod: name(1) }
    );
}

#[test]
fn a_failover_waits_for_a_more_advanced_replica_being_deleted() {
    let (mut status, mut pods) = healthy();
    status.target_primary = Some(TargetPrimary::Pending);
    pods[0].server = Err(Unobserved::unreachable("timeout"));
    pods[1].server = Ok(state("run-1", replica_of(1, false, 100), "A", 100, 10));
    pods[1].pod_deleting = true;
    pods[2].server = Ok(state("run-2", replica_of(2, false, 90), "A", 90, 9));
    let wait = decide(&status, &pods, &policy(3), Timestamp(0));
    assert_eq!(
        wait,
        TopologyAction::Wait {
            reason: WaitReason::NewestPodsUnelectable(vec![name(1)])
        }
    );
    let TopologyAction::Wait { reason } = wait else {
        unreachable!()
    };
    assert_eq!(
        reason.to_string(),
        "waiting for pods cache-1: they hold writes that no promotable replica has, but are being \
         deleted or on a node that is not Ready"
    );
}

/// The primary's pod was deleted and came back with another address: the replicas still follow the old one,
/// which another instance's server may get next (its full sync would replace their data). They are parked
/// before anything else is decided.
#[test]
fn replicas_following_an_address_no_pod_has_are_parked_first() {
    let (status, mut pods) = healthy();
    pods[0].endpoint = endpoint(9);
    pods[0].server = Ok(state("run-0b", replica_of(9, false, 0), "Z", 0, 0));
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::Fence {
            pods: vec![name(1), name(2)]
        }
    );
    // The same when the pod is gone altogether (it is passed with no address).
    pods[0].endpoint.host = String::new();
    pods[0].server = Err(Unobserved::unreachable("the pod does not exist"));
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::Fence {
            pods: vec![name(1), name(2)]
        }
    );
    // Once parked (following themselves), the failover proceeds as usual.
    for i in [1, 2] {
        let offset = pods[i].state().unwrap().repl_offset;
        pods[i].server = Ok(state(
            &format!("run-{i}"),
            replica_of(i as u32, false, offset),
            "A",
            offset,
            10,
        ));
    }
    assert!(!matches!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::Fence { .. }
    ));
}

/// Scaling 3 -> 1 while cache-2 is the primary: the target is recorded first, then the healthy primary hands
/// over with FAILOVER TO (never by fencing it and promoting a replica that may lag); a target that lost its
/// link makes the switchover give up instead.
#[test]
fn a_scale_down_that_removes_the_primary_switches_over_first() {
    let status = TopologyStatus {
        current_primary: Some(name(2)),
        target_primary: Some(TargetPrimary::Pod(name(2))),
        primary_failing_since: None,
        primary_history: Some(ReplicationHistory {
            replid: "A".into(),
            replid2: None,
            second_offset: None,
        }),
        primary_run_id: Some("run-2".into()),
        ..TopologyStatus::default()
    };
    let mut pods = vec![
        pod(
            0,
            Ok(state("run-0", replica_of(2, true, 100), "A", 100, 10)),
        ),
        pod(
            1,
            Ok(state("run-1", replica_of(2, true, 100), "A", 100, 10)),
        ),
        pod(2, Ok(state("run-2", ServerRole::Master, "A", 100, 10))),
    ];
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::Steady
    );
    let start = decide(&status, &pods, &policy(1), Timestamp(0));
    assert_eq!(
        start,
        TopologyAction::StartSwitchover {
            to: name(0),
            reason: SwitchoverReason::ScaleDown,
            at: Timestamp(0)
        }
    );
    let switching = status.after(&start).unwrap();
    assert!(switching.failover_in_flight());
    assert_eq!(
        decide(&switching, &pods, &policy(1), Timestamp(0)),
        TopologyAction::Switchover {
            from: name(2),
            to: name(0)
        }
    );
    // Redis is running the FAILOVER: wait for it.
    if let Ok(s) = &mut pods[2].server {
        s.failover_state = FailoverState::WaitingForSync;
    }
    assert!(matches!(
        decide(&switching, &pods, &policy(1), Timestamp(0)),
        TopologyAction::Wait { .. }
    ));
    // It rolled back, and the target lost its link meanwhile: wait for it, until the deadline.
    if let Ok(s) = &mut pods[2].server {
        s.failover_state = FailoverState::None;
    }
    pods[0].server = Ok(state("run-0", replica_of(2, false, 90), "A", 90, 10));
    assert_eq!(
        decide(&switching, &pods, &policy(1), Timestamp(0)),
        TopologyAction::Wait {
            reason: WaitReason::SwitchoverTargetNotCaughtUp(name(0))
        }
    );
    // Past the deadline: give up, keep cache-2, and back off before the next attempt.
    let late = Timestamp(0).after(policy(1).switchover_timeout);
    let abort = decide(&switching, &pods, &policy(1), late);
    let retry_at = late.after(policy(1).switchover_retry);
    assert_eq!(
        abort,
        TopologyAction::AbortSwitchover {
            to: name(0),
            retry_at
        }
    );
    let abandoned = switching.after(&abort).unwrap();
    assert!(!abandoned.failover_in_flight());
    assert_eq!(abandoned.current_primary.as_deref(), Some(name(2).as_str()));
    pods[0].server = Ok(state("run-0", replica_of(2, true, 100), "A", 100, 10));
    assert_eq!(
        decide(&abandoned, &pods, &policy(1), late),
        TopologyAction::Wait {
            reason: WaitReason::SwitchoverBackOff(retry_at)
        }
    );
    assert!(matches!(
        decide(&abandoned, &pods, &policy(1), retry_at),
        TopologyAction::StartSwitchover { .. }
    ));
}

// Rolling updates ordered by the operator.

/// A healthy instance of three pods whose primary is `primary`, every replica linked and caught
/// up, every pod outdated.
fn outdated_instance(primary: u32) -> (TopologyStatus, Vec<PodReplication>) {
    let status = TopologyStatus {
        current_primary: Some(name(primary)),
        target_primary: Some(TargetPrimary::Pod(name(primary))),
        primary_history: Some(ReplicationHistory {
            replid: "A".into(),
            replid2: None,
            second_offset: None,
        }),
        primary_run_id: Some(format!("run-{primary}")),
        ..TopologyStatus::default()
    };
    let pods = (0..3)
        .map(|i| {
            let role = if i == primary {
                ServerRole::Master
            } else {
                replica_of(primary, true, 100)
            };
            let mut p = pod(i, Ok(state(&format!("run-{i}"), role, "A", 100, 10)));
            p.outdated = true;
            p
        })
        .collect();
    (status, pods)
}

/// Runs `decide` from `status` on `pods`, carrying out every step as the cluster would (status
/// writes persisted; a deleted pod comes back updated and catches up with the primary; `FAILOVER TO`
/// swaps the roles), until it is steady. Returns every action taken.
fn run_to_steady(
    status: &mut TopologyStatus,
    pods: &mut [PodReplication],
    policy: &TopologyPolicy,
) -> Vec<TopologyAction> {
    let mut actions = Vec::new();
    for now in 0..50 {
        let action = decide(status, pods, policy, Timestamp(now));
        if action == TopologyAction::Steady {
            return actions;
        }
        if let Some(next) = status.after(&action) {
            *status = next;
        }
        reflect(pods, &action);
        replace_deleted(status, pods, &action);
        if let TopologyAction::Switchover { .. } | TopologyAction::Repoint { .. } = &action {
            // The links come up.
            for p in pods.iter_mut() {
                if let Ok(ServerState {
                    role: ServerRole::Replica(link),
                    ..
                }) = &mut p.server
                {
                    link.link_up = true;
                }
            }
        }
        actions.push(action);
    }
    panic!("no steady state after {actions:?}");
}

/// The primary is on the middle ordinal: the two replicas are replaced one at a time, then exactly
/// one switchover to an updated replica, then the old primary is replaced last.
#[test]
fn a_rolling_update_replaces_replicas_then_switches_over_then_the_old_primary() {
    let (mut status, mut pods) = outdated_instance(1);
    let policy = policy(3);
    let actions = run_to_steady(&mut status, &mut pods, &policy);
    let deleted: Vec<&str> = actions
        .iter()
        .filter_map(|a| match a {
            TopologyAction::DeletePod { pod, .. } => Some(pod.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, [name(2), name(0), name(1)], "{actions:?}");
    let switchovers: Vec<&TopologyAction> = actions
        .iter()
        .filter(|a| matches!(a, TopologyAction::Switchover { .. }))
        .collect();
    assert_eq!(switchovers.len(), 1, "{actions:?}");
    assert!(actions.contains(&TopologyAction::DeletePod {
        pod: name(1),
        step: RolloutStep::UpdatingOldPrimary
    }));
    // While the old primary's pod goes away, the rollout says it waits for the old primary.
    let mut deleting = pods.clone();
    deleting[1].outdated = true;
    deleting[1].pod_deleting = true;
    let waiting = decide(&status, &deleting, &policy, Timestamp(0));
    assert_eq!(
        waiting,
        TopologyAction::Wait {
            reason: WaitReason::OldPrimaryBeingReplaced(name(1))
        }
    );
    assert_eq!(
        redis_fsm::rollout_progress(&waiting).map(|p| p.reason),
        Some(redis_fsm::Reason::UpdatingOldPrimary)
    );
    // The primary was never the pod being deleted while it was primary.
    assert!(pods.iter().all(|p| !p.outdated));
    assert_ne!(status.current_primary.as_deref(), Some(name(1).as_str()));
    assert_eq!(
        status.switchover.as_ref().map(|s| s.reason),
        Some(SwitchoverReason::Rollout)
    );
    // The next rollout: the last one's old primary is now a replica like any other.
    for p in &mut pods {
        p.outdated = true;
    }
    let steps: Vec<RolloutStep> = run_to_steady(&mut status, &mut pods, &policy)
        .into_iter()
        .filter_map(|a| match a {
            TopologyAction::DeletePod { step, .. } => Some(step),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        [
            RolloutStep::UpdatingReplica,
            RolloutStep::UpdatingReplica,
            RolloutStep::UpdatingOldPrimary
        ]
    );
}

/// A replaced replica that has not caught up holds the next replacement back; an outdated replica
/// that serves nothing is replaced first.
#[test]
fn a_rolling_update_waits_for_the_replaced_replica_and_replaces_a_broken_one_first() {
    let (status, mut pods) = outdated_instance(0);
    // cache-1 was replaced and is still in its full sync.
    pods[1].outdated = false;
    if let Ok(ServerState {
        role: ServerRole::Replica(link),
        ..
    }) = &mut pods[1].server
    {
        link.sync_in_progress = true;
    }
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::Wait {
            reason: WaitReason::PodCatchingUp(name(1))
        }
    );
    // cache-2, outdated, crash-loops: replacing it is what may repair it.
    pods[2].pod_ready = false;
    pods[2].server = Err(Unobserved::unreachable("connection refused"));
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(0)),
        TopologyAction::DeletePod {
            pod: name(2),
            step: RolloutStep::UpdatingReplica
        }
    );
}

/// Supervised: the replicas are replaced, then the rollout waits for a requested switchover; the
/// request finishes it.
#[test]
fn a_supervised_rolling_update_waits_for_the_requested_switchover() {
    let (mut status, mut pods) = outdated_instance(2);
    let mut policy = TopologyPolicy {
        rollout: RolloutPolicy::Supervised,
        ..policy(3)
    };
    let waiting = loop {
        let action = decide(&status, &pods, &policy, Timestamp(0));
        if !matches!(action, TopologyAction::DeletePod { .. }) {
            break action;
        }
        replace_deleted(&status, &mut pods, &action);
    };
    assert_eq!(
        waiting,
        TopologyAction::Wait {
            reason: WaitReason::SwitchoverNotRequested(name(2))
        }
    );
    assert!(pods.iter().filter(|p| p.outdated).count() == 1 && pods[2].outdated);
    policy.switchover_request = Some(name(0));
    let start = decide(&status, &pods, &policy, Timestamp(0));
    assert_eq!(
        start,
        TopologyAction::StartSwitchover {
            to: name(0),
            reason: SwitchoverReason::Requested,
            at: Timestamp(0)
        }
    );
    // The request is consumed once it is recorded.
    status = status.after(&start).unwrap();
    policy.switchover_request = None;
    run_to_steady(&mut status, &mut pods, &policy);
    assert!(pods.iter().all(|p| !p.outdated));
    assert_eq!(status.current_primary.as_deref(), Some(name(0).as_str()));
}

/// A pod `action` deleted comes back at the update revision, as a replica that caught up with the
/// primary.
fn replace_deleted(status: &TopologyStatus, pods: &mut [PodReplication], action: &TopologyAction) {
    let TopologyAction::DeletePod { pod: deleted, .. } = action else {
        return;
    };
    let primary = status.current_primary.as_deref().expect("a primary");
    let primary = &pods[pod_index(pods, primary)];
    let (ordinal, offset, replid) = (
        primary.ordinal,
        primary.state().map_or(0, |s| s.repl_offset),
        primary
            .state()
            .map_or_else(String::new, |s| s.replid.clone()),
    );
    let i = pod_index(pods, deleted);
    pods[i] = pod(
        pods[i].ordinal,
        Ok(state(
            "new",
            replica_of(ordinal, true, offset),
            &replid,
            offset,
            10,
        )),
    );
}

/// A cordoned primary hands over to a replica on a schedulable node; when every replica shares the
/// cordoned node it hands over once, and does not bounce between pods of that node.
#[test]
fn a_cordoned_primary_switches_over_once() {
    let (status, mut pods) = outdated_instance(0);
    for p in &mut pods {
        p.outdated = false;
    }
    pods[0].node_cordoned = true;
    pods[1].node_cordoned = true;
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(5)),
        TopologyAction::StartSwitchover {
            to: name(2),
            reason: SwitchoverReason::NodeCordoned,
            at: Timestamp(5)
        }
    );
    // One node, all cordoned: once.
    pods[2].node_cordoned = true;
    let start = decide(&status, &pods, &policy(3), Timestamp(5));
    assert!(matches!(start, TopologyAction::StartSwitchover { .. }));
    let mut status = status.after(&start).unwrap();
    let actions = run_to_steady(&mut status, &mut pods, &policy(3));
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, TopologyAction::Switchover { .. }))
            .count(),
        1,
        "{actions:?}"
    );
}

fn busy() -> Unobserved {
    Unobserved {
        reason: "INFO was refused: BUSY".into(),
        refusal: Some(Refusal::Busy),
    }
}

#[test]
fn a_busy_primary_has_its_script_killed_after_the_delay_and_is_kept_when_that_works() {
    let (status, mut pods) = healthy();
    let running = pods[0].server.clone();
    pods[0].server = Err(busy());
    let mark = decide(&status, &pods, &policy(3), Timestamp(1_000));
    assert_eq!(
        mark,
        TopologyAction::MarkPrimaryFailing {
            since: Timestamp(1_000),
            failure: PrimaryFailure::Busy
        }
    );
    let status = status.after(&mark).expect("status write");
    assert!(matches!(
        decide(&status, &pods, &policy(3), Timestamp(10_999)),
        TopologyAction::WaitFailoverDelay { .. }
    ));
    // The delay passed: the script is killed (repeatedly, while the grace of 2 s runs).
    for now in [11_000, 12_999] {
        assert_eq!(
            decide(&status, &pods, &policy(3), Timestamp(now)),
            TopologyAction::KillScript { pod: name(0) }
        );
    }
    // Killed: the same process answers again, nothing moved.
    pods[0].server = running;
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(11_500)),
        TopologyAction::ClearPrimaryFailing
    );
}

#[test]
fn a_primary_busy_in_a_script_that_wrote_is_shut_down_before_a_replica_is_promoted() {
    let (status, mut pods) = healthy();
    pods[0].server = Err(busy());
    let status = TopologyStatus {
        primary_failing_since: Some(Timestamp(1_000)),
        ..status
    };
    // The kill did not help within its grace: fail over.
    let start = decide(&status, &pods, &policy(3), Timestamp(13_000));
    assert_eq!(
        start,
        TopologyAction::StartFailover {
            failure: PrimaryFailure::Busy
        }
    );
    let status = status.after(&start).expect("status write");
    // Nothing can park a busy server (REPLICAOF is refused): it is shut down, before anyone is elected.
    let shut = decide(&status, &pods, &policy(3), Timestamp(13_100));
    assert_eq!(shut, TopologyAction::ShutDown { pod: name(0) });
    assert!(demoted_by(&status, &shut, &pods).is_empty());
    pods[0].server = Err(Unobserved::unreachable("connection refused"));
    // Then as for an unreachable primary: its replicas are parked, the most advanced is elected.
    let fence = decide(&status, &pods, &policy(3), Timestamp(13_200));
    assert_eq!(
        fence,
        TopologyAction::Fence {
            pods: vec![name(1), name(2)]
        }
    );
    reflect(&mut pods, &fence);
    let elect = decide(&status, &pods, &policy(3), Timestamp(13_300));
    assert_eq!(elect, TopologyAction::SetTargetPrimary { pod: name(1) });
    let status = status.after(&elect).expect("status write");
    // Busy again before the promotion (its container restarted and a script runs at once, or the first
    // shutdown did not land): shut down again, never promote beside it.
    pods[0].server = Err(busy());
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(13_400)),
        TopologyAction::ShutDown { pod: name(0) }
    );
}

#[test]
fn a_primary_at_maxclients_is_alive_and_not_failed_over() {
    let (status, mut pods) = healthy();
    pods[0].server = Err(Unobserved {
        reason: "INFO was refused: max number of clients reached".into(),
        refusal: Some(Refusal::MaxClients),
    });
    // Its readiness probe is refused too: the pod turns not Ready. Still no failover.
    pods[0].pod_ready = false;
    let wait = TopologyAction::Wait {
        reason: WaitReason::PrimaryRefusingConnections(name(0)),
    };
    assert_eq!(decide(&status, &pods, &policy(3), Timestamp(1_000)), wait);
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(1_000_000)),
        wait
    );
    // A failing mark from before (it was unreachable a moment) is cleared: it answers.
    let marked = TopologyStatus {
        primary_failing_since: Some(Timestamp(0)),
        ..status.clone()
    };
    assert_eq!(
        decide(&marked, &pods, &policy(3), Timestamp(60_000)),
        TopologyAction::ClearPrimaryFailing
    );
    // A pod being deleted is failed over as before, whatever its server answers.
    pods[0].pod_deleting = true;
    assert_eq!(
        decide(&marked, &pods, &policy(3), Timestamp(60_000)),
        TopologyAction::StartFailover {
            failure: PrimaryFailure::PodDeleting
        }
    );
}

/// The operator's own host refusing it a socket (`EADDRNOTAVAIL` after tens of thousands of sockets in
/// `TIME_WAIT`) says nothing of the primary: it waits, however long, and never fails it over for that.
#[test]
fn a_primary_the_operator_cannot_open_a_socket_to_is_not_failed_over() {
    let (status, mut pods) = healthy();
    pods[0].server = Err(Unobserved {
        reason: "connecting to 10.0.0.1:6379: the operator's own host refused a socket".into(),
        refusal: Some(Refusal::OperatorCannotConnect),
    });
    let wait = TopologyAction::Wait {
        reason: WaitReason::OperatorCannotConnect(name(0)),
    };
    assert_eq!(decide(&status, &pods, &policy(3), Timestamp(1_000)), wait);
    assert_eq!(
        decide(&status, &pods, &policy(3), Timestamp(1_000_000)),
        wait
    );
    // Without that refusal, the same error is an unreachable primary: marked failing, then failed over.
    pods[0].server = Err(Unobserved {
        reason: "connecting to 10.0.0.1:6379: connection refused".into(),
        refusal: None,
    });
    assert!(matches!(
        decide(&status, &pods, &policy(3), Timestamp(1_000)),
        TopologyAction::MarkPrimaryFailing { .. }
    ));
}

#[test]
fn demoted_masters_are_the_fenced_or_repointed_masters_and_a_switchovers_old_primary() {
    let (status, pods) = healthy();
    let fence = TopologyAction::Fence {
        pods: vec![name(0), name(1)],
    };
    // cache-1 was a replica already: its clients stay.
    assert_eq!(demoted_by(&status, &fence, &pods), vec![name(0)]);
    let repoint = TopologyAction::Repoint {
        pods: vec![name(2)],
        to: name(0),
    };
    assert!(demoted_by(&status, &repoint, &pods).is_empty());
    let confirm = TopologyAction::ConfirmPrimary {
        pod: name(1),
        run_id: "run-1".into(),
        history: ReplicationHistory {
            replid: "P".into(),
            replid2: Some("A".into()),
            second_offset: Some(101),
        },
    };
    // A failover's confirmation demotes nobody (the old primary was fenced); a switchover's demotes its source.
    assert!(demoted_by(&status, &confirm, &pods).is_empty());
    let switching = TopologyStatus {
        target_primary: Some(TargetPrimary::Pod(name(1))),
        switchover: Some(SwitchoverRecord {
            from: name(0),
            reason: SwitchoverReason::Requested,
            since: Timestamp(0),
        }),
        ..status
    };
    assert_eq!(demoted_by(&switching, &confirm, &pods), vec![name(0)]);
}
