//! The `RedisInstance` custom resource (`redis-operator.github.io/v1beta1`): spec, status and CRD generation.
//!
//! Long on purpose: the spec types are one schema, and each field's doc comment here is the CRD's description
//! that `kubectl explain` shows; splitting them would scatter one reference. Status types are in `status.rs`,
//! tests in `tests.rs`.

pub mod admission;
mod backup;
pub mod directives;
pub mod quantity;
mod status;

pub use self::backup::{
    ArchiveSpec, ArchiveStatus, BackupSpec, BootstrapSpec, FromArchive, FromBackup,
    InstanceBackupStatus, RedisBackup, RedisBackupSpec, RedisBackupStatus, RestoreStatus, S3Target,
};
pub use self::status::{
    status_integer, AuthStatus, PodStatus, RedisInstanceStatus, SwitchoverStatus, TlsStatus,
    MAX_STATUS_INTEGER,
};

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use kube::{CustomResource, KubeSchema};
use redis_fsm::Phase;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::admission::MAX_REPLICAS;

/// The image used when `spec.image` is not set.
pub const DEFAULT_IMAGE: &str = "redis:7.2";

/// Desired state of a Redis instance.
// The CEL admission rules (`x_kube(validation = ...)`) come from `crate::api::admission`, built from the same
// tables `crate::validate` checks.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "redis-operator.github.io",
    version = "v1beta1",
    kind = "RedisInstance",
    plural = "redisinstances",
    shortname = "ri",
    shortname = "redis",
    category = "all",
    category = "redis",
    namespaced,
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    status = "RedisInstanceStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.status","description":"Current phase of the instance"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.ready","description":"Whether every replica is ready and the spec is fully rolled out"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas","description":"Desired number of Redis pods"}"#,
    printcolumn = r#"{"name":"Primary","type":"string","jsonPath":".status.currentPrimary","description":"The pod that is the confirmed primary"}"#,
    printcolumn = r#"{"name":"Ready Replicas","type":"integer","jsonPath":".status.readyReplicas","description":"Redis pods that are ready"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = admission::storage_not_removed(),
    validation = admission::bootstrap_unchanged(),
    validation = admission::no_unauthenticated_external_service()
)]
#[serde(rename_all = "camelCase")]
pub struct RedisInstanceSpec {
    /// Container image running redis-server. Changing it rolls the pods one at a time.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = admission::MAX_IMAGE_LEN))]
    #[x_kube(validation = admission::image_is_one_word())]
    pub image: String,

    /// Number of Redis pods, 0 to 100: one primary and `replicas - 1` replicas replicating from it (1: a
    /// standalone server). Changing it scales the StatefulSet.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = MAX_REPLICAS))]
    pub replicas: i32,

    /// CPU and memory requests and limits of the Redis container. Changing them rolls the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Persistent storage for `/data`. Without it the data directory is an emptyDir that lives as long as the pod.
    /// The size can grow (claims are expanded in place) but never shrink; storage cannot be removed once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,

