//! Pure builder of an instance's NetworkPolicy `NAME` (`spec.networkPolicy`): who may reach its pods.
//!
//! It selects the instance's pods (the StatefulSet's selector labels) and limits ingress only (egress stays
//! open: replication, DNS). Port 6379 (the `redis` port, with or without TLS) is open to the `clients` peers
//! (default: every pod of the instance's namespace, which includes the instance's own pods), to the instance's
//! own pods when `clients` names others (replication), and to the operator's pods (by the namespace the operator
//! runs in, `POD_NAMESPACE`, and its pod label `app.kubernetes.io/name: redis-operator`). An operator that runs
//! outside the cluster has no namespace and no peer: it reaches the pods as their node does, which the common
//! enforcers (kube-router, Calico, Cilium) allow. The exporter's port 9121 is open only to the `metrics` peers,
//! and only while the exporter runs; no peer, no rule: nobody scrapes it.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::api::RedisInstance;
use crate::desired::exporter::METRICS_PORT;
use crate::desired::metadata::{metadata, selector_labels};
use crate::desired::redis_conf::REDIS_PORT;
use crate::names::{network_policy_name, NAME_LABEL, OPERATOR_NAME};

/// The label every namespace carries with its own name (set by the API server).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The NetworkPolicy of `ri`, or `None` when `spec.networkPolicy.enabled` is false. `operator_namespace` is the
/// namespace the operator's pods run in (`POD_NAMESPACE`), `None` when it runs outside the cluster.
pub fn network_policy(
    ri: &RedisInstance,
    operator_namespace: Option<&str>,
) -> Option<NetworkPolicy> {
    let settings = &ri.spec.network_policy;
    if !settings.enabled {
        return None;
    }
    let name = ri.name_any();
    let owner = ri
        .controller_owner_ref(&())
        .expect("instances read from the API have a name and uid");
    let own_pods = || LabelSelector {
        match_labels: Some(selector_labels(&name)),
        ..Default::default()
    };
    let selecting = |labels: BTreeMap<String, String>| {
        Some(LabelSelector {
            match_labels: Some(labels),
            ..Default::default()
        })
    };
    let rule = |from: Vec<NetworkPolicyPeer>, port: i32| NetworkPolicyIngressRule {
        from: Some(from),
        ports: Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(port)),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    };

    let clients = if settings.clients.is_empty() {
        // Every pod of the namespace (the instance's own included).
        vec![NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..Default::default()
        }]
    } else {
        // Replication: the instance's own pods reach each other whoever the clients are.
        let mut peers = settings.clients.clone();
        peers.push(NetworkPolicyPeer {
            pod_selector: Some(own_pods()),
            ..Default::default()
        });
        peers
    };
    let mut ingress = vec![rule(clients, REDIS_PORT)];
    if let Some(namespace) = operator_namespace.filter(|ns| !ns.is_empty()) {
        ingress.push(rule(
            vec![NetworkPolicyPeer {
                namespace_selector: selecting(BTreeMap::from([(
                    NAMESPACE_NAME_LABEL.to_string(),
                    namespace.to_string(),
                )])),
                pod_selector: selecting(BTreeMap::from([(
                    NAME_LABEL.to_string(),
                    OPERATOR_NAME.to_string(),
                )])),
                ..Default::default()
            }],
            REDIS_PORT,
        ));
    }
    if ri.spec.monitoring.exporter.enabled && !settings.metrics.is_empty() {
        ingress.push(rule(settings.metrics.clone(), METRICS_PORT));
    }
    Some(NetworkPolicy {
        metadata: metadata(ri, network_policy_name(&name), &owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(own_pods()),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            ..Default::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::desired::children::tests::instance;

    fn peer(value: serde_json::Value) -> NetworkPolicyPeer {
        serde_json::from_value(value).unwrap()
    }

    fn spec_of(policy: &NetworkPolicy) -> serde_json::Value {
        serde_json::to_value(policy.spec.as_ref().unwrap()).unwrap()
    }

    fn own_pods() -> serde_json::Value {
        json!({"matchLabels": {
            "app.kubernetes.io/instance": "cache",
            "app.kubernetes.io/name": "redis"
        }})
    }

    fn operator_rule(namespace: &str) -> serde_json::Value {
        json!({
            "from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "redis-operator"}}
            }],
            "ports": [{"port": 6379, "protocol": "TCP"}]
        })
    }

    #[test]
    fn by_default_the_namespace_and_the_operator_reach_redis_and_nobody_the_exporter() {
        let mut ri = instance("cache");
        ri.spec.monitoring.exporter.enabled = true;
        let policy = network_policy(&ri, Some("redis-operator")).unwrap();
        assert_eq!(policy.name_any(), "cache");
        assert_eq!(
            policy.owner_references(),
            [ri.controller_owner_ref(&()).unwrap()]
        );
        assert_eq!(
            policy.labels()["app.kubernetes.io/managed-by"],
            "redis-operator"
        );
        assert_eq!(
            spec_of(&policy),
            json!({
                "podSelector": own_pods(),
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"from": [{"podSelector": {}}], "ports": [{"port": 6379, "protocol": "TCP"}]},
                    operator_rule("redis-operator")
                ]
            })
        );
    }

    #[test]
    fn the_policy_selects_the_statefulsets_pods() {
        let ri = instance("cache");
        let policy = network_policy(&ri, None).unwrap();
        let desired = crate::desired::children::build(&ri);
        assert_eq!(
            policy.spec.unwrap().pod_selector,
            desired.statefulset.spec.unwrap().selector.into()
        );
    }

    #[test]
    fn named_clients_replace_the_namespace_and_the_own_pods_keep_replicating() {
        let mut ri = instance("cache");
        let app = peer(json!({"podSelector": {"matchLabels": {"app": "web"}}}));
        let other_ns = peer(json!({"namespaceSelector": {"matchLabels": {"team": "a"}}}));
        ri.spec.network_policy.clients = vec![app, other_ns];
        let spec = spec_of(&network_policy(&ri, Some("ops")).unwrap());
        assert_eq!(
            spec["ingress"][0],
            json!({
                "from": [
                    {"podSelector": {"matchLabels": {"app": "web"}}},
                    {"namespaceSelector": {"matchLabels": {"team": "a"}}},
                    {"podSelector": own_pods()}
                ],
                "ports": [{"port": 6379, "protocol": "TCP"}]
            })
        );
        assert_eq!(spec["ingress"][1], operator_rule("ops"));
        assert_eq!(spec["ingress"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn metrics_peers_reach_the_exporter_only_while_it_runs() {
        let mut ri = instance("cache");
        let prometheus = json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
        });
        ri.spec.network_policy.metrics = vec![peer(prometheus.clone())];
        ri.spec.monitoring.exporter.enabled = true;
        let spec = spec_of(&network_policy(&ri, Some("redis-operator")).unwrap());
        assert_eq!(
            spec["ingress"][2],
            json!({"from": [prometheus], "ports": [{"port": 9121, "protocol": "TCP"}]})
        );

        ri.spec.monitoring.exporter.enabled = false;
        let spec = spec_of(&network_policy(&ri, Some("redis-operator")).unwrap());
        let ports: Vec<_> = spec["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .map(|rule| rule["ports"][0]["port"].clone())
            .collect();
        assert_eq!(ports, [json!(6379), json!(6379)]);
    }

    #[test]
    fn an_operator_outside_the_cluster_gets_no_peer() {
        let ri = instance("cache");
        for namespace in [None, Some("")] {
            let spec = spec_of(&network_policy(&ri, namespace).unwrap());
            assert_eq!(
                spec["ingress"],
                json!([{"from": [{"podSelector": {}}], "ports": [{"port": 6379, "protocol": "TCP"}]}])
            );
        }
    }

    #[test]
    fn turned_off_there_is_no_policy() {
        let mut ri = instance("cache");
        ri.spec.network_policy.enabled = false;
        assert!(network_policy(&ri, Some("redis-operator")).is_none());
    }
}
