//! Every name the operator gives to, or looks for on, Kubernetes objects: labels, annotations, the finalizer,
//! the field manager and the names of an instance's children.
//!
//! One home, so the code that sets a name and the code that reads it cannot disagree, and the docs' claims
//! about names (`tests/claims.rs`) have one place to be checked against.

/// The API group of the operator's resources (`RedisInstance`, `RedisBackup`), under the project's own domain;
/// [`LEGACY_API_GROUP`] is the one before 0.2 (`redis-operator migrate-api` moves objects from it).
pub const API_GROUP: &str = "redis-operator.github.io";
/// The API group (and key prefix) of the operator's resources before 0.2: a domain the project does not own.
pub const LEGACY_API_GROUP: &str = "redis.github.com";

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "redis-operator";
/// Finalizer that lets the operator record `Terminated` and apply the claim policy before deletion.
pub const FINALIZER: &str = "redis-operator.github.io/finalizer";

/// Label naming the application.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Label naming the owning instance.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label naming the managing operator.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`] on everything this operator creates.
pub const MANAGED_BY: &str = "redis-operator";
/// Label selector matching everything the operator manages (used to scope the watches):
/// [`MANAGED_BY_LABEL`]`=`[`MANAGED_BY`].
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=redis-operator";
/// The [`NAME_LABEL`] of the operator's own pods (`deploy/base/deployment.yaml`): the instances'
/// NetworkPolicies let pods with it, in the operator's namespace, reach Redis.
pub const OPERATOR_NAME: &str = "redis-operator";
/// Label on the `NAME-metrics` Service telling it apart from the client Services.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// The pod label carrying a pod's role; the `NAME` and `NAME-replicas` Services select on it.
pub const ROLE_LABEL: &str = "redis-operator.github.io/role";

/// The key prefix the operator keeps for itself, on labels and annotations.
pub const RESERVED_PREFIX: &str = "redis-operator.github.io/";
/// Pod template annotation carrying the SHA-256 of the restart-relevant part of `redis.conf`
/// (`redis_conf::restart_view`): it changes, and the pods roll, only for a change Redis cannot take at runtime.
pub const CONFIG_HASH_ANNOTATION: &str = "redis-operator.github.io/config-hash";
/// Annotation holding the SHA-256 of the user's settings an object carries (pod template: scheduling, pod
/// labels and annotations; Service: type and annotations). Whether a live object holds what would be applied is
/// a subset comparison ([`crate::classify::diff`]), which cannot see a label, selector entry or annotation the user
/// removed; the hash changes then, so the removal is applied (and, on the pod template, rolls the pods).
pub const SETTINGS_HASH_ANNOTATION: &str = "redis-operator.github.io/settings-hash";
/// Pod template annotation: `off`, or `on-<hash of the ACL rules>` (a rule change rolls the pods; a password
/// change does not).
pub const AUTH_ANNOTATION: &str = "redis-operator.github.io/auth";
/// Pod template annotation, only with TLS on: `<clientAuth>/<secretName>` (e.g. `None/cache-tls`). It tells
/// the operator which pods serve TLS, with which Secret, and whether they ask for a client certificate.
pub const TLS_ANNOTATION: &str = "redis-operator.github.io/tls";
/// The annotation on the RedisInstance holding the StatefulSet replace record
/// ([`crate::classify::replace::ReplaceRecord`]).
pub const REPLACE_ANNOTATION: &str = "redis-operator.github.io/statefulset-replace";
/// The annotation on the RedisInstance naming the pod to switch the primary over to.
pub const SWITCHOVER_ANNOTATION: &str = "redis-operator.github.io/switchover-to";
/// The annotation on the RedisInstance naming the pod to start from when several pods hold data and no
/// primary is recorded (an instance re-created over claims the operator did not mark, see
/// [`PRIMARY_EPOCH_ANNOTATION`]).
pub const BOOTSTRAP_PRIMARY_ANNOTATION: &str = "redis-operator.github.io/bootstrap-primary";
/// The annotation on a data claim whose pod was confirmed primary: a number one higher than any other claim of
/// the instance carried then. The claims outlive the instance, so an instance re-created over them starts from
/// the pod whose claim carries the highest.
pub const PRIMARY_EPOCH_ANNOTATION: &str = "redis-operator.github.io/primary-epoch";
/// The annotation on an object `redis-operator migrate-api` copied from the legacy API group: the legacy object's
/// uid. A second run recognises its own copy by it, and never takes over an object of the same name without it.
pub const MIGRATED_FROM_ANNOTATION: &str = "redis-operator.github.io/migrated-from";
/// The annotation on a scheduled `RedisBackup`: the schedule time it was made for (Unix seconds).
pub const SCHEDULED_FOR_ANNOTATION: &str = "redis-operator.github.io/scheduled-for";

