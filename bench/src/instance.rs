//! The benchmarked `RedisInstance` on a process-mode cluster, shared by the failover and rolling-update
//! benchmarks: its pods' roles, addresses and server processes, where the writer finds the primary, and when
//! the topology counts as converged.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use redis_operator::api::{RedisInstance, RedisInstanceStatus};

use crate::writer::Target;

/// The role label the operator puts on pods (what the instance's Service selects).
pub const ROLE_LABEL: &str = "redis-operator.github.io/role";
/// The label naming a pod's instance.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Name of the benchmarked instance.
pub const INSTANCE: &str = "cache";
/// Port of every pod's `redis-server`.
pub const REDIS_PORT: u16 = 6379;

/// The pod's role label (empty when it has none).
pub fn role_of(pod: &Pod) -> String {
    pod.labels().get(ROLE_LABEL).cloned().unwrap_or_default()
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone()
}

/// The container id (`process://PID`) of a pod's running server.
pub fn container_id(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    status.state.as_ref()?.running.as_ref()?;
    status.container_id.clone()
}

/// The host process id of a pod's running server: `process://PID` from the node agent; on a real node, the
/// process that is pid 1 of the container (`containerd://ID`), found by the id in its cgroup path.
pub fn process_id(pod: &Pod) -> Result<u32, String> {
    let id =
        container_id(pod).ok_or_else(|| format!("{} has no running container", pod.name_any()))?;
    if let Some(pid) = id.strip_prefix("process://") {
        return pid
            .parse()
            .map_err(|_| format!("{}: container id {id:?}", pod.name_any()));
    }
    let container = id
        .strip_prefix("containerd://")
        .ok_or_else(|| format!("{}: unknown container id {id:?}", pod.name_any()))?;
    let pids = std::fs::read_dir("/proc")
        .map_err(|e| format!("/proc: {e}"))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok());
    for pid in pids {
        let in_container = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|cgroups| cgroups.contains(container));
        let first = || {
            std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("NSpid:"))
                    .and_then(|pids| pids.split_whitespace().last())
                    == Some("1")
            })
        };
        if in_container && first() {
            return Ok(pid);
        }
    }
    Err(format!(
        "{}: no process of container {container}",
        pod.name_any()
    ))
}

/// How the writer reaches the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// The IP of the pod carrying the primary label (what the instance's Service selects).
    PodIp,
    /// The instance's Service (its ClusterIP, through kube-proxy: a real node only).
    Service,
}

static VIA: std::sync::OnceLock<Via> = std::sync::OnceLock::new();

/// Sets how [`primary_target`] reaches the primary, once, before any trial.
pub fn set_via(via: Via) {
    VIA.set(via).ok();
}

/// The status shows one primary and `replicas - 1` in-sync replicas, all labelled, no failover in flight.
fn converged(status: &RedisInstanceStatus, replicas: usize) -> bool {
    let labelled = |label: &str| status.pods.iter().filter(|p| p.label == label).count();
    status.current_primary.is_some()
        && status.target_primary == status.current_primary
        && status.primary_failing_since.is_none()
        && status.pods.len() == replicas
        && labelled("primary") == 1
        && labelled("replica") == replicas - 1
}

/// The writer's target: the pod carrying the primary label (the server the write counts for), reached by its
/// IP or, with [`Via::Service`], through the instance's Service as an application would (kube-proxy then picks
/// the endpoint: the same pod once the EndpointSlice caught up with the label).
pub async fn primary_target(pods: &Api<Pod>) -> Option<Target> {
    let params = ListParams::default().labels(&format!("{ROLE_LABEL}=primary"));
    let list = pods.list(&params).await.ok()?;
    let pod = list.items.first()?;
    // Authentication is on by default: the generated password, as a client would mount it.
    let secrets: Api<Secret> = Api::namespaced(pods.clone().into_client(), pods.namespace()?);
    let password = match secrets.get_opt(&format!("{INSTANCE}-auth")).await.ok()? {
        Some(secret) => Some(String::from_utf8(secret.data?.get("password")?.0.clone()).ok()?),
        None => None,
    };
    let host = match VIA.get().copied().unwrap_or(Via::PodIp) {
        Via::PodIp => pod_ip(pod)?,
        Via::Service => {
            let services: Api<Service> =
                Api::namespaced(pods.clone().into_client(), pods.namespace()?);
            services.get(INSTANCE).await.ok()?.spec?.cluster_ip?
        }
    };
    Some(Target {
        name: pod.name_any(),
        host,
        port: REDIS_PORT,
        password,
    })
}

