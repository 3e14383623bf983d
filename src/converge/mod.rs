//! Step 7 of the pipeline, **converge the servers**: what is sent to the Redis servers themselves. Each pass
//! observes every pod, decides with a pure function and acts only on a difference, while holding the leader
//! Lease: the replication topology (failover, switchover, primary-last rollouts), switchover requests, and
//! configuration set at runtime.

pub mod auth;
pub mod live_config;
pub mod switchover;
pub mod tls;
pub mod topology;

use std::future::Future;
use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// Runs `pass` on every pod that is not being deleted, all at once, and returns each pod's name with what its
/// pass returned, in the order of `pods`. Every pass talks to one server with the client's bounded timeouts, so
/// a slow or unreachable server delays only its own answer. The live configuration, password and certificate
/// passes share this.
pub async fn each_live_pod<'a, T, Pass, Fut>(pods: &'a [Arc<Pod>], pass: Pass) -> Vec<(String, T)>
where
    Pass: Fn(&'a Pod) -> Fut,
    Fut: Future<Output = T>,
{
    let passes = pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .map(|pod| {
            let done = pass(pod);
            async move { (pod.name_any(), done.await) }
        });
    join_all(passes).await
}
