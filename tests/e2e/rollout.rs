//! Rolling updates that never drop the primary (replicas one at a time, a switchover, the old primary last),
//! supervised rollouts, requested and abandoned switchovers, cordoned nodes and disruption budgets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use redis_fsm::Phase;
use redis_operator::api::{PrimaryUpdateStrategy, RedisInstanceStatus};

use crate::harness::*;
use crate::replication::{
    assert_one_master, converged, finish_and_check, kill_primary_server, labelled,
    three_converged_with_a_writer, wait_converged, wait_failed_over, wait_writes, Writer,
};

/// Pod name -> uid.
async fn uids(env: &TestEnv) -> BTreeMap<String, String> {
    env.pods_of("cache")
        .await
        .into_iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect()
}

/// A running three-pod instance whose primary is not on the highest ordinal (a failover moved it off
/// ordinal 0; the most advanced replica, the lowest ordinal on a tie, took over, and a requested switchover
/// moves it to ordinal 1 when that was ordinal 2), with a writer confirming every write with `WAIT`.
async fn three_pods_primary_in_the_middle(
    env: &TestEnv,
    strategy: PrimaryUpdateStrategy,
) -> (String, Writer) {
    let mut s = spec(3);
    s.replication.primary_update_strategy = strategy;
    let (_, writer) = three_converged_with_a_writer(env, s).await;
    let old = kill_primary_server(env).await;
    let moved = wait_failed_over(env, &old, "failed over")
        .await
        .status
        .unwrap();
    env.wait_running("cache").await;
    wait_converged(env, "cache", 3).await;
    let mut primary = moved.current_primary.unwrap();
    if primary == "cache-2" {
        // The most advanced replica was the highest ordinal (replica offsets race under load): move the
        // primary to the middle with a requested switchover.
        env.instances()
            .patch(
                "cache",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"redis-operator.github.io/switchover-to": "cache-1"}}})),
            )
            .await
            .unwrap();
        env.wait_status("cache", "switched over to cache-1", |s| {
            s.current_primary.as_deref() == Some("cache-1")
        })
        .await;
        env.wait_running("cache").await;
        wait_converged(env, "cache", 3).await;
        primary = "cache-1".to_string();
    }
    assert_ne!(
        primary, "cache-2",
        "the primary is not on the highest ordinal"
    );
    wait_writes(&writer, 20).await;
    (primary, writer)
}

