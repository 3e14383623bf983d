//! Tests that stop a part of the node every other test depends on (the kubelet). `scripts/test.sh` runs them
//! alone, after the rest (`exclusive::`, one thread). They need the local cluster's real node
//! (`DEVCLUSTER_NODE=real`) and are ignored otherwise.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::harness::*;
use crate::replication::{
    assert_one_master, finish_and_check, kill_primary_server, three_converged_with_a_writer,
    wait_failed_over, wait_writes,
};

/// The node's kubelet, stopped (`cluster.sh stop kubelet`): its containers run on, nothing reports on them.
/// Dropping it starts the kubelet again (`cluster.sh up`), also when the test fails half way.
struct StoppedKubelet;

impl StoppedKubelet {
    fn stop() -> StoppedKubelet {
        run_ok(cluster_sh().args(["stop", "kubelet"]), None);
        StoppedKubelet
    }
}

impl Drop for StoppedKubelet {
    fn drop(&mut self) {
        let started = run_captured(cluster_sh().arg("up"), None);
        if !started.status.success() {
            eprintln!(
                "starting the kubelet again failed: {}",
                String::from_utf8_lossy(&started.stderr)
            );
        }
    }
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Polls `check` every 500 ms until it holds, for at most `limit`.
async fn poll_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the (only) node's `Ready` condition is `ready`: after the kubelet stopped, the controller
/// manager marks the node not ready once its grace period (`--node-monitor-grace-period`) passed.
async fn wait_node(env: &TestEnv, ready: bool) {
    let nodes: Api<Node> = Api::all(env.client.clone());
    poll_until(
        &format!("the node to be ready: {ready}"),
        Duration::from_secs(180),
        || async {
            nodes.list(&ListParams::default()).await.is_ok_and(|l| {
                !l.items.is_empty() && l.items.iter().all(|n| node_ready(n) == ready)
            })
        },
    )
    .await;
}

/// The kubelet stops for longer than the failover delay, and the node goes NotReady: every pod on it turns
/// not ready while the servers serve on. The operator keeps the primary (a failover could only move it to a
/// pod no readier; before this was decided, it moved the primary round and round) and writes by pod IP go on
/// confirmed. Then the primary's server dies while no kubelet can restart it: the operator fails over on its
/// own. Once the kubelet is back, it restarts the killed container, which rejoins as a replica; no confirmed
/// write is lost and there is one master.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the real node: DEVCLUSTER_NODE=real"]
async fn with_the_kubelet_stopped_a_serving_primary_stays_and_a_dead_one_is_failed_over() {
    assert!(real_node(), "needs the real node: DEVCLUSTER_NODE=real");
    let env = TestEnv::new("nokubelet").await;
    let (first, writer) = three_converged_with_a_writer(&env, spec(3)).await;
    let primary = first.current_primary.clone().expect("a primary");

    let kubelet = StoppedKubelet::stop();
    wait_node(&env, false).await;
    poll_until(
        "every pod of the node to be marked not ready",
        Duration::from_secs(60),
        || async { env.pods_of("cache").await.iter().all(|p| !pod_ready(p)) },
    )
    .await;
    // The operator has seen it (the phase counts no ready pod) and, writes later, still keeps the primary:
    // 20 confirmed writes take longer than the failover delay of 2 s.
    env.wait_status("cache", "reporting no ready pod", |s| {
        s.last_condition_message.contains("Ready: 0/3")
    })
    .await;
    wait_writes(&writer, 20).await;
    wait_writes(&writer, 20).await;
    let status = env.instances().get("cache").await.unwrap().status.unwrap();
    assert_eq!(
        status.current_primary.as_deref(),
        Some(primary.as_str()),
        "no failover while every pod is not ready and the primary serves: {status:#?}"
    );
    assert!(
        status.target_primary.as_deref() == Some(primary.as_str()),
        "no failover started: {status:#?}"
    );
    assert_one_master(&env).await;

    // The primary's server dies; no kubelet restarts it.
    let old = kill_primary_server(&env).await;
    let old_for_wait = old.clone();
    env.wait_status("cache", "failed over without the kubelet", move |s| {
        s.current_primary
            .as_ref()
            .is_some_and(|p| *p != old_for_wait)
            && s.target_primary == s.current_primary
    })
    .await;
    wait_writes(&writer, 20).await;

    drop(kubelet);
    wait_node(&env, true).await;
    wait_failed_over(
        &env,
        &old,
        "the old primary rejoined once the kubelet restarted it",
    )
    .await;
    crate::replication::wait_converged(&env, "cache", 3).await;
    assert!(
        crate::replication::labelled(&env, "cache", "replica")
            .await
            .iter()
            .any(|p| p.name_any() == old),
        "{old} rejoined as a replica"
    );
    assert_one_master(&env).await;
    finish_and_check(&env, writer, "the kubelet stopped").await;
}