    /// redis.conf directives and their values, e.g. `maxmemory: 100mb` (at most 64). A change of values Redis
    /// sets at runtime only (`maxmemory`, `maxmemory-policy`, `save`, `appendonly`, ...) is set on every pod
    /// with `CONFIG SET`, without a restart; any other change restarts the pods one at a time, the primary
    /// last, with the new configuration. Directive names are case-insensitive; directives
    /// the operator owns (`port`, `dir`, `bind`, ...), manages (`requirepass`, `replicaof`, ...) or refuses as
    /// dangerous (`loadmodule`, `enable-debug-command`, ...) are refused in any letter case.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = admission::MAX_CONFIG_ENTRIES,
        "additionalProperties" = {
            "type": "string",
            "maxLength": admission::MAX_CONFIG_VALUE_LEN,
            "pattern": "^[^\\x00-\\x1f\\x7f]*$"
        }
    ))]
    #[x_kube(
        validation = admission::directive_names(),
        validation = admission::owned_directives(),
        validation = admission::dangerous_directives(),
        validation = admission::managed_directives(),
        validation = admission::no_duplicate_directives()
    )]
    pub config: BTreeMap<String, String>,

    /// Replication and failover settings.
    #[serde(default)]
    pub replication: ReplicationSpec,

    /// Where the pods may run: `affinity`, `tolerations`, `nodeSelector`, `topologySpreadConstraints`,
    /// `priorityClassName` (the Kubernetes fields of the same names). Changing them rolls the pods.
    #[serde(flatten)]
    pub scheduling: SchedulingSpec,

    /// Extra labels and annotations of the pods. Changing them rolls the pods.
    #[serde(default, skip_serializing_if = "PodMetadataSpec::is_empty")]
    pub pod_metadata: PodMetadataSpec,

    /// How the client Services are exposed: type and annotations.
    #[serde(default, skip_serializing_if = "ServiceExposure::is_default")]
    pub service: ServiceExposure,

    /// Redis metrics: the `redis_exporter` sidecar.
    #[serde(default, skip_serializing_if = "MonitoringSpec::is_default")]
    pub monitoring: MonitoringSpec,

    /// Authentication. Without it, clients must authenticate with a password the operator generates into
    /// the Secret `NAME-auth` (key `password`).
    #[serde(default, skip_serializing_if = "AuthSpec::is_default")]
    pub auth: AuthSpec,

    /// TLS for clients and replication (the plain-text port is then off). Without it, Redis speaks plain text.
    /// Turning it on or off, or changing `secretName` or `clientAuth`, rolls the pods; a renewed certificate
    /// in the Secret is reloaded without restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// The NetworkPolicy `NAME` that limits who reaches the pods (on by default): port 6379 from the
    /// `clients` peers (default: every pod of the instance's namespace) and from the operator, the exporter's
    /// port 9121 only from the `metrics` peers. Egress is not limited.
    #[serde(default, skip_serializing_if = "NetworkPolicySettings::is_default")]
    pub network_policy: NetworkPolicySettings,

    /// Where backups of this instance go: an S3-compatible bucket. A `RedisBackup` naming the instance takes one.
    /// Changing it touches no pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,

    /// How the data of a new instance starts: from a backup (`fromBackup`), seeded into the first pod before any
    /// pod serves. Set at creation only: it cannot be added to an existing instance, changed or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapSpec>,
}

impl Default for RedisInstanceSpec {
    /// The spec of `spec: {}`: one `redis:7.2` pod, no storage, no extra configuration.
    fn default() -> Self {
        Self {
            image: default_image(),
            replicas: default_replicas(),
            resources: None,
            storage: None,
            config: BTreeMap::new(),
            replication: ReplicationSpec::default(),
            scheduling: SchedulingSpec::default(),
            pod_metadata: PodMetadataSpec::default(),
            service: ServiceExposure::default(),
            monitoring: MonitoringSpec::default(),
            auth: AuthSpec::default(),
            tls: None,
            network_policy: NetworkPolicySettings::default(),
            backup: None,
            bootstrap: None,
        }
    }
}

/// TLS (`spec.tls`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// A Secret of type `kubernetes.io/tls` in the instance's namespace with `tls.crt` (the servers'
    /// certificate, optionally followed by intermediates), `tls.key` and `ca.crt` (the CA that signed it):
    /// the layout cert-manager writes. Every pod serves this certificate, and replicas verify their primary
    /// against `ca.crt`.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,

    /// Whether clients must present a certificate signed by `ca.crt`: `None` (default), `Optional` (verified
    /// when presented) or `Required`. With `Required`, replicas, the readiness probe, the exporter and the
    /// operator present the certificate of the Secret, so it must allow client authentication.
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// Client certificates (`spec.tls.clientAuth`): Redis' `tls-auth-clients`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ClientAuth {
    /// Clients are not asked for a certificate (`tls-auth-clients no`).
    #[default]
    None,
    /// A certificate is verified when a client presents one (`tls-auth-clients optional`).
    Optional,
    /// Every client must present a certificate signed by `ca.crt` (`tls-auth-clients yes`).
    Required,
}

/// Authentication (`spec.auth`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Whether clients must authenticate (default true). `false` is the explicit opt-out: every client that
    /// reaches the pods may run every command, and the status says so. Changing it rolls the pods.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// The Secret holding the application password (the `default` user's), instead of the generated
    /// `NAME-auth`. A key `previousPassword` in the same Secret is accepted as well, until it is removed:
    /// that is the rotation window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,

    /// ACL rules of the `default` user (the application's), without passwords. The default grants every data
    /// command and no administrative one (`CONFIG`, `DEBUG`, `MODULE`, `SHUTDOWN`, `REPLICAOF`, `FAILOVER`,
    /// `ACL`, `CLIENT KILL`, `MONITOR`, ...). Changing it rolls the pods.
    #[serde(default = "default_user_rules")]
    #[schemars(length(min = 1, max = 1024))]
    pub default_user_rules: String,
}

