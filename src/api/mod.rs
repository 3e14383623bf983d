//! The `RedisInstance` custom resource (`redis.github.com/v1`): spec, status and CRD generation.

pub mod admission;
pub mod directives;
pub mod quantity;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use kube::{CustomResource, KubeSchema};
use redis_fsm::{Condition, History, Phase};
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
    group = "redis.github.com",
    version = "v1",
    kind = "RedisInstance",
    plural = "redisinstances",
    shortname = "ri",
    namespaced,
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
    /// `redis.github.com/switchover-to` annotation, or `redis-operator switchover NAME --to POD`).
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
    /// `app.kubernetes.io/instance`, `app.kubernetes.io/managed-by`) and the `redis.github.com/` prefix are
    /// refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_METADATA_ENTRIES))]
    pub labels: BTreeMap<String, String>,

    /// Annotations added to every pod (at most 32). The `redis.github.com/` prefix is refused.
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

    /// Annotations of the Services, e.g. cloud load-balancer settings (at most 32; the `redis.github.com/`
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

    /// Per pod: its replication role, link state, lag and when it was last seen.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub pods: Vec<PodStatus>,
}

/// The largest replication offset or lag the status holds: 2^53, exact in every JSON client, and an
/// integer the API server accepts as an int64 bound (`i64::MAX` is not one once rendered as a float).
/// An offset beyond it (petabytes of replication stream) is capped.
pub const MAX_STATUS_INTEGER: i64 = 1 << 53;

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