/// Role labels per pod as last seen on a pod watch, with every change.
#[derive(Debug, Default)]
pub struct RoleLabels {
    /// Current role label per pod name.
    roles: BTreeMap<String, String>,
    /// Every label change: when, pod, from, to.
    pub changes: Vec<(Instant, String, String, String)>,
    /// Times two or more pods were seen carrying the primary label at once.
    pub double_primary: usize,
}

impl RoleLabels {
    /// Records a pod version that arrived at `at`; returns its role label before and now.
    pub fn see(&mut self, at: Instant, pod: &Pod) -> (String, String) {
        let name = pod.name_any();
        let role = role_of(pod);
        let before = self
            .roles
            .insert(name.clone(), role.clone())
            .unwrap_or_default();
        if before != role {
            self.changes.push((at, name, before.clone(), role.clone()));
            if self.roles.values().filter(|r| *r == "primary").count() > 1 {
                self.double_primary += 1;
            }
        }
        (before, role)
    }

    /// Pods that gained the primary label since change index `from`: when and which.
    pub fn primary_gains(&self, from: usize) -> Vec<(Instant, String)> {
        self.changes
            .get(from..)
            .unwrap_or_default()
            .iter()
            .filter(|(_, _, _, to)| to == "primary")
            .map(|(at, pod, _, _)| (*at, pod.clone()))
            .collect()
    }
}

/// One look at the instance: `Ok(primary)` when its status shows a converged topology ([`converged`]) and the
/// pods carry exactly the labels the status records; otherwise `Err` with what was seen.
pub async fn converged_primary(
    instances: &Api<RedisInstance>,
    pods: &Api<Pod>,
    replicas: usize,
) -> Result<String, String> {
    let status = instances
        .get(INSTANCE)
        .await
        .map_err(|e| format!("get {INSTANCE}: {e}"))?
        .status
        .unwrap_or_default();
    if converged(&status, replicas) {
        let params = ListParams::default().labels(&format!("{INSTANCE_LABEL}={INSTANCE}"));
        let carried: BTreeMap<String, String> = pods
            .list(&params)
            .await
            .map(|l| l.items.iter().map(|p| (p.name_any(), role_of(p))).collect())
            .unwrap_or_default();
        let recorded: BTreeMap<String, String> = status
            .pods
            .iter()
            .map(|p| (p.name.clone(), p.label.clone()))
            .collect();
        if carried == recorded {
            return Ok(status.current_primary.unwrap_or_default());
        }
    }
    Err(format!(
        "status {} / primary {:?} / target {:?} / failing since {:?} / pods {:?}",
        status.status,
        status.current_primary,
        status.target_primary,
        status.primary_failing_since,
        status
            .pods
            .iter()
            .map(|p| format!("{}={}/{}/{}", p.name, p.role, p.label, p.link))
            .collect::<Vec<_>>()
    ))
}

/// Calls `look` every `every` until it answers `Ok`, calling `pump` (watch consumers) before each look; after
/// `timeout` the error is what the last look saw.
pub async fn poll<T, Look, Seen>(
    timeout: Duration,
    every: Duration,
    mut pump: impl FnMut(),
    mut look: Look,
) -> Result<T, String>
where
    Look: FnMut() -> Seen,
    Seen: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        pump();
        let seen = match look().await {
            Ok(answer) => return Ok(answer),
            Err(seen) => seen,
        };
        if Instant::now() > deadline {
            return Err(seen);
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until [`converged_primary`] answers, calling `pump` (watch consumers) all along; returns the primary.
pub async fn wait_topology(
    instances: &Api<RedisInstance>,
    pods: &Api<Pod>,
    replicas: usize,
    timeout: Duration,
    pump: impl FnMut(),
) -> Result<String, String> {
    poll(timeout, Duration::from_millis(200), pump, || {
        converged_primary(instances, pods, replicas)
    })
    .await
    .map_err(|seen| format!("not converged within {timeout:?}: {seen}"))
}
