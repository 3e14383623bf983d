//! The Node object: registration and the status heartbeat that keeps the node lifecycle controller content.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tracing::{info, warn};

use crate::error::{is_status, Result};

/// How often the node status is refreshed; the controller-manager's grace period is 40 s.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// Creates the Node if absent and writes its full status once.
pub async fn register(client: &Client, node_name: &str) -> Result<()> {
    let version = client.apiserver_version().await?;
    let _ = SERVER_VERSION.set(version.git_version);
    let nodes: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(node_name.to_string()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), node_name.to_string()),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
                ("kubernetes.io/arch".to_string(), "amd64".to_string()),
                (
                    "node.devcluster.local/agent".to_string(),
                    "true".to_string(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => info!(node = node_name, "registered node"),
        Err(e) if is_status(&e, 409) => info!(node = node_name, "node already registered"),
        Err(e) => return Err(e.into()),
    }
    let status = json!({ "status": full_status(node_name) });
    nodes
        .patch_status(node_name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// Patches the node status and renews the node's Lease every [`HEARTBEAT_INTERVAL`] until the task is dropped.
pub async fn heartbeat(client: Client, node_name: String) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let mut ticker = tokio::time::interval(HEARTBEAT_INTERVAL);
    loop {
        ticker.tick().await;
        // The node lifecycle controller of current releases reads the Lease as the kubelet's heartbeat.
        if let Err(e) = renew_lease(&nodes, &leases, &node_name).await {
            warn!(error = %e, "node lease renewal failed");
        }
        let status = json!({ "status": full_status(&node_name) });
        if let Err(e) = nodes
            .patch_status(&node_name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            warn!(error = %e, "node heartbeat failed");
            if is_status(&e, 404) {
                if let Err(e) = register(&client, &node_name).await {
                    warn!(error = %e, "re-registering the node failed");
                }
            }
        }
    }
}

/// Namespace of the nodes' heartbeat Leases.
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Lease duration the kubelet uses by default.
const NODE_LEASE_SECONDS: i32 = 40;

/// Renews (creating it when absent) the node's Lease `kube-node-lease/<node>`, owned by the Node as the
/// kubelet's is, so it goes away with the Node.
async fn renew_lease(nodes: &Api<Node>, leases: &Api<Lease>, node_name: &str) -> Result<()> {
    let now = MicroTime(Timestamp::now());
    let renewal = json!({ "spec": { "renewTime": now } });
    match leases
        .patch(node_name, &PatchParams::default(), &Patch::Merge(&renewal))
        .await
    {
        Ok(_) => return Ok(()),
        Err(e) if is_status(&e, 404) => {}
        Err(e) => return Err(e.into()),
    }
    let node = nodes.get(node_name).await?;
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(node_name.to_string()),
            namespace: Some(NODE_LEASE_NAMESPACE.to_string()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_string(),
                kind: "Node".to_string(),
                name: node_name.to_string(),
                uid: node.metadata.uid.unwrap_or_default(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node_name.to_string()),
            lease_duration_seconds: Some(NODE_LEASE_SECONDS),
            renew_time: Some(now),
            ..LeaseSpec::default()
        }),
    };
    match leases.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 409) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The node status as the kubelet would report it, with fresh heartbeat times.
fn full_status(node_name: &str) -> NodeStatus {
    let now = Time(Timestamp::now());
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(available_cpus().to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", total_memory_kib())),
        ),
        ("pods".to_string(), Quantity("250".to_string())),
        (
            "ephemeral-storage".to_string(),
            Quantity("100Gi".to_string()),
        ),
    ]);
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(now.clone()),
        // The condition never changes, so this only moves when the agent restarts.
        last_transition_time: Some(agent_start_time()),
    };
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "devcluster agent",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "devcluster agent",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "devcluster agent",
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "devcluster node agent is posting ready status",
            ),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".to_string(),
                address: "127.0.0.1".to_string(),
            },
            NodeAddress {
                type_: "Hostname".to_string(),
                address: node_name.to_string(),
            },
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".to_string(),
            operating_system: "linux".to_string(),
            os_image: "devcluster loopback node".to_string(),
            kernel_version: kernel_version(),
            container_runtime_version: "devcluster-process://0.1.0".to_string(),
            kubelet_version: server_version(),
            machine_id: node_name.to_string(),
            system_uuid: node_name.to_string(),
            boot_id: agent_start_time().0.to_string(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

/// The API server's version, reported as the kubelet's (a node never runs ahead of its control plane).
static SERVER_VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn server_version() -> String {
    SERVER_VERSION.get().cloned().unwrap_or_default()
}

fn agent_start_time() -> Time {
    static START: std::sync::OnceLock<Timestamp> = std::sync::OnceLock::new();
    Time(*START.get_or_init(Timestamp::now))
}

fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn total_memory_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(8 * 1024 * 1024)
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
