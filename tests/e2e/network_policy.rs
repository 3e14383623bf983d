//! The NetworkPolicy `NAME` (issue 19, item 6): created with the expected rules, kept in sync with the spec,
//! re-created when deleted, removed when turned off, and never taken over when someone else's is in its place.
//! And the status warning for a client Service outside the cluster without TLS.
//! Objects only: whether a network plugin enforces it is another test's (on a real node).

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, ResourceExt};
use redis_fsm::{Phase, Reason};
use serde_json::json;

use super::wait_event;
use crate::harness::*;

fn policies(env: &TestEnv) -> Api<NetworkPolicy> {
    Api::namespaced(env.client.clone(), &env.ns)
}

/// Waits until the policy `name` satisfies `condition` (`None`: it does not exist).
async fn wait_policy(
    env: &TestEnv,
    name: &str,
    what: &str,
    condition: impl Fn(Option<&NetworkPolicy>) -> bool,
) -> Option<NetworkPolicy> {
    tokio::time::timeout(WAIT, await_condition(policies(env), name, condition))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for NetworkPolicy {name}: {what}"))
        .expect("watch of NetworkPolicies")
}

fn spec_of(policy: &NetworkPolicy) -> serde_json::Value {
    serde_json::to_value(policy.spec.as_ref().expect("spec")).unwrap()
}

const OPERATOR_NAMESPACE: &str = "redis-operator";

fn redis_port() -> serde_json::Value {
    json!([{"port": 6379, "protocol": "TCP"}])
}

fn operator_rule() -> serde_json::Value {
    json!({
        "from": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": OPERATOR_NAMESPACE}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "redis-operator"}}
        }],
        "ports": redis_port()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_network_policy_is_created_kept_and_removed_when_turned_off() {
    // As in the cluster, where POD_NAMESPACE names the operator's namespace (no Lease there: this cluster has
    // no such namespace).
    let env = TestEnv::with_operator_args(
        "netpol",
        &[
            "--pod-namespace",
            OPERATOR_NAMESPACE,
            "--leader-election=false",
        ],
    )
    .await;
    env.create("cache", spec(2)).await;
    let own_pods = json!({"matchLabels": {
        "app.kubernetes.io/instance": "cache",
        "app.kubernetes.io/name": "redis"
    }});
    let default_spec = json!({
        "podSelector": own_pods,
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": [{"podSelector": {}}], "ports": redis_port()},
            operator_rule()
        ]
    });
    let policy = wait_policy(&env, "cache", "created with the default rules", |p| {
        p.is_some_and(|p| spec_of(p) == default_spec)
    })
    .await
    .unwrap();
    let uid = env.instances().get("cache").await.unwrap().uid();
    assert!(policy
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == uid.as_ref() && o.controller == Some(true)));
    assert_eq!(
        policy.labels().get("app.kubernetes.io/managed-by"),
        Some(&"redis-operator".to_string())
    );
    env.wait_running("cache").await;

    // Named clients replace the namespace; the instance's own pods keep replicating.
    env.patch_spec(
        "cache",
        json!({"networkPolicy": {"clients": [{"podSelector": {"matchLabels": {"app": "web"}}}]}}),
    )
    .await;
    let clients = json!({
        "from": [
            {"podSelector": {"matchLabels": {"app": "web"}}},
            {"podSelector": own_pods}
        ],
        "ports": redis_port()
    });
    wait_policy(&env, "cache", "the named clients", |p| {
        p.is_some_and(|p| spec_of(p)["ingress"] == json!([clients, operator_rule()]))
    })
    .await;

    // Deleted by someone: re-created (the watch of owned NetworkPolicies reconciles the instance).
    let before = policies(&env).get("cache").await.unwrap().uid();
    policies(&env)
        .delete("cache", &DeleteParams::default())
        .await
        .unwrap();
    wait_policy(&env, "cache", "re-created", |p| {
        p.is_some_and(|p| p.uid() != before && spec_of(p)["ingress"][0] == clients)
    })
    .await;

    // Turned off: the operator deletes its policy, and the instance stays Running.
    let generation = env
        .patch_spec("cache", json!({"networkPolicy": {"enabled": false}}))
        .await;
    wait_policy(&env, "cache", "deleted", |p| p.is_none()).await;
    env.wait_status("cache", "Running with the policy off", |s| {
        s.status == Phase::Running && s.observed_generation == Some(generation)
    })
    .await;
    assert!(policies(&env).get_opt("cache").await.unwrap().is_none());

    // And back on: created again.
    env.patch_spec("cache", json!({"networkPolicy": {"enabled": true}}))
        .await;
    wait_policy(&env, "cache", "created again", |p| p.is_some()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_network_policy_someone_else_made_in_names_place_is_refused_and_left_alone() {
    let env = TestEnv::new("foreign-netpol").await;
    let planted: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "other"},
        "spec": {"podSelector": {"matchLabels": {"app": "theirs"}}, "policyTypes": ["Ingress"]}
    }))
    .unwrap();
    let planted = policies(&env)
        .create(&PostParams::default(), &planted)
        .await
        .unwrap();
    env.create("other", spec(1)).await;
    let ri = env
        .wait_status("other", "Failed: the NetworkPolicy is not its own", |s| {
            s.status == Phase::Failed && s.reason == Reason::ChildConflict.as_str()
        })
        .await;
    let message = ri.status.unwrap().last_condition_message;
    assert!(message.contains("NetworkPolicy other"), "{message}");
    let note = wait_event(&env, Reason::ChildConflict.as_str()).await;
    assert!(note.contains("NetworkPolicy other"), "{note}");
    assert!(env.statefulsets().get_opt("other").await.unwrap().is_none());
    let live = policies(&env).get("other").await.unwrap();
    assert_eq!(live.resource_version(), planted.resource_version());
    assert!(live.owner_references().is_empty(), "adopted");

    // Turned off, the instance neither needs nor touches it: it runs, and the foreign policy stays.
    env.patch_spec("other", json!({"networkPolicy": {"enabled": false}}))
        .await;
    env.wait_running("other").await;
    let live = policies(&env).get("other").await.unwrap();
    assert_eq!(live.resource_version(), planted.resource_version());

    // Once the foreign one is gone and the policy is on again, the instance makes its own.
    policies(&env)
        .delete("other", &DeleteParams::default())
        .await
        .unwrap();
    wait_policy(&env, "other", "the foreign one gone", |p| p.is_none()).await;
    env.patch_spec("other", json!({"networkPolicy": {"enabled": true}}))
        .await;
    let uid = env.instances().get("other").await.unwrap().uid();
    wait_policy(&env, "other", "the instance's own", |p| {
        p.is_some_and(|p| {
            p.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref())
        })
    })
    .await;
}