/// The ACL rules of the application user when `spec.auth.defaultUserRules` is not set.
pub const DEFAULT_USER_RULES: &str = "~* &* +@all -@admin";

fn default_user_rules() -> String {
    DEFAULT_USER_RULES.to_string()
}

fn default_true() -> bool {
    true
}

impl Default for AuthSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            secret_ref: None,
            default_user_rules: default_user_rules(),
        }
    }
}

impl AuthSpec {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// The instance's NetworkPolicy (`spec.networkPolicy`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySettings {
    /// Whether the operator keeps the NetworkPolicy `NAME` (default true). `false` deletes the one it made.
    /// Enforcement needs a network plugin that enforces NetworkPolicies.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Who may connect to Redis (port 6379), as NetworkPolicy peers (`podSelector`, `namespaceSelector`,
    /// `ipBlock`; at most 32). Empty (default): every pod in the instance's namespace. The instance's own pods
    /// (replication) and the operator are always allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_METADATA_ENTRIES))]
    pub clients: Vec<NetworkPolicyPeer>,

    /// Who may scrape the exporter (port 9121, with `monitoring.exporter.enabled`), as NetworkPolicy peers (at
    /// most 32). Empty (default): nobody, so name your Prometheus here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_METADATA_ENTRIES))]
    pub metrics: Vec<NetworkPolicyPeer>,
}

impl Default for NetworkPolicySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            clients: Vec::new(),
            metrics: Vec::new(),
        }
    }
}

impl NetworkPolicySettings {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// A key of a Secret in the instance's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key holding the password (default `password`).
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_password_key() -> String {
    "password".to_string()
}

/// Replication and failover settings (`spec.replication`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSpec {
    /// Seconds the primary must be unreachable or not ready before the operator fails over to a
    /// replica (default 10, 0 to 3600; 0 fails over at the first failed observation). A primary whose
    /// server restarted is failed over at once.
    #[serde(default = "default_failover_delay_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub failover_delay_seconds: i32,

    /// `min-replicas-to-write`: the primary refuses writes unless at least this many replicas are
    /// connected with at most `minReplicasMaxLag` seconds of lag. Bounds what an isolated primary
    /// can accept. Unset: Redis's default (0, off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub min_replicas_to_write: Option<i32>,

    /// `min-replicas-max-lag`: seconds of lag a replica may have and still count for
    /// `minReplicasToWrite` (0 to 3600). Unset: Redis's default (10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub min_replicas_max_lag: Option<i32>,

    /// How a rolling update replaces the primary, after every replica was replaced one at a time:
    /// `Unsupervised` (default) switches over to an updated replica at once and then replaces the
    /// old primary; `Supervised` waits until a switchover is requested (the
    /// `redis-operator.github.io/switchover-to` annotation, or `redis-operator switchover NAME --to POD`).
    #[serde(default)]
    pub primary_update_strategy: PrimaryUpdateStrategy,
}

/// `spec.replication.primaryUpdateStrategy`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PrimaryUpdateStrategy {
    /// The rolling update switches over and replaces the old primary by itself.
    #[default]
    Unsupervised,
    /// The rolling update stops after the replicas until a switchover is requested.
    Supervised,
}

impl Default for ReplicationSpec {
    fn default() -> Self {
        Self {
            failover_delay_seconds: default_failover_delay_seconds(),
            min_replicas_to_write: None,
            min_replicas_max_lag: None,
            primary_update_strategy: PrimaryUpdateStrategy::default(),
        }
    }
}

fn default_failover_delay_seconds() -> i32 {
    // The fsm crate's default, kept in one place; it fits in i32.
    i32::try_from(redis_fsm::DEFAULT_FAILOVER_DELAY_SECONDS).unwrap_or(10)
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_string()
}

fn default_replicas() -> i32 {
    1
}

