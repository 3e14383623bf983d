//! The replication edge of the reconciler: observing every pod's server, translating between the
//! persisted status and the pure decision core (`redis_fsm::decide`), sending the one topology command a
//! pass may send, and the role labels. See `docs/replication.md`.
//!
//! Everything here that decides is pure (`topology_status`, `record_topology`, `pod_replication`,
//! `pod_summaries`); the async functions only observe or act.

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use redis_fsm::{
    Endpoint, PodReplication, ReplicationHistory, RoleLabel, ServerRole, SwitchoverReason,
    SwitchoverRecord, TargetPrimary, Timestamp, TopologyAction, TopologyStatus, Unobserved,
    WaitReason,
};

use crate::api::{PodStatus, RedisInstanceStatus, SwitchoverStatus, MAX_STATUS_INTEGER};
use crate::desired::redis_conf::REDIS_PORT;
use crate::names::{pod_name, ROLE_LABEL};
use crate::redis::{refusal_of, Access, RedisError, RedisNode};

/// The value of `status.targetPrimary` while a failover has started and nobody is elected yet.
pub const PENDING: &str = "Pending";
/// Replicas at most this many bytes behind the primary count as in sync (`NAME-replicas`).
pub const MAX_LAG_BYTES: u64 = 1024 * 1024;
/// How long a switchover may pause writes while the target catches up before the operator gives it up
/// (see [`super::handover`]).
pub const SWITCHOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// The persisted topology fields of `status`, as the decision core reads them.
pub fn topology_status(status: Option<&RedisInstanceStatus>) -> TopologyStatus {
    let Some(status) = status else {
        return TopologyStatus::default();
    };
    TopologyStatus {
        current_primary: status.current_primary.clone(),
        target_primary: status.target_primary.as_deref().map(|t| {
            if t == PENDING {
                TargetPrimary::Pending
            } else {
                TargetPrimary::Pod(t.to_string())
            }
        }),
        primary_failing_since: status.primary_failing_since.as_deref().and_then(parse_time),
        primary_history: status
            .primary_replication_id
            .as_ref()
            .map(|replid| ReplicationHistory {
                replid: replid.clone(),
                replid2: status.primary_replication_id2.clone(),
                second_offset: status
                    .primary_second_offset
                    .and_then(|o| u64::try_from(o).ok()),
            }),
        primary_run_id: status.primary_run_id.clone(),
        switchover: status.switchover.as_ref().and_then(|s| {
            Some(SwitchoverRecord {
                from: s.from.clone(),
                reason: SwitchoverReason::parse(&s.reason)?,
                since: parse_time(&s.started_at)?,
            })
        }),
        switchover_retry_at: status.switchover_retry_at.as_deref().and_then(parse_time),
    }
}

/// Writes `topology` into `status` (the inverse of [`topology_status`]).
pub fn record_topology(status: &mut RedisInstanceStatus, topology: &TopologyStatus) {
    status.current_primary = topology.current_primary.clone();
    status.target_primary = topology.target_primary.as_ref().map(|t| match t {
        TargetPrimary::Pending => PENDING.to_string(),
        TargetPrimary::Pod(pod) => pod.clone(),
    });
    status.primary_failing_since = topology.primary_failing_since.map(format_time);
    status.primary_replication_id = topology.primary_history.as_ref().map(|h| h.replid.clone());
    status.primary_replication_id2 = topology
        .primary_history
        .as_ref()
        .and_then(|h| h.replid2.clone());
    status.primary_second_offset = topology
        .primary_history
        .as_ref()
        .and_then(|h| h.second_offset)
        .map(capped);
    status.primary_run_id = topology.primary_run_id.clone();
    status.switchover = topology.switchover.as_ref().map(|s| SwitchoverStatus {
        from: s.from.clone(),
        reason: s.reason.as_str().to_string(),
        started_at: format_time(s.since),
    });
    status.switchover_retry_at = topology.switchover_retry_at.map(format_time);
}

/// An offset or lag as the status schema bounds it.
fn capped(value: u64) -> i64 {
    i64::try_from(value).map_or(MAX_STATUS_INTEGER, |v| v.min(MAX_STATUS_INTEGER))
}

/// A timestamp as RFC 3339 with milliseconds.
pub fn format_time(time: Timestamp) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(time.0)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| Timestamp(t.as_millisecond()))
}