/// A client Service outside the cluster without TLS (issue 19, item 6): the status carries the condition
/// `ExposedWithoutTLS` naming the Services, one Warning Event says so when it starts, and the condition goes
/// once the Services are inside the cluster again.
#[tokio::test(flavor = "multi_thread")]
async fn a_plain_text_service_outside_the_cluster_is_warned_of_in_status_and_an_event() {
    let env = TestEnv::new("exposed").await;
    let mut s = spec(1);
    s.service.type_ = redis_operator::api::ServiceType::NodePort;
    env.create("cache", s).await;
    let exposed = |s: &redis_operator::api::RedisInstanceStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "ExposedWithoutTLS")
            .cloned()
    };
    let ri = env
        .wait_status("cache", "warning of the plain-text NodePort", |s| {
            exposed(s).is_some()
        })
        .await;
    let condition = exposed(ri.status.as_ref().unwrap()).unwrap();
    assert_eq!(condition.status, "True");
    assert!(
        condition
            .message
            .starts_with("cache (NodePort) and cache-replicas (NodePort) reach Redis from outside"),
        "{}",
        condition.message
    );
    assert!(
        condition.message.contains("set spec.tls"),
        "{}",
        condition.message
    );
    let note = wait_event(&env, "ExposedWithoutTLS").await;
    assert_eq!(note, condition.message);
    env.wait_running("cache").await;

    // Only the read-only Service outside.
    env.patch_spec(
        "cache",
        json!({"service": {"type": "ClusterIP", "replicas": {"type": "LoadBalancer"}}}),
    )
    .await;
    env.wait_status("cache", "warning of the read-only Service only", |s| {
        exposed(s).is_some_and(|c| {
            c.message
                .starts_with("cache-replicas (LoadBalancer) reaches")
        })
    })
    .await;
    // Both inside: the condition goes.
    let generation = env
        .patch_spec("cache", json!({"service": {"replicas": null}}))
        .await;
    env.wait_status("cache", "no warning with ClusterIP Services", move |s| {
        s.observed_generation >= Some(generation) && exposed(s).is_none()
    })
    .await;
    // The warning was published once, not on every reconcile of the exposed instance (it stayed exposed
    // through the instance becoming Running and a spec change).
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.client.clone(), &env.ns);
    let warnings = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ExposedWithoutTLS"))
        .map(|e| e.series.map_or(1, |s| s.count))
        .sum::<i32>();
    assert_eq!(warnings, 1, "one ExposedWithoutTLS Event");
}