/// Persistent storage for the Redis data directory.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each pod's claim, as a Kubernetes quantity (e.g. `1Gi`), above zero and below 8Ei. May grow,
    /// never shrink.
    #[schemars(length(max = admission::MAX_QUANTITY_LEN))]
    #[x_kube(
        validation = admission::size_is_quantity(),
        validation = admission::size_is_positive(),
        validation = admission::size_is_representable(),
        validation = admission::size_never_shrinks()
    )]
    pub size: String,

    /// StorageClass of new claims. Changing it replaces the StatefulSet without touching running pods;
    /// existing claims keep their class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = admission::MAX_STORAGE_CLASS_LEN))]
    #[x_kube(validation = admission::storage_class_name())]
    pub storage_class_name: Option<String>,

    /// What happens to the claims when the RedisInstance is deleted: `Retain` (default) keeps them and
    /// their data, `Delete` removes them.
    #[serde(default)]
    pub when_deleted: ClaimDeletePolicy,
}

/// What happens to an instance's PersistentVolumeClaims when the instance is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ClaimDeletePolicy {
    /// Keep the claims (and the data) after the instance is deleted.
    #[default]
    Retain,
    /// Delete the claims together with the instance.
    Delete,
}

/// Pod placement (`spec.affinity`, `spec.tolerations`, ...), flattened into the spec. The Kubernetes types are
/// kept whole; the CRD admits them as free-form objects (their full schemas would bring unbounded integers
/// and a large CRD) and [`crate::validate`] checks what the API server would refuse in the pod template.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingSpec {
    /// Node and pod affinity of the pods (Kubernetes `Affinity`). Without a `podAntiAffinity` the operator adds
    /// a preferred (soft) anti-affinity on `kubernetes.io/hostname` between the pods of the instance, so they
    /// spread over nodes when they can and still schedule on a single node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "affinity_schema")]
    pub affinity: Option<Affinity>,

    /// Tolerations of the pods (Kubernetes `Toleration`s), at most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_form_list")]
    pub tolerations: Vec<Toleration>,

    /// Node labels a node must carry to run the pods (at most 32).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_METADATA_ENTRIES))]
    pub node_selector: BTreeMap<String, String>,

    /// How the pods spread over topology domains (Kubernetes `TopologySpreadConstraint`s), at most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_form_list")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// PriorityClass of the pods. The `system-` classes (`system-cluster-critical`, `system-node-critical`) are
    /// refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "!self.startsWith('system-')",
        "message": admission::SYSTEM_PRIORITY_CLASS
    }]))]
    pub priority_class_name: Option<String>,
}

/// The most entries a user-given map (labels, annotations, node selector) or list (tolerations, spread
/// constraints) may hold.
pub const MAX_METADATA_ENTRIES: usize = 32;

/// An object of objects (`nodeAffinity`, `podAffinity`, `podAntiAffinity`) the API server stores as given; the
/// operator decodes and checks it. A map rather than a bare object with preserved fields, which `kubectl
/// explain` would show without a type.
fn affinity_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 3,
        "additionalProperties": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

/// A bounded list of objects the API server stores as given; the operator decodes and checks them.
fn free_form_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": MAX_METADATA_ENTRIES,
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

/// Extra labels and annotations of the pods (`spec.podMetadata`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodMetadataSpec {
    /// Labels added to every pod (at most 32). The operator's own labels (`app.kubernetes.io/name`,
    /// `app.kubernetes.io/instance`, `app.kubernetes.io/managed-by`) and the `redis-operator.github.io/` prefix are
    /// refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_METADATA_ENTRIES))]
    pub labels: BTreeMap<String, String>,

    /// Annotations added to every pod (at most 32). The `redis-operator.github.io/` prefix is refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_METADATA_ENTRIES))]
    pub annotations: BTreeMap<String, String>,
}

impl PodMetadataSpec {
    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// How a Service is exposed.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Inside the cluster only.
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Also through the cloud's load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes `spec.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Exposure of the client Services (`spec.service`): the read-write `NAME` and, unless `replicas` says
/// otherwise, the read-only `NAME-replicas`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceExposure {
    /// `ClusterIP` (default), `NodePort` or `LoadBalancer`.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,

    /// Annotations of the Services, e.g. cloud load-balancer settings (at most 32; the `redis-operator.github.io/`
    /// prefix is refused).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_METADATA_ENTRIES))]
    pub annotations: BTreeMap<String, String>,

    /// Overrides for the read-only `NAME-replicas` Service; each field unset follows the read-write one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicasServiceExposure>,

    /// Acknowledges exposing an instance without authentication (`auth.enabled: false`) outside the cluster
    /// (`NodePort` or `LoadBalancer`, for either Service): without it, that combination is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expose_without_auth: bool,
}

