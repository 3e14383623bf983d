//! Live configuration: a change of directives Redis sets at runtime reaches every pod without restarting
//! any; a directive that needs a restart still restarts them.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, ResourceExt};
use redis_fsm::Reason;
use redis_operator::events::EventReason;
use serde_json::json;

use super::{expect_update, wait_event};
use crate::harness::*;

/// What identifies one server process: pod name, pod UID and the server's `run_id` (new on every start).
async fn processes(env: &TestEnv, name: &str) -> Vec<(String, String, String)> {
    let mut seen = Vec::new();
    for pod in env.pods_of(name).await {
        let info = redis_command(&pod_ip(&pod), &["INFO", "server"]).await;
        let run_id = info
            .lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .unwrap_or_else(|| panic!("no run_id from {}: {info:?}", pod.name_any()))
            .trim()
            .to_string();
        seen.push((pod.name_any(), pod.uid().unwrap(), run_id));
    }
    seen
}

/// `CONFIG GET directive` on every pod.
async fn config_values(env: &TestEnv, name: &str, directive: &str) -> Vec<(String, String)> {
    let mut values = Vec::new();
    for pod in env.pods_of(name).await {
        let reply = redis_command(&pod_ip(&pod), &["CONFIG", "GET", directive]).await;
        // *2 $len directive $len value
        let value = reply.split("\r\n").nth(4).unwrap_or_default().to_string();
        values.push((pod.name_any(), value));
    }
    values
}

fn all(values: &[(String, String)], want: &str) -> bool {
    values.iter().all(|(_, value)| value == want)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_config_change_reaches_every_pod_without_a_restart_and_a_restart_only_one_restarts()
{
    let env = TestEnv::new("liveconfig").await;
    let mut s = spec(3);
    s.config.insert("maxmemory".into(), "100mb".into());
    s.config
        .insert("maxmemory-policy".into(), "noeviction".into());
    s.config.insert("databases".into(), "16".into());
    let log = env.create("cache", s).await;
    env.wait_running("cache").await;
    let before = processes(&env, "cache").await;
    assert_eq!(before.len(), 3);
    let sts_generation = env
        .statefulsets()
        .get("cache")
        .await
        .unwrap()
        .metadata
        .generation;

    expect_update(
        &env,
        &log,
        "cache",
        json!({"config": {"maxmemory": "200mb", "maxmemory-policy": "allkeys-lru"}}),
        Reason::ConfigAppliedLive.as_str(),
    )
    .await;
    let maxmemory = config_values(&env, "cache", "maxmemory").await;
    assert!(all(&maxmemory, "209715200"), "{maxmemory:?}");
    let policy = config_values(&env, "cache", "maxmemory-policy").await;
    assert!(all(&policy, "allkeys-lru"), "{policy:?}");
    assert_eq!(
        processes(&env, "cache").await,
        before,
        "a live change restarted a pod or a server"
    );
    assert_eq!(
        env.statefulsets()
            .get("cache")
            .await
            .unwrap()
            .metadata
            .generation,
        sts_generation,
        "a live change touched the StatefulSet"
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let file = config_maps.get("cache-config").await.unwrap().data.unwrap()["redis.conf"].clone();
    assert!(
        file.contains("\nmaxmemory 200mb\n") && file.contains("\nmaxmemory-policy allkeys-lru\n"),
        "a restart must keep the live values: {file}"
    );
    let note = wait_event(&env, Reason::ConfigAppliedLive.as_str()).await;
    assert!(note.contains("maxmemory, maxmemory-policy"), "{note}");

    // `databases` cannot change at runtime: every pod restarts and comes back with the new value.
    expect_update(
        &env,
        &log,
        "cache",
        json!({"config": {"databases": "32"}}),
        Reason::StatefulSetRestart.as_str(),
    )
    .await;
    let after = processes(&env, "cache").await;
    for ((pod, uid, run_id), (_, new_uid, new_run_id)) in before.iter().zip(&after) {
        assert!(
            uid != new_uid && run_id != new_run_id,
            "{pod} was not restarted for a restart-only directive"
        );
    }
    let databases = config_values(&env, "cache", "databases").await;
    assert!(all(&databases, "32"), "{databases:?}");
    let maxmemory = config_values(&env, "cache", "maxmemory").await;
    assert!(
        all(&maxmemory, "209715200"),
        "restarted pods read the file: {maxmemory:?}"
    );
    let note = wait_event(&env, EventReason::ConfigNeedsRestart.as_str()).await;
    assert!(
        note.contains("databases cannot be set at runtime"),
        "{note}"
    );
    let status = env.instances().get("cache").await.unwrap().status.unwrap();
    let restart = status
        .history
        .entries()
        .iter()
        .rev()
        .find(|t| t.reason == Reason::StatefulSetRestart.as_str())
        .expect("the restart is in the history");
    assert!(
        restart
            .message
            .ends_with("; databases cannot be set at runtime"),
        "the status says which directive restarted the pods: {}",
        restart.message
    );
}
