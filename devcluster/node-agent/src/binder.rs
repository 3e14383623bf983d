//! Stands in for the scheduler: binds every unscheduled pod to this node.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use crate::error::is_status;
use crate::level;

/// Bindings in flight at once. One at a time, a busy API server bound ~30 pods a minute: 1,000 new pods waited
/// for the scheduler's stand-in for half an hour (the benchmark's N=1000).
const BINDS_IN_FLIGHT: usize = 16;

/// Binds pending pods (empty `spec.nodeName`) to `node_name` until the task is dropped.
pub async fn run(client: Client, node_name: String) {
    let pods: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields("spec.nodeName=");
    let slots = Arc::new(tokio::sync::Semaphore::new(BINDS_IN_FLIGHT));
    // Pods with a binding queued or in flight. The watch loop never waits for a slot: when it did, a thousand
    // pending pods held it while bound pods' removals piled up behind it, and the periodic pass kept binding pods
    // bound long before (409s, ~1 new binding in 10 s; N = 1000 benchmark, 2026-12-07).
    let queued: Arc<Mutex<HashSet<String>>> = Arc::default();
    level::run(pods, config, Duration::from_secs(5), |pod| {
        let (client, node_name) = (client.clone(), node_name.clone());
        let (slots, queued) = (slots.clone(), queued.clone());
        async move {
            let Some(uid) = pod.uid() else {
                return;
            };
            if !lock(&queued).insert(uid.clone()) {
                return;
            }
            tokio::spawn(async move {
                if let Ok(_slot) = slots.acquire_owned().await {
                    bind(client, node_name, pod).await;
                }
                lock(&queued).remove(&uid);
            });
        }
    })
    .await;
}

fn lock(queued: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    queued.lock().unwrap_or_else(|e| e.into_inner())
}

async fn bind(client: Client, node_name: String, pod: Arc<Pod>) {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    if scheduled || pod.metadata.deletion_timestamp.is_some() {
        return;
    }
    let (Some(namespace), name) = (pod.namespace(), pod.name_any()) else {
        return;
    };
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Node".to_string()),
            name: Some(node_name),
            ..ObjectReference::default()
        },
    };
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    match pods
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => info!(%namespace, pod = %name, "bound pod"),
        // Already bound or already gone: both settle themselves.
        Err(e) if is_status(&e, 409) || is_status(&e, 404) => {}
        Err(e) => warn!(%namespace, pod = %name, error = %e, "binding failed"),
    }
}