/// Samples pod uids until `done` holds for the instance's status, and returns the order in which pods were
/// replaced (first change of each uid) with the primary at the time of each replacement.
async fn replacements(
    env: &TestEnv,
    before: &BTreeMap<String, String>,
    done: impl Fn(&RedisInstanceStatus) -> bool,
) -> Vec<(String, Option<String>)> {
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut order: Vec<(String, Option<String>)> = Vec::new();
    loop {
        let status = env
            .instances()
            .get("cache")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        for (pod, uid) in before {
            let gone = env.pods().get_opt(pod).await.unwrap().is_none_or(|p| {
                p.uid().as_deref() != Some(uid.as_str()) || p.metadata.deletion_timestamp.is_some()
            });
            if gone && !order.iter().any(|(p, _)| p == pod) {
                order.push((pod.clone(), status.current_primary.clone()));
            }
        }
        if order.len() == before.len() && done(&status) {
            return order;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout did not finish: replaced {order:?}, status {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the instance is Running with every pod at the StatefulSet's update revision.
fn rolled(status: &RedisInstanceStatus) -> bool {
    status.status == Phase::Running && status.updated_replicas == 3 && converged(status, 3)
}

/// How many distinct primaries the statuses went through, in order.
fn primaries(statuses: &[RedisInstanceStatus]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for p in statuses.iter().filter_map(|s| s.current_primary.clone()) {
        if seen.last() != Some(&p) {
            seen.push(p);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_change_replaces_the_replicas_then_switches_over_once_then_the_old_primary() {
    let env = TestEnv::new("rollout").await;
    let (primary, writer) =
        three_pods_primary_in_the_middle(&env, PrimaryUpdateStrategy::Unsupervised).await;
    let log = StatusLog::start(env.instances(), "cache");
    let before = uids(&env).await;
    let generation = env
        .patch_spec(
            "cache",
            serde_json::json!({"image": crate::harness::rolled_image("rollout")}),
        )
        .await;
    let order = replacements(&env, &before, rolled).await;
    env.wait_status("cache", "rolled out", move |s| {
        s.observed_generation >= Some(generation) && rolled(s)
    })
    .await;
    wait_converged(&env, "cache", 3).await;

    // Replicas first, one at a time, while the old primary served; the old primary last, after the switchover.
    let (last, primary_then) = order.last().unwrap();
    assert_eq!(
        last, &primary,
        "the old primary is replaced last: {order:?}"
    );
    assert_ne!(primary_then.as_deref(), Some(primary.as_str()), "{order:?}");
    for (pod, primary_then) in &order[..2] {
        assert_ne!(pod, &primary);
        assert_eq!(primary_then.as_deref(), Some(primary.as_str()), "{order:?}");
    }
    let statuses: Vec<RedisInstanceStatus> = log
        .entries()
        .into_iter()
        .filter(|s| s.observed_generation >= Some(generation))
        .collect();
    assert_eq!(
        primaries(&statuses).len(),
        2,
        "exactly one switchover: {:?}",
        primaries(&statuses)
    );
    let reasons: Vec<&str> = statuses.iter().map(|s| s.reason.as_str()).collect();
    for step in ["UpdatingReplicas", "Switchover"] {
        assert!(reasons.contains(&step), "status said {step}: {reasons:?}");
    }
    // The replacements are Events (the old primary's step can be too short-lived to be seen in status).
    crate::wait_event(&env, "UpdatingReplicas").await;
    let note = crate::wait_event(&env, "UpdatingOldPrimary").await;
    assert!(note.contains(&format!("old primary {primary}")), "{note}");
    let after = env.instances().get("cache").await.unwrap().status.unwrap();
    assert_eq!(
        after.switchover.as_ref().map(|s| s.reason.as_str()),
        Some("Rollout")
    );
    assert_eq!(
        after.switchover.as_ref().map(|s| s.from.as_str()),
        Some(primary.as_str())
    );
    for pod in env.pods_of("cache").await {
        let image = pod.spec.unwrap().containers[0].image.clone();
        assert_eq!(image, Some(crate::harness::rolled_image("rollout")));
    }
    assert_one_master(&env).await;
    wait_writes(&writer, 20).await;
    let gap = finish_and_check(&env, writer, "primary-last rolling update").await;
    eprintln!("primary-last rolling update: longest write gap {gap:?}");
}

/// Supervised: the replicas are replaced, then the rollout waits with the primary outdated, saying so; the
/// switchover command finishes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_supervised_rollout_waits_for_the_switchover_command() {
    let env = TestEnv::new("supervised").await;
    let (primary, writer) =
        three_pods_primary_in_the_middle(&env, PrimaryUpdateStrategy::Supervised).await;
    env.patch_spec("cache", serde_json::json!({"image": "redis:7-supervised"}))
        .await;
    let waiting = env
        .wait_status("cache", "waiting for the switchover", |s| {
            s.reason == "AwaitingSwitchover"
        })
        .await
        .status
        .unwrap();
    assert_eq!(waiting.status, Phase::Updating);
    assert!(
        waiting.last_condition_message.contains("Supervised"),
        "{}",
        waiting.last_condition_message
    );
    assert_eq!(waiting.current_primary.as_deref(), Some(primary.as_str()));
    assert_eq!(waiting.updated_replicas, 2);
    // It stays there.
    tokio::time::timeout(
        Duration::from_secs(5),
        env.wait_status("cache", "moved on", |s| s.reason != "AwaitingSwitchover"),
    )
    .await
    .expect_err("a supervised rollout does not switch over by itself");

    let target = labelled(&env, "cache", "replica").await[0].name_any();
    run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_redis-operator"))
            .env("KUBECONFIG", &env.info.kubeconfig)
            .args(["switchover", "cache", "--to", &target, "-n", &env.ns]),
        None,
    );
    let done = env
        .wait_status("cache", "rolled out", |s| {
            rolled(s) && s.current_primary.as_deref() != Some(primary.as_str())
        })
        .await;
    assert_eq!(
        done.status.as_ref().unwrap().current_primary.as_deref(),
        Some(target.as_str())
    );
    assert!(
        !done
            .annotations()
            .contains_key("redis-operator.github.io/switchover-to"),
        "the request is removed once done"
    );
    // A request for a pod that does not exist is refused and removed.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_redis-operator"))
        .env("KUBECONFIG", &env.info.kubeconfig)
        .args(["switchover", "cache", "--to", "cache-9", "-n", &env.ns])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a pod of cache"));
    wait_converged(&env, "cache", 3).await;
    finish_and_check(&env, writer, "supervised rolling update").await;
}

/// A requested switchover whose target cannot catch up is given up before the primary's writes are paused: the
/// target (its replication stream held back by a write pause of its own, link up, within the lag a switchover
/// accepts) is never seen receiving the primary's stream, so each handover gives up with nothing changed; at
/// the deadline the switchover is abandoned: the primary stays, nothing is lost, an Event says so, and it is
/// retried after the back-off once the replica catches up.
#[tokio::test(flavor = "multi_thread")]
async fn a_switchover_that_cannot_complete_is_abandoned_reported_and_retried() {
    let env = TestEnv::new("abandon").await;
    let (first, writer) = three_converged_with_a_writer(&env, spec(3)).await;
    let primary = first.current_primary.unwrap();
    let target = labelled(&env, "cache", "replica").await[0].clone();
    let ip = pod_ip(&target);
    assert!(redis_command(&ip, &["CLIENT", "PAUSE", "120000", "WRITE"])
        .await
        .contains("OK"));
    env.instances()
        .patch(
            "cache",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"redis-operator.github.io/switchover-to": target.name_any()}}})),
        )
        .await
        .unwrap();
    let abandoned = env
        .wait_status("cache", "the switchover abandoned", |s| {
            s.switchover_retry_at.is_some()
        })
        .await
        .status
        .unwrap();
    assert_eq!(abandoned.current_primary.as_deref(), Some(primary.as_str()));
    assert_eq!(abandoned.target_primary.as_deref(), Some(primary.as_str()));
    crate::wait_event(&env, "SwitchoverAbandoned").await;
    wait_converged(&env, "cache", 3).await;
    assert_one_master(&env).await;
    wait_writes(&writer, 20).await;

    // Caught up again: the request, still there, is retried after the back-off and completes.
    assert!(redis_command(&ip, &["CLIENT", "UNPAUSE"])
        .await
        .contains("OK"));
    let done = env
        .wait_status("cache", "switched over on retry", |s| {
            s.current_primary.as_deref() == Some(target.name_any().as_str()) && converged(s, 3)
        })
        .await;
    assert!(!done
        .annotations()
        .contains_key("redis-operator.github.io/switchover-to"));
    wait_converged(&env, "cache", 3).await;
    let gap = finish_and_check(&env, writer, "abandoned and retried switchover").await;
    // No handover held the primary's writes while the target did not receive its stream (before the pre-pause
    // check, each held them for its whole wait, 5 s); no write was lost and the primary stayed.
    assert!(
        gap < Duration::from_secs(3),
        "a handover paused writes while its target received nothing: longest gap {gap:?}"
    );
}

