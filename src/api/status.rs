//! The status of a `RedisInstance`: written by the operator only.

use redis_fsm::{Condition, History, Phase};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a Redis instance, written by the operator only.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RedisInstanceStatus {
    /// The phase: Unknown, Creating, Pending, Running, Updating, Failed or Terminated.
    pub status: Phase,

    /// `"True"` when the instance is Running with every replica ready, otherwise `"False"`.
    pub ready: String,

    /// Machine-readable reason of the current phase (CamelCase), e.g. `StatefulSetUpdating`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,

    /// Human-readable explanation of the current phase.
    pub last_condition_message: String,

    /// The `metadata.generation` of the spec this status was computed from.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("maximum" = redis_fsm::MAX_GENERATION))]
    pub observed_generation: Option<i64>,

    /// Redis pods that exist.
    #[schemars(range(min = 0, max = i32::MAX))]
    pub replicas: i32,

    /// Redis pods that are ready.
    #[schemars(range(min = 0, max = i32::MAX))]
    pub ready_replicas: i32,

    /// The pods' label selector, for the scale subresource (`kubectl scale`, a HorizontalPodAutoscaler).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,

    /// Redis pods running the current spec.
    #[schemars(range(min = 0, max = i32::MAX))]
    pub updated_replicas: i32,

    /// Kubernetes-convention conditions, one per type: Ready, Progressing, Degraded; with pods, also
    /// PrimaryAvailable and ReplicationHealthy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The newest phase transitions (at most 10), oldest first.
    #[serde(skip_serializing_if = "History::is_empty")]
    pub history: History,

    /// The pod that is (or was last) the confirmed primary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_primary: Option<String>,

    /// Equal to `currentPrimary` when steady; `Pending` or the pod being promoted while a failover is
    /// in flight. Written before any command is sent, so a restarted operator resumes the failover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_primary: Option<String>,

    /// When the current primary was first seen failing (RFC 3339); the failover delay counts from here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_failing_since: Option<String>,

    /// The confirmed primary's `master_replid`: a failover candidate must share this history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_replication_id: Option<String>,

    /// The confirmed primary's `master_replid2` (the history it was promoted from).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_replication_id2: Option<String>,

    /// The confirmed primary's `second_repl_offset`: up to where `primaryReplicationId2` is valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("maximum" = MAX_STATUS_INTEGER))]
    pub primary_second_offset: Option<i64>,

    /// The confirmed primary's `run_id`; a different one means its server restarted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_run_id: Option<String>,

    /// The switchover in flight (while `targetPrimary` differs from `currentPrimary`), or else the
    /// last one that completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switchover: Option<SwitchoverStatus>,

    /// A switchover that did not complete in time was abandoned; the next one does not start before
    /// this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switchover_retry_at: Option<String>,

    /// How clients authenticate, and which passwords are in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthStatus>,

    /// TLS: the Secret and the version of it every pod serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,

    /// Backups: the newest completed one and the schedule's next run (with `spec.backup`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<crate::api::InstanceBackupStatus>,

    /// Where the data came from, when the instance was bootstrapped from a backup (recorded once the first pod
    /// holds it; until then no pod serves).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<crate::api::RestoreStatus>,

    /// Per pod: its replication role, link state, lag and when it was last seen.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub pods: Vec<PodStatus>,
}

/// The largest replication offset or lag the status holds: 2^53, exact in every JSON client, and an
/// integer the API server accepts as an int64 bound (`i64::MAX` is not one once rendered as a float).
/// An offset beyond it (petabytes of replication stream) is capped.
pub const MAX_STATUS_INTEGER: i64 = 1 << 53;

/// `value` as a status integer, capped at [`MAX_STATUS_INTEGER`].
pub fn status_integer(value: u64) -> i64 {
    i64::try_from(value).map_or(MAX_STATUS_INTEGER, |v| v.min(MAX_STATUS_INTEGER))
}

/// How clients authenticate (`status.auth`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthStatus {
    /// Whether clients must authenticate.
    pub enabled: bool,
    /// The Secret holding the application password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The `resourceVersion` of that Secret whose passwords are in force on every pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_secret_version: Option<String>,
    /// What clients need, e.g. that the instance accepts unauthenticated clients.
    pub message: String,
}

/// TLS (`status.tls`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsStatus {
    /// The Secret holding the certificate.
    pub secret_name: String,
    /// The `resourceVersion` of that Secret whose certificate every pod serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_secret_version: Option<String>,
    /// What is in force, and which pods do not serve the current certificate yet.
    pub message: String,
}

/// A switchover of a healthy primary to a caught-up replica (the operator's handover: writes paused until the
/// replica has every one of them).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchoverStatus {
    /// The primary that hands over.
    pub from: String,
    /// Why: `ScaleDown`, `Rollout`, `Requested` or `NodeCordoned`.
    pub reason: String,
    /// When it was decided (RFC 3339); it is abandoned if not done within a few seconds.
    pub started_at: String,
}

/// One pod's replication state as the operator last observed it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// Pod name.
    pub name: String,
    /// What the server reports: `master`, `replica`, or `unreachable` (with the reason in `message`).
    pub role: String,
    /// The role label the pod carries: `primary`, `replica`, or empty (in no Service).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    /// For replicas: `up`, `down` or `syncing` (a full synchronisation is running).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub link: String,
    /// For replicas of the confirmed primary: bytes of replication stream not yet processed.
    /// Refreshed whenever the status is written; a change of the lag alone causes no write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("maximum" = MAX_STATUS_INTEGER))]
    pub lag_bytes: Option<i64>,
    /// When the operator last got an answer from the server (RFC 3339). Refreshed whenever the
    /// status is written; for an unreachable server it keeps the last time it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// The server's software and release as it reports them (`INFO server`): `redis 7.0.15`, `valkey 9.1.2`.
    /// For an unreachable server, what it last reported.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server: String,
    /// Why the server could not be observed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}