impl ServiceExposure {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// Whether either client Service is reachable from outside the cluster (`NodePort` or `LoadBalancer`).
    pub fn external(&self) -> bool {
        let replicas = self
            .replicas
            .as_ref()
            .and_then(|r| r.type_)
            .unwrap_or(self.type_);
        [self.type_, replicas]
            .iter()
            .any(|t| *t != ServiceType::ClusterIP)
    }
}

/// Overrides of `spec.service` for the read-only Service (`spec.service.replicas`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicasServiceExposure {
    /// The read-only Service's type; unset: `spec.service.type`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ServiceType>,

    /// The read-only Service's annotations; unset: `spec.service.annotations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = MAX_METADATA_ENTRIES))]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Redis metrics (`spec.monitoring`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// The `redis_exporter` sidecar.
    #[serde(default)]
    pub exporter: ExporterSpec,
}

impl MonitoringSpec {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// The image used for the exporter when `spec.monitoring.exporter.image` is not set.
pub const DEFAULT_EXPORTER_IMAGE: &str = "oliver006/redis_exporter:v1.62.0";

/// The `redis_exporter` sidecar (`spec.monitoring.exporter`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExporterSpec {
    /// Run the exporter next to each Redis server and create the `NAME-metrics` Service. Toggling it rolls
    /// the pods.
    #[serde(default)]
    pub enabled: bool,

    /// The exporter's image. Changing it rolls the pods.
    #[serde(default = "default_exporter_image")]
    #[schemars(length(min = 1, max = admission::MAX_IMAGE_LEN))]
    pub image: String,

    /// CPU and memory requests and limits of the exporter container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for ExporterSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            image: default_exporter_image(),
            resources: None,
        }
    }
}

fn default_exporter_image() -> String {
    DEFAULT_EXPORTER_IMAGE.to_string()
}

impl RedisInstance {
    /// The current phase recorded in status (Unknown when there is no status yet).
    pub fn phase(&self) -> Phase {
        self.status.as_ref().map(|s| s.status).unwrap_or_default()
    }
}

/// The CustomResourceDefinition, as installed. Defaults are stripped from the status schema: status is written
/// only by the operator, and API servers before 1.23 reject empty-string defaults there. `nullable` is stripped
/// everywhere: the operator never writes `null` (absent optional fields are omitted), the API server drops
/// `null` values of non-nullable fields anyway, and a nullable property lost its type in `kubectl explain`
/// (`resources <>`).
pub fn crd() -> serde_json::Value {
    use kube::CustomResourceExt;
    let mut crd = serde_json::to_value(RedisInstance::crd()).expect("the CRD serialises to JSON");
    if let Some(versions) = crd["spec"]["versions"].as_array_mut() {
        for version in versions {
            strip_nullable(&mut version["schema"]["openAPIV3Schema"]);
            let status =
                &mut version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
            if let Some(properties) = status.as_object_mut() {
                for property in properties.values_mut() {
                    if let Some(property) = property.as_object_mut() {
                        property.remove("default");
                    }
                }
            }
        }
    }
    crd
}

/// Removes `nullable` from a schema and every schema nested in it.
fn strip_nullable(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(map) => {
            map.remove("nullable");
            map.values_mut().for_each(strip_nullable);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nullable),
        _ => {}
    }
}

/// The CustomResourceDefinition as YAML, exactly as committed under `crds/`.
pub fn crd_yaml() -> String {
    let yaml = serde_yaml::to_string(&crd()).expect("the CRD serialises to YAML");
    format!("# Generated by `redis-operator crd`; do not edit by hand.\n{yaml}")
}

/// The `RedisBackup` CustomResourceDefinition, as installed (`nullable` stripped as in [`crd`]).
pub fn backup_crd() -> serde_json::Value {
    use kube::CustomResourceExt;
    let mut crd = serde_json::to_value(RedisBackup::crd()).expect("the CRD serialises to JSON");
    if let Some(versions) = crd["spec"]["versions"].as_array_mut() {
        for version in versions {
            strip_nullable(&mut version["schema"]["openAPIV3Schema"]);
        }
    }
    crd
}

/// The `RedisBackup` CustomResourceDefinition as YAML, exactly as committed under `crds/`.
pub fn backup_crd_yaml() -> String {
    let yaml = serde_yaml::to_string(&backup_crd()).expect("the CRD serialises to YAML");
    format!("# Generated by `redis-operator crd --backup`; do not edit by hand.\n{yaml}")
}

#[cfg(test)]
mod tests;