/// A switchover of a healthy primary to a caught-up replica (`FAILOVER TO`).
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
    /// Why the server could not be observed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
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

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/redisinstance.yaml");

    /// `crds/` must hold exactly what `redis-operator crd` prints. Regenerate with
    /// `cargo run -- crd > crds/redisinstance.yaml` (or `REDIS_OPERATOR_BLESS=1 cargo test`).
    #[test]
    fn committed_crd_is_current() {
        let generated = crd_yaml();
        if std::env::var_os("REDIS_OPERATOR_BLESS").is_some() {
            std::fs::write(COMMITTED, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        assert!(
            committed == generated,
            "crds/redisinstance.yaml is stale: run `cargo run -- crd > crds/redisinstance.yaml`"
        );
    }

    fn schema() -> serde_json::Value {
        crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    /// Every schema nested in `schema` (properties, list items, map values), with its JSON path.
    fn walk<'a>(
        path: String,
        schema: &'a serde_json::Value,
        out: &mut Vec<(String, &'a serde_json::Value)>,
    ) {
        out.push((path.clone(), schema));
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                walk(format!("{path}.{name}"), property, out);
            }
        }
        if schema["items"].is_object() {
            walk(format!("{path}[]"), &schema["items"], out);
        }
        if schema["additionalProperties"].is_object() {
            walk(format!("{path}.*"), &schema["additionalProperties"], out);
        }
    }

    fn all_schemas(schema: &serde_json::Value) -> Vec<(String, &serde_json::Value)> {
        let mut out = Vec::new();
        walk(String::new(), schema, &mut out);
        out
    }

    /// `kubectl explain` shows `<>` for a property without a type (it did for `resources` and `storage`).
    #[test]
    fn every_property_has_a_type() {
        let schema = schema();
        for (path, node) in all_schemas(&schema) {
            let typed = node["type"].is_string()
                || node["x-kubernetes-int-or-string"] == true
                || node["x-kubernetes-preserve-unknown-fields"] == true;
            assert!(typed, "{path} has no type: {node}");
            assert!(node.get("nullable").is_none(), "{path} is nullable");
            for wrapper in ["anyOf", "oneOf", "allOf"] {
                assert!(node.get(wrapper).is_none(), "{path} has {wrapper}");
            }
        }
    }

    /// The API server refuses a CRD whose int64 bound is not an integer once read back from the float the
    /// schema holds (`i64::MAX` rounds to 2^63): every status write then fails with 422. Bounds stay at or
    /// below 2^53, where floats are exact.
    #[test]
    fn every_integer_bound_is_exact_as_a_float() {
        for (path, node) in all_schemas(&schema()) {
            if let Some(max) = node["maximum"].as_f64() {
                assert!(
                    max <= (1u64 << 53) as f64,
                    "{path}: maximum {max} is not exact"
                );
            }
        }
    }

    /// The API server does not enforce `format: int32`: without bounds `replicas: 10000000000` is admitted.
    #[test]
    fn every_integer_is_bounded() {
        let schema = schema();
        let integers: Vec<_> = all_schemas(&schema)
            .into_iter()
            .filter(|(_, node)| node["type"] == "integer")
            .collect();
        assert!(integers.len() >= 7, "{integers:?}");
        for (path, node) in integers {
            let (min, max) = (node["minimum"].as_f64(), node["maximum"].as_f64());
            assert_eq!(min, Some(0.0), "{path} needs minimum 0: {node}");
            let limit = match node["format"].as_str() {
                Some("int32") => f64::from(i32::MAX),
                Some("int64") => i64::MAX as f64,
                other => panic!("{path} has format {other:?}"),
            };
            assert!(
                max.is_some_and(|max| max <= limit),
                "{path} needs a maximum"
            );
        }
        assert_eq!(
            schema["properties"]["spec"]["properties"]["replicas"]["maximum"].as_f64(),
            Some(f64::from(MAX_REPLICAS))
        );
    }

    /// Every string and map a CEL rule reads is bounded, or the API server refuses the CRD as too costly.
    #[test]
    fn strings_and_maps_are_bounded() {
        let schema = schema();
        let spec = &schema["properties"]["spec"]["properties"];
        assert_eq!(
            spec["config"]["maxProperties"],
            admission::MAX_CONFIG_ENTRIES
        );
        assert_eq!(
            spec["config"]["additionalProperties"]["maxLength"],
            admission::MAX_CONFIG_VALUE_LEN
        );
        for (path, node) in all_schemas(&schema["properties"]["spec"]) {
            if node.get("x-kubernetes-validations").is_some() && node["type"] == "string" {
                assert!(
                    node["maxLength"].is_u64(),
                    "{path} has rules but no maxLength"
                );
            }
        }
    }

    /// The rules of one schema node, as (rule, message or message expression).
    fn rules(node: &serde_json::Value) -> Vec<(String, String)> {
        node["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|rule| {
                let message = rule["message"]
                    .as_str()
                    .or(rule["messageExpression"].as_str())
                    .unwrap_or_default();
                (
                    rule["rule"].as_str().unwrap_or_default().to_string(),
                    message.to_string(),
                )
            })
            .collect()
    }

    /// The CRD's admission rules and `validate` must refuse the same directives: every refused directive of
    /// `directives::REFUSED_DIRECTIVES` is in a lowercase-comparing config rule carrying the same reason.
    #[test]
    fn crd_refuses_every_directive_validate_refuses() {
        let schema = schema();
        let config = rules(&schema["properties"]["spec"]["properties"]["config"]);
        for (directives, why) in crate::api::directives::REFUSED_DIRECTIVES {
            for directive in directives {
                assert!(
                    config
                        .iter()
                        .any(|(rule, message)| rule.contains("lowerAscii()")
                            && rule.contains(&format!("'{directive}'"))
                            && message.contains(why)),
                    "no admission rule refuses {directive} ({why})"
                );
            }
        }
        assert!(config.iter().any(|(rule, message)| rule
            .contains("j.lowerAscii() == k.lowerAscii()")
            && message.contains(admission::DUPLICATE_DIRECTIVE)));
        assert!(config
            .iter()
            .any(|(_, message)| message.contains(admission::BAD_DIRECTIVE_NAME)));
    }

    /// The storage constraints `validate` and `change` enforce are also admission rules.
    #[test]
    fn crd_has_the_storage_and_image_rules() {
        let schema = schema();
        let spec = &schema["properties"]["spec"];
        let storage = &spec["properties"]["storage"]["properties"];
        let size = rules(&storage["size"]);
        for message in [
            admission::NOT_A_QUANTITY,
            admission::NOT_POSITIVE,
            admission::TOO_LARGE,
            "cannot shrink",
        ] {
            assert!(
                size.iter().any(|(_, m)| m.contains(message)),
                "no size rule says {message:?}"
            );
        }
        assert!(size
            .iter()
            .any(|(rule, _)| rule.contains("compareTo(quantity(oldSelf)) >= 0")));
        assert!(size
            .iter()
            .any(|(rule, _)| rule.contains(crate::api::quantity::Quantity::CEL_LIMIT)));
        assert!(rules(spec)
            .iter()
            .any(|(rule, m)| rule.contains("oldSelf.storage") && m == admission::STORAGE_REMOVED));
        assert!(rules(&storage["storageClassName"])
            .iter()
            .any(|(_, m)| m == admission::BAD_STORAGE_CLASS));
        assert!(rules(&spec["properties"]["image"])
            .iter()
            .any(|(_, m)| m == admission::BAD_IMAGE));
    }

    /// `save: ""` (snapshots off) must be an accepted value: a string, empty allowed.
    #[test]
    fn empty_config_values_are_allowed_by_the_schema() {
        let schema = schema();
        let values = &schema["properties"]["spec"]["properties"]["config"]["additionalProperties"];
        assert_eq!(values["type"], "string");
        assert!(values.get("minLength").is_none());
        assert!(values.get("nullable").is_none());
        let spec: RedisInstanceSpec =
            serde_json::from_value(serde_json::json!({"config": {"save": ""}})).unwrap();
        assert_eq!(
            serde_json::to_value(&spec).unwrap()["config"],
            serde_json::json!({"save": ""})
        );
    }

    #[test]
    fn spec_defaults_apply_to_a_minimal_object() {
        let ri: RedisInstance = serde_json::from_value(serde_json::json!({
            "apiVersion": "redis.github.com/v1",
            "kind": "RedisInstance",
            "metadata": {"name": "a"},
            "spec": {}
        }))
        .unwrap();
        assert_eq!(ri.spec, RedisInstanceSpec::default());
        assert_eq!(ri.spec.image, DEFAULT_IMAGE);
        assert_eq!(ri.spec.replicas, 1);
        assert_eq!(ri.phase(), Phase::Unknown);
    }
}