/// Cordoning the primary's node (the local cluster's only node) switches over once, and the disruption
/// budgets keep the primary and let one replica go at a time.
#[tokio::test(flavor = "multi_thread")]
async fn a_cordoned_primary_node_switches_over_and_budgets_keep_the_primary() {
    let env = TestEnv::with_operator_args("cordon", &["--watch-nodes"]).await;
    let (first, writer) = three_converged_with_a_writer(&env, spec(3)).await;
    let primary = first.current_primary.unwrap();

    let budgets: Api<PodDisruptionBudget> = Api::namespaced(env.client.clone(), &env.ns);
    let keep_primary = budgets.get("cache-primary").await.unwrap();
    let spec = keep_primary.spec.unwrap();
    assert_eq!(
        spec.min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    let labels = spec.selector.unwrap().match_labels.unwrap();
    assert_eq!(labels["redis-operator.github.io/role"], "primary");
    assert_eq!(labels["app.kubernetes.io/instance"], "cache");
    let replicas = budgets.get("cache-replicas").await.unwrap().spec.unwrap();
    assert_eq!(
        replicas.selector.unwrap().match_labels.unwrap()["redis-operator.github.io/role"],
        "replica"
    );
    // The budget's own controller counts the primary: no disruption allowed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = budgets
            .get("cache-primary")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if status.current_healthy == 1 && status.disruptions_allowed == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the primary's budget never counted it: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let node = env
        .pods()
        .get(&primary)
        .await
        .unwrap()
        .spec
        .unwrap()
        .node_name
        .unwrap();
    let nodes: Api<Node> = Api::all(env.client.clone());
    let cordon = |on: bool| {
        let nodes = nodes.clone();
        let node = node.clone();
        async move {
            nodes
                .patch(
                    &node,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"spec": {"unschedulable": on}})),
                )
                .await
                .unwrap();
        }
    };
    cordon(true).await;
    let moved = tokio::time::timeout(
        Duration::from_secs(90),
        env.wait_status("cache", "switched over off the cordoned node", |s| {
            s.current_primary.as_deref().is_some_and(|p| p != primary) && converged(s, 3)
        }),
    )
    .await;
    cordon(false).await;
    let moved = moved
        .expect("a switchover off the cordoned node")
        .status
        .unwrap();
    assert_eq!(
        moved.switchover.as_ref().map(|s| s.reason.as_str()),
        Some("NodeCordoned")
    );
    crate::wait_event(&env, "SwitchoverStarted").await;
    wait_converged(&env, "cache", 3).await;
    assert_one_master(&env).await;
    finish_and_check(&env, writer, "switchover off a cordoned node").await;
}

