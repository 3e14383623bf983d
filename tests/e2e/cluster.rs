//! The local cluster behaves like a node of a current control plane: the node agent renews its node Lease, so
//! the node lifecycle controller keeps the node Ready and never taints it or evicts its pods.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn node_lease_is_renewed_and_the_node_stays_ready_and_untainted() {
    let info = cluster();
    if std::env::var_os("REDIS_OPERATOR_E2E_KUBECONFIG").is_some() {
        // A real cluster's nodes are its kubelets' business.
        return;
    }
    let client = admin_client(info).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes
        .list(&Default::default())
        .await
        .expect("nodes list")
        .items
        .into_iter()
        .find(|n| {
            // The real node's kubelet renews its Lease as the agent does for its node.
            real_node()
                || n.metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key("node.devcluster.local/agent"))
        })
        .expect("the local cluster's node");
    let name = node.metadata.name.clone().expect("node name");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let renew_time = |lease: Lease| lease.spec.and_then(|s| s.renew_time).map(|t| t.0);
    // A kubelet creates its node's Lease a moment after registering the node: wait for it.
    let lease = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(lease) = leases
                .get_opt(&name)
                .await
                .expect("the node Lease is readable")
            {
                return lease;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("the node Lease exists");
    let first = renew_time(lease);
    assert!(first.is_some(), "the node Lease has a renewTime");
    let renewed = tokio::time::timeout(WAIT, async {
        loop {
            let now = renew_time(leases.get(&name).await.expect("the node Lease"));
            if now > first {
                return now;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("the node Lease is renewed");
    assert!(renewed > first);

    let node = nodes.get(&name).await.expect("node");
    let ready = node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status);
    assert_eq!(ready.as_deref(), Some("True"));
    let taints: Vec<String> = node
        .spec
        .and_then(|s| s.taints)
        .unwrap_or_default()
        .into_iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    assert!(taints.is_empty(), "the node is tainted: {taints:?}");
}