/// A time as the decision core takes it (milliseconds since the Unix epoch).
pub fn at(time: k8s_openapi::jiff::Timestamp) -> Timestamp {
    Timestamp(time.as_millisecond())
}

/// The address the operator reaches a pod's server at, and the one replicas are pointed at: the pod
/// IP (the local cluster has no DNS; a pod whose IP changes is re-pointed, see `Repoint`).
pub fn endpoint(pod: &Pod) -> Option<Endpoint> {
    let ip = pod.status.as_ref()?.pod_ip.clone()?;
    Some(Endpoint {
        host: ip,
        port: u16::try_from(REDIS_PORT).unwrap_or(6379),
    })
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What the rest of the cluster says about the instance's pods: the StatefulSet's update revision and
/// the cordoned nodes.
#[derive(Clone, Debug, Default)]
pub struct PodContext {
    /// `status.updateRevision` of the StatefulSet, once its controller observed the latest generation
    /// (`None` otherwise: no pod counts as outdated while the revision may be stale).
    pub update_revision: Option<String>,
    /// Names of the nodes marked unschedulable.
    pub cordoned_nodes: Vec<String>,
}

/// What is known of ordinal `ordinal` before its server is asked: `pod` is `None` when the pod does not
/// exist (yet), and then it is passed as unobserved, as the election requires.
pub fn pod_replication(
    instance: &str,
    ordinal: u32,
    pod: Option<&Pod>,
    context: &PodContext,
    server: Result<redis_fsm::ServerState, Unobserved>,
) -> PodReplication {
    let node = pod.and_then(|p| p.spec.as_ref()?.node_name.as_deref());
    let outdated = match (pod, context.update_revision.as_deref()) {
        (Some(pod), Some(update)) => crate::observe::rollout::pod_revision(pod) != Some(update),
        _ => false,
    };
    PodReplication {
        pod: pod_name(instance, ordinal),
        ordinal,
        endpoint: pod.and_then(endpoint).unwrap_or(Endpoint {
            host: String::new(),
            port: 0,
        }),
        pod_ready: pod.is_some_and(pod_ready),
        pod_deleting: pod.is_some_and(|p| p.metadata.deletion_timestamp.is_some()),
        // Node readiness is not watched: a lost node shows as a pod that is not Ready.
        node_ready: pod.is_some(),
        node_cordoned: node.is_some_and(|n| context.cordoned_nodes.iter().any(|c| c == n)),
        outdated,
        server,
    }
}

/// Observes every expected ordinal (`0..replicas`), concurrently, each with bounded timeouts: a slow
/// server delays this pass by at most its own bounds and never another instance's reconcile.
pub async fn observe(
    instance: &str,
    replicas: u32,
    pods: &[std::sync::Arc<Pod>],
    context: &PodContext,
    access: &Access,
) -> Vec<PodReplication> {
    let observations = (0..replicas).map(|ordinal| {
        let name = pod_name(instance, ordinal);
        let pod = pods.iter().find(|p| p.name_any() == name).cloned();
        async move {
            let server = match pod.as_deref().and_then(endpoint) {
                None => Err(Unobserved::unreachable(if pod.is_some() {
                    "the pod has no IP yet"
                } else {
                    "the pod does not exist"
                })),
                Some(at) => {
                    let observed = match RedisNode::open(&at.host, at.port, access).await {
                        Ok(node) => node.observe().await,
                        Err(e) => Err(e),
                    };
                    match observed {
                        Ok(state) => Ok(state),
                        // A live server that refuses (BUSY, maxclients) is not an unreachable one.
                        Err(e) => {
                            let mut unobserved = Unobserved::from(&e);
                            unobserved.refusal = refusal_of(&e, &at.host, at.port, access).await;
                            if let (Some(refusal), None) = (unobserved.refusal, e.refusal()) {
                                // Read from a second connection: say what the server said.
                                unobserved.reason = format!("{}; {refusal}", unobserved.reason);
                            }
                            Err(unobserved)
                        }
                    }
                }
            };
            pod_replication(instance, ordinal, pod.as_deref(), context, server)
        }
    });
    join_all(observations).await
}

pub use super::command::CommandError;

/// Sends the servers the command of `action` (`Fence`, `Promote` or `Repoint`); other actions send
/// nothing. `leading` is asked before every single command, so a leader that lost its Lease stops
/// mid-way.
pub async fn execute(
    action: &TopologyAction,
    pods: &[PodReplication],
    access: &Access,
    leading: impl Fn() -> bool,
) -> Result<(), CommandError> {
    let endpoint_of = |name: &str| {
        pods.iter()
            .find(|p| p.pod == name && !p.endpoint.host.is_empty())
            .map(|p| p.endpoint.clone())
            .ok_or_else(|| CommandError::NoAddress(name.to_string()))
    };
    let node = |at: Endpoint| async move {
        RedisNode::open(&at.host, at.port, access)
            .await
            .map_err(CommandError::from)
    };
    match action {
        TopologyAction::Fence { pods: names } => {
            for name in names {
                let at = endpoint_of(name)?;
                if !leading() {
                    return Err(CommandError::NotLeading("REPLICAOF (fence)"));
                }
                // Parked: replicating from itself, read-only, data kept.
                node(at.clone()).await?.replicaof(&at.host, at.port).await?;
            }
        }
        TopologyAction::Promote { pod } => {
            let at = endpoint_of(pod)?;
            if !leading() {
                return Err(CommandError::NotLeading("REPLICAOF NO ONE"));
            }
            node(at).await?.replicaof_no_one().await?;
        }
        TopologyAction::Repoint { pods: names, to } => {
            let primary = endpoint_of(to)?;
            for name in names {
                let at = endpoint_of(name)?;
                if !leading() {
                    return Err(CommandError::NotLeading("REPLICAOF"));
                }
                node(at)
                    .await?
                    .replicaof(&primary.host, primary.port)
                    .await?;
            }
        }
        TopologyAction::KillScript { pod } => {
            let at = endpoint_of(pod)?;
            if !leading() {
                return Err(CommandError::NotLeading("SCRIPT KILL"));
            }
            node(at).await?.kill_script().await?;
        }
        TopologyAction::ShutDown { pod } => {
            let at = endpoint_of(pod)?;
            if !leading() {
                return Err(CommandError::NotLeading("SHUTDOWN NOSAVE"));
            }
            node(at).await?.shutdown_nosave().await?;
        }
        TopologyAction::Switchover { from, to } => {
            let (from_at, to_at) = (endpoint_of(from)?, endpoint_of(to)?);
            let (old, new) = (node(from_at.clone()).await?, node(to_at.clone()).await?);
            let limits = super::handover::limits(SWITCHOVER_TIMEOUT, access.timeouts.command);
            let done =
                super::handover::hand_over(&old, &new, &from_at, &to_at, limits, &leading).await?;
            tracing::info!(
                from = %from,
                to = %to,
                writes_paused_ms = done.held.as_millis() as u64,
                polls = done.polls,
                first_poll = ?done.first,
                "switched over"
            );
        }
        _ => {}
    }
    Ok(())
}

/// Disconnects the normal and Pub/Sub clients of `demoted` (see `redis_fsm::demoted_by`), after the command
/// that demoted them was carried out: pooled connections reconnect to the new primary instead of getting
/// `READONLY`. The connection sending the kill is spared (`SKIPME yes`), and replication links are other client
/// types. Every pod is tried; the first failure is returned. Returns how many clients were disconnected.
pub async fn disconnect_clients(
    demoted: &[String],
    pods: &[PodReplication],
    access: &Access,
    leading: impl Fn() -> bool,
) -> Result<u64, CommandError> {
    let mut killed = 0;
    let mut first_error = None;
    for name in demoted {
        let Some(at) = pods
            .iter()
            .find(|p| p.pod == *name && !p.endpoint.host.is_empty())
            .map(|p| p.endpoint.clone())
        else {
            first_error.get_or_insert(CommandError::NoAddress(name.clone()));
            continue;
        };
        if !leading() {
            return Err(CommandError::NotLeading("CLIENT KILL"));
        }
        let outcome = async {
            let node = RedisNode::open(&at.host, at.port, access).await?;
            Ok::<_, RedisError>(
                node.client_kill_type("normal").await? + node.client_kill_type("pubsub").await?,
            )
        }
        .await;
        match outcome {
            Ok(n) => killed += n,
            Err(error) => {
                first_error.get_or_insert(error.into());
            }
        }
    }
    first_error.map_or(Ok(killed), Err)
}

/// The role label a pod carries now.
pub fn live_role(pod: &Pod) -> Option<RoleLabel> {
    match pod.labels().get(ROLE_LABEL).map(String::as_str) {
        Some("primary") => Some(RoleLabel::Primary),
        Some("replica") => Some(RoleLabel::Replica),
        _ => None,
    }
}

/// The per-pod status summary. `lag_bytes` and `last_seen` change without the topology changing, so
/// the status write compares summaries without them (see [`without_volatile`]); an unreachable pod keeps
/// the `last_seen` of `previous`.
pub fn pod_summaries(
    previous: &[PodStatus],
    pods: &[PodReplication],
    roles: &[(String, Option<RoleLabel>)],
    primary_offset: Option<u64>,
    now: &str,
) -> Vec<PodStatus> {
    pods.iter()
        .map(|p| {
            let label = roles
                .iter()
                .find(|(name, _)| *name == p.pod)
                .and_then(|(_, role)| role.map(|r| r.as_str().to_string()))
                .unwrap_or_default();
            let earlier = previous.iter().find(|s| s.name == p.pod);
            match &p.server {
                Ok(state) => {
                    let (role, link, lag) = match &state.role {
                        ServerRole::Master => ("master", String::new(), None),
                        ServerRole::Replica(link) => {
                            let status = if link.sync_in_progress {
                                "syncing"
                            } else if link.link_up {
                                "up"
                            } else {
                                "down"
                            };
                            let lag = primary_offset
                                .filter(|_| link.link_up)
                                .map(|o| o.saturating_sub(link.replica_offset))
                                .map(capped);
                            ("replica", status.to_string(), lag)
                        }
                    };
                    PodStatus {
                        name: p.pod.clone(),
                        role: role.into(),
                        label,
                        link,
                        lag_bytes: lag,
                        last_seen: Some(now.to_string()),
                        server: state.server.to_string(),
                        message: String::new(),
                    }
                }
                Err(unobserved) => PodStatus {
                    name: p.pod.clone(),
                    role: "unreachable".into(),
                    label,
                    link: String::new(),
                    lag_bytes: None,
                    last_seen: earlier.and_then(|e| e.last_seen.clone()),
                    server: earlier.map(|e| e.server.clone()).unwrap_or_default(),
                    message: unobserved.reason.clone(),
                },
            }
        })
        .collect()
}

/// One line per pod of what a topology decision saw (role, replication id and offset, keys, run id), for the
/// log of the decisions that move the primary: enough to replay them. Ids are shortened to 8 characters.
pub fn observation_line(pods: &[PodReplication]) -> String {
    let short = |id: &str| id.chars().take(8).collect::<String>();
    pods.iter()
        .map(|p| match &p.server {
            Ok(s) => {
                let role = match &s.role {
                    ServerRole::Master => "master".to_string(),
                    ServerRole::Replica(link) => format!(
                        "replica-of {}:{} link {} sync {} at {}",
                        link.master_host,
                        link.master_port,
                        if link.link_up { "up" } else { "down" },
                        link.sync_in_progress,
                        link.replica_offset
                    ),
                };
                format!(
                    "{} [{}] run {} replid {} offset {} replid2 {} until {:?} keys {}{}{}{}",
                    p.pod,
                    role,
                    short(&s.run_id),
                    short(&s.replid),
                    s.repl_offset,
                    s.replid2.as_deref().map_or_else(|| "-".into(), short),
                    s.second_repl_offset,
                    s.keys,
                    if s.loading { " loading" } else { "" },
                    if p.pod_deleting { " deleting" } else { "" },
                    if p.pod_ready { "" } else { " not-ready" },
                )
            }
            Err(e) => format!("{} unobserved: {}", p.pod, e.reason),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `status` without the per-pod fields that change on every observation (lag and last seen): two
/// statuses equal after this need no write.
pub fn without_volatile(status: &RedisInstanceStatus) -> RedisInstanceStatus {
    let mut stripped = status.clone();
    for pod in &mut stripped.pods {
        pod.lag_bytes = None;
        pod.last_seen = None;
    }
    stripped
}

/// The StatefulSet size to hold when scaling down to `spec_replicas` would remove the recorded primary or a
/// failover's target (`None`: scale as asked). The operator does not switch over before a scale-down yet, so
/// such a scale-down waits, with the instance `Updating`, until the primary is on a surviving ordinal.
pub fn scale_down_hold(
    instance: &str,
    spec_replicas: i32,
    live_replicas: Option<i32>,
    status: &TopologyStatus,
) -> Option<i32> {
    let live = live_replicas?;
    if spec_replicas >= live {
        return None;
    }
    let ordinal = |pod: &str| {
        pod.strip_prefix(instance)?
            .strip_prefix('-')?
            .parse::<i32>()
            .ok()
    };
    let target = match &status.target_primary {
        Some(TargetPrimary::Pod(pod)) => Some(pod.as_str()),
        _ => None,
    };
    let endangered = [status.current_primary.as_deref(), target]
        .into_iter()
        .flatten()
        .filter_map(ordinal)
        .any(|o| o >= spec_replicas);
    endangered.then_some(live)
}

/// What the phase engine says while a failover is in flight (`None` when none is): from status only, so
/// the message is stable across the passes of one failover step.
///
/// When this pass's `action` is to wait, the message says what for (e.g. a replica that has not resynced the
/// primary's history, which blocks the election): a failover that cannot move on must not look like one
/// that is about to finish.
pub fn failover_message(status: &TopologyStatus, action: &TopologyAction) -> Option<String> {
    if !status.failover_in_flight() {
        return None;
    }
    let from = status.current_primary.as_deref().unwrap_or("(none)");
    let step = match (&status.target_primary, status.switchover_in_flight()) {
        (Some(TargetPrimary::Pod(to)), Some(switchover)) => format!(
            "Switching over from {from} to {to} ({}): writes pause until {to} has caught up, then the \
             roles swap",
            switchover.reason
        ),
        (Some(TargetPrimary::Pod(to)), None) => format!("Failing over from {from}: promoting {to}"),
        _ => format!("Failing over from {from}: fencing it and electing the most advanced replica"),
    };
    Some(match action {
        TopologyAction::Wait { reason } => format!("{step}; {reason}"),
        _ => step,
    })
}

/// From `now` to `at`, at least 200 ms.
fn time_until(at: Timestamp, now: Timestamp) -> Duration {
    Duration::from_millis(
        u64::try_from(at.0.saturating_sub(now.0))
            .unwrap_or(0)
            .max(200),
    )
}

/// How often a replicated instance is observed while steady: the failover delay, at least 2 s and at most 5 s. A
/// failing primary that no pod event announces (a busy primary keeps its readiness) is seen within that.
pub fn watch_interval(failover_delay: Duration) -> Duration {
    failover_delay.clamp(Duration::from_secs(2), Duration::from_secs(5))
}

/// How long until a deadline the decision waits for runs out (the failover delay, a switchover's back-off); `None`
/// when it waits for none.
pub fn deadline_after(action: &TopologyAction, now: Timestamp) -> Option<Duration> {
    match action {
        TopologyAction::WaitFailoverDelay { until, .. } => Some(time_until(*until, now)),
        TopologyAction::Wait {
            reason: WaitReason::SwitchoverBackOff(at),
        } => Some(time_until(*at, now)),
        _ => None,
    }
}

/// How soon to look again after `action`: quickly while the topology moves, at the failover deadline
/// while the delay runs, `None` (the normal resync) when steady.
pub fn requeue_after(action: &TopologyAction, now: Timestamp) -> Option<Duration> {
    if let Some(deadline) = deadline_after(action, now) {
        return Some(deadline);
    }
    match action {
        TopologyAction::Steady => None,
        TopologyAction::Stop { .. } => Some(Duration::from_secs(10)),
        // Only a request (an instance change, which is watched) moves a supervised rollout on.
        TopologyAction::Wait {
            reason: WaitReason::SwitchoverNotRequested(_),
        } => None,
        TopologyAction::Wait {
            reason: WaitReason::SwitchoverRunning(_),
        } => Some(Duration::from_millis(100)),
        TopologyAction::Wait { .. } => Some(Duration::from_secs(2)),
        // The handover swaps the roles within milliseconds once the target caught up, and no pod changes meanwhile
        // (no watch event): while it runs nobody carries the primary label, so confirm the new primary promptly.
        TopologyAction::Switchover { .. } => Some(Duration::from_millis(100)),
        _ => Some(Duration::from_millis(500)),
    }
}

#[cfg(test)]
mod tests;