/// Name of the data volume and of its claim template (claims are named `data-NAME-ORDINAL`).
pub const DATA_VOLUME: &str = "data";

/// The ConfigMap holding `redis.conf`.
pub fn config_map_name(instance: &str) -> String {
    format!("{instance}-config")
}

/// The headless Service governing the StatefulSet.
pub fn headless_name(instance: &str) -> String {
    format!("{instance}-headless")
}

/// The Service selecting the in-sync replicas.
pub fn replicas_service_name(instance: &str) -> String {
    format!("{instance}-replicas")
}

/// The Service in front of the exporters.
pub fn metrics_service_name(instance: &str) -> String {
    format!("{instance}-metrics")
}

/// The PodDisruptionBudget that keeps the primary.
pub fn primary_budget_name(instance: &str) -> String {
    format!("{instance}-primary")
}

/// The PodDisruptionBudget that keeps the replicas.
pub fn replicas_budget_name(instance: &str) -> String {
    format!("{instance}-replicas")
}

/// The NetworkPolicy limiting who reaches the pods (the instance's own name).
pub fn network_policy_name(instance: &str) -> String {
    instance.to_string()
}

/// The Secret holding the generated application password, when `spec.auth.secretRef` is not set.
pub fn generated_secret_name(instance: &str) -> String {
    format!("{instance}-auth")
}

/// The Secret holding the operator's users and the files the pods read (`NAME-acl`).
pub fn users_secret_name(instance: &str) -> String {
    format!("{instance}-acl")
}

/// The Secret apps bind to: host, port, credentials and URIs of the primary and the read Service
/// (`NAME-connection`, see [`crate::desired::connection`]).
pub fn connection_secret_name(instance: &str) -> String {
    format!("{instance}-connection")
}

/// The pod of the instance's StatefulSet with this ordinal.
pub fn pod_name(instance: &str, ordinal: impl std::fmt::Display) -> String {
    format!("{instance}-{ordinal}")
}

/// The data claim of the pod with this ordinal (from the claim template).
pub fn claim_name(instance: &str, ordinal: impl std::fmt::Display) -> String {
    format!("{DATA_VOLUME}-{instance}-{ordinal}")
}

/// The name of the instance a Secret named `name` would belong to, if it is named like `NAME-auth` or
/// `NAME-acl`: a foreign Secret in that place blocks the instance, and its removal must reconcile it.
pub fn instance_named_by(name: &str) -> Option<&str> {
    ["-auth", "-acl"]
        .into_iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .filter(|instance| !instance.is_empty())
}

/// The directory (an emptyDir shared by the Redis and exporter containers only) holding Redis' Unix socket.
pub const SOCKET_DIR: &str = "/run/redis-socket";
/// Redis' Unix socket, the one address the exporter scrapes.
pub const REDIS_SOCKET: &str = "/run/redis-socket/redis.sock";
/// [`REDIS_SOCKET`] as the exporter names it (`REDIS_ADDR`, and the key of its password file).
pub const REDIS_SOCKET_ADDR: &str = "unix:///run/redis-socket/redis.sock";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selector_is_the_managed_by_label() {
        assert_eq!(MANAGED_SELECTOR, format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    }

    #[test]
    fn the_operator_keys_are_under_its_prefix() {
        for key in [
            FINALIZER,
            ROLE_LABEL,
            CONFIG_HASH_ANNOTATION,
            SETTINGS_HASH_ANNOTATION,
            AUTH_ANNOTATION,
            TLS_ANNOTATION,
            REPLACE_ANNOTATION,
            SWITCHOVER_ANNOTATION,
            BOOTSTRAP_PRIMARY_ANNOTATION,
            PRIMARY_EPOCH_ANNOTATION,
            SCHEDULED_FOR_ANNOTATION,
        ] {
            assert!(key.starts_with(RESERVED_PREFIX), "{key}");
        }
    }

    #[test]
    fn secret_names_lead_back_to_their_instance() {
        for instance in ["cache", "a-b"] {
            assert_eq!(
                instance_named_by(&generated_secret_name(instance)),
                Some(instance)
            );
            assert_eq!(
                instance_named_by(&users_secret_name(instance)),
                Some(instance)
            );
        }
        assert_eq!(instance_named_by("-auth"), None);
        assert_eq!(instance_named_by("cache-tls"), None);
        assert_eq!(instance_named_by(&config_map_name("cache")), None);
        assert_eq!(claim_name("cache", 2), "data-cache-2");
        assert_eq!(pod_name("cache", 0), "cache-0");
    }
}