/// The operator killed (SIGKILL) while it replaces replicas and while it switches over: a new process resumes
/// from status and pods, and the rollout finishes with exactly one primary and no confirmed write lost.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_killed_mid_rollout_resumes_to_exactly_one_primary() {
    let mut env = TestEnv::new("killroll").await;
    let (primary, writer) =
        three_pods_primary_in_the_middle(&env, PrimaryUpdateStrategy::Unsupervised).await;
    env.patch_spec("cache", serde_json::json!({"image": "redis:7-killed"}))
        .await;
    env.wait_status("cache", "replacing replicas", |s| {
        s.reason == "UpdatingReplicas"
    })
    .await;
    env.operator.kill();
    env.operator = Operator::start(env.info, &env.ns, &[]);
    env.wait_status("cache", "switching over", |s| {
        s.target_primary.is_some() && s.target_primary != s.current_primary
    })
    .await;
    env.operator.kill();
    env.operator = Operator::start(env.info, &env.ns, &[]);
    env.wait_status("cache", "rolled out", |s| {
        rolled(s) && s.current_primary.as_deref() != Some(primary.as_str())
    })
    .await;
    wait_converged(&env, "cache", 3).await;
    assert_one_master(&env).await;
    for pod in env.pods_of("cache").await {
        assert_eq!(
            pod.spec.unwrap().containers[0].image.as_deref(),
            Some("redis:7-killed")
        );
    }
    finish_and_check(&env, writer, "operator killed mid-rollout").await;
}
