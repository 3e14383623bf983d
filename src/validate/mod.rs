//! Validation of a spec before anything is touched. The CRD schema catches what it can; this catches the
//! rest (and everything again, for objects written before the schema was tightened).

use std::collections::BTreeMap;

use crate::api::admission::{
    self, BAD_DIRECTIVE_NAME, BAD_STORAGE_CLASS, DUPLICATE_DIRECTIVE, MAX_CONFIG_ENTRIES,
    MAX_CONFIG_VALUE_LEN, MAX_DIRECTIVE_LEN, MAX_IMAGE_LEN, MAX_REPLICAS,
};
use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration, WeightedPodAffinityTerm};

use crate::api::directives::refusal;
use crate::api::quantity::Quantity;
use crate::api::{ExporterSpec, RedisInstanceSpec, SchedulingSpec, MAX_METADATA_ENTRIES};
use crate::desired::placement::{reserved_annotation, reserved_label};

/// One reason a spec cannot be applied, naming the offending field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct SpecError {
    /// JSON path of the field, e.g. `spec.config.port`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl SpecError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Checks a spec; returns every problem found (empty when the spec is valid). It refuses what the CRD's
/// admission rules ([`crate::api::admission`]) refuse, and more (resource quantities, which the CRD schema takes
/// from Kubernetes as it is).
pub fn validate(spec: &RedisInstanceSpec) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if !(0..=MAX_REPLICAS).contains(&spec.replicas) {
        errors.push(SpecError::new(
            "spec.replicas",
            format!("must be 0 to {MAX_REPLICAS}, got {}", spec.replicas),
        ));
    }
    check_image("spec.image", &spec.image, &mut errors);
    if let Some(resources) = &spec.resources {
        check_resources("spec.resources", resources, &mut errors);
    }
    let replication = &spec.replication;
    let bounded = [
        (
            "failoverDelaySeconds",
            Some(replication.failover_delay_seconds),
            3600,
        ),
        ("minReplicasToWrite", replication.min_replicas_to_write, 100),
        ("minReplicasMaxLag", replication.min_replicas_max_lag, 3600),
    ];
    for (field, value, max) in bounded {
        if let Some(value) = value.filter(|v| !(0..=max).contains(v)) {
            errors.push(SpecError::new(
                format!("spec.replication.{field}"),
                format!("must be 0 to {max}, got {value}"),
            ));
        }
    }
    if let Some(storage) = &spec.storage {
        check_quantity("spec.storage.size", &storage.size, true, &mut errors);
        if let Some(class) = &storage.storage_class_name {
            if !is_dns_subdomain(class) {
                // Same wording as the CRD's admission rule.
                errors.push(SpecError::new(
                    "spec.storage.storageClassName",
                    format!("{class:?} {BAD_STORAGE_CLASS}"),
                ));
            }
        }
    }
    check_config(&spec.config, &mut errors);
    check_scheduling(&spec.scheduling, &mut errors);
    check_metadata(spec, &mut errors);
    check_exporter(&spec.monitoring.exporter, &mut errors);
    if let Some(problem) = crate::auth::rules_problem(&spec.auth.default_user_rules) {
        errors.push(SpecError::new("spec.auth.defaultUserRules", problem));
    }
    if !spec.auth.enabled && spec.service.external() && !spec.service.expose_without_auth {
        errors.push(SpecError::new(
            "spec.service",
            admission::UNAUTHENTICATED_EXTERNAL,
        ));
    }
    if let Some(secret) = &spec.auth.secret_ref {
        if !is_dns_subdomain(&secret.name) {
            errors.push(SpecError::new(
                "spec.auth.secretRef.name",
                format!("{:?} is not a valid Secret name", secret.name),
            ));
        }
    }
    errors
}

/// Container resource requests and limits: known names, valid quantities, no request above its limit.
fn check_resources(prefix: &str, resources: &ResourceRequirements, errors: &mut Vec<SpecError>) {
    let lists = [
        ("limits", &resources.limits),
        ("requests", &resources.requests),
    ];
    for (list, values) in lists {
        for (name, value) in values.iter().flatten() {
            let field = format!("{prefix}.{list}.{name}");
            if !is_resource_name(name) {
                errors.push(SpecError::new(
                    field.clone(),
                    "is not a resource Kubernetes knows: use cpu, memory, ephemeral-storage, \
                     hugepages-<size> or a domain-qualified extended resource (example.com/name)",
                ));
            }
            check_quantity(&field, &value.0, false, errors);
        }
    }
    // The API server refuses a pod whose request exceeds its limit; say so before a pod is ever tried.
    for (name, request) in resources.requests.iter().flatten() {
        let limit = resources.limits.as_ref().and_then(|l| l.get(name));
        let (Some(limit), Ok(request_q)) = (limit, request.0.parse::<Quantity>()) else {
            continue;
        };
        if limit
            .0
            .parse::<Quantity>()
            .is_ok_and(|l| request_q.canonical() > l.canonical())
        {
            errors.push(SpecError::new(
                format!("{prefix}.requests.{name}"),
                format!("{} must not exceed the limit {}", request.0, limit.0),
            ));
        }
    }
}

/// An image reference: one word, not empty, bounded.
fn check_image(field: &str, image: &str, errors: &mut Vec<SpecError>) {
    if image.trim().is_empty() {
        errors.push(SpecError::new(field, "must not be empty"));
    } else if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        errors.push(SpecError::new(
            field,
            format!("{image:?} must not contain whitespace"),
        ));
    } else if image.len() > MAX_IMAGE_LEN {
        errors.push(SpecError::new(
            field,
            format!("must be at most {MAX_IMAGE_LEN} characters"),
        ));
    }
}

/// The scheduling fields, checked for what the API server would refuse in the pod template (the CRD admits
/// them as free-form objects).
fn check_scheduling(scheduling: &SchedulingSpec, errors: &mut Vec<SpecError>) {
    let too_many = |field: &str, count: usize, errors: &mut Vec<SpecError>| {
        if count > MAX_METADATA_ENTRIES {
            errors.push(SpecError::new(
                field,
                format!("has {count} entries, at most {MAX_METADATA_ENTRIES} are allowed"),
            ));
        }
    };
    too_many("spec.tolerations", scheduling.tolerations.len(), errors);
    for (i, toleration) in scheduling.tolerations.iter().enumerate() {
        check_toleration(&format!("spec.tolerations[{i}]"), toleration, errors);
    }
    too_many("spec.nodeSelector", scheduling.node_selector.len(), errors);
    for (key, value) in &scheduling.node_selector {
        check_label(&format!("spec.nodeSelector.{key}"), key, value, errors);
    }
    let spreads = &scheduling.topology_spread_constraints;
    too_many("spec.topologySpreadConstraints", spreads.len(), errors);
    for (i, spread) in spreads.iter().enumerate() {
        let field = format!("spec.topologySpreadConstraints[{i}]");
        if spread.max_skew < 1 {
            errors.push(SpecError::new(
                format!("{field}.maxSkew"),
                format!("must be at least 1, got {}", spread.max_skew),
            ));
        }
        if !is_qualified_name(&spread.topology_key) {
            errors.push(SpecError::new(
                format!("{field}.topologyKey"),
                "must be a node label name, e.g. topology.kubernetes.io/zone",
            ));
        }
        let when = spread.when_unsatisfiable.as_str();
        if !matches!(when, "DoNotSchedule" | "ScheduleAnyway") {
            errors.push(SpecError::new(
                format!("{field}.whenUnsatisfiable"),
                format!("must be DoNotSchedule or ScheduleAnyway, got {when:?}"),
            ));
        }
        if let Some(min) = spread.min_domains {
            if min < 1 || when != "DoNotSchedule" {
                errors.push(SpecError::new(
                    format!("{field}.minDomains"),
                    "must be at least 1, and only with whenUnsatisfiable: DoNotSchedule",
                ));
            }
        }
    }
    if let Some(affinity) = &scheduling.affinity {
        let node = affinity.node_affinity.as_ref().and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        });
        let pod = affinity.pod_affinity.as_ref().and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        });
        let anti = affinity.pod_anti_affinity.as_ref().and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        });
        let pod_weights = |terms: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<i32> {
            terms.into_iter().flatten().map(|t| t.weight).collect()
        };
        let weights = [
            (
                "nodeAffinity",
                node.into_iter().flatten().map(|t| t.weight).collect(),
            ),
            ("podAffinity", pod_weights(pod)),
            ("podAntiAffinity", pod_weights(anti)),
        ]
        .into_iter()
        .flat_map(|(kind, weights): (&str, Vec<i32>)| weights.into_iter().map(move |w| (kind, w)));
        for (kind, weight) in weights {
            if !(1..=100).contains(&weight) {
                errors.push(SpecError::new(
                    format!("spec.affinity.{kind}"),
                    format!("preferred term weights must be 1 to 100, got {weight}"),
                ));
            }
        }
    }
    if let Some(class) = &scheduling.priority_class_name {
        if !is_dns_subdomain(class) {
            errors.push(SpecError::new(
                "spec.priorityClassName",
                format!("{class:?} is not a valid PriorityClass name (a lowercase DNS subdomain)"),
            ));
        } else if class.starts_with(admission::SYSTEM_PRIORITY_PREFIX) {
            errors.push(SpecError::new(
                "spec.priorityClassName",
                admission::SYSTEM_PRIORITY_CLASS,
            ));
        }
    }
}

fn check_toleration(field: &str, toleration: &Toleration, errors: &mut Vec<SpecError>) {
    let key = toleration.key.as_deref().unwrap_or_default();
    let value = toleration.value.as_deref().unwrap_or_default();
    if !key.is_empty() && !is_qualified_name(key) {
        errors.push(SpecError::new(
            format!("{field}.key"),
            format!("{key:?} is not a valid taint key"),
        ));
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Equal" if key.is_empty() => errors.push(SpecError::new(
            format!("{field}.operator"),
            "must be Exists when the key is empty",
        )),
        "Exists" if !value.is_empty() => errors.push(SpecError::new(
            format!("{field}.value"),
            "must be empty when the operator is Exists",
        )),
        "Equal" | "Exists" => {}
        other => errors.push(SpecError::new(
            format!("{field}.operator"),
            format!("must be Equal or Exists, got {other:?}"),
        )),
    }
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        errors.push(SpecError::new(
            format!("{field}.effect"),
            format!("must be NoSchedule, PreferNoSchedule or NoExecute, got {effect:?}"),
        ));
    }
    if toleration.toleration_seconds.is_some() && effect != "NoExecute" {
        errors.push(SpecError::new(
            format!("{field}.tolerationSeconds"),
            "is only valid with effect NoExecute",
        ));
    }
}

/// The user's pod labels and annotations and Service annotations: valid keys and values, and never one of
/// the operator's own keys.
fn check_metadata(spec: &RedisInstanceSpec, errors: &mut Vec<SpecError>) {
    let pod = &spec.pod_metadata;
    let service = &spec.service;
    let maps = [
        ("spec.podMetadata.labels", Some(&pod.labels)),
        ("spec.podMetadata.annotations", Some(&pod.annotations)),
        ("spec.service.annotations", Some(&service.annotations)),
        (
            "spec.service.replicas.annotations",
            service
                .replicas
                .as_ref()
                .and_then(|r| r.annotations.as_ref()),
        ),
    ];
    for (field, map) in maps {
        let Some(map) = map else { continue };
        if map.len() > MAX_METADATA_ENTRIES {
            errors.push(SpecError::new(
                field,
                format!(
                    "has {} entries, at most {MAX_METADATA_ENTRIES} are allowed",
                    map.len()
                ),
            ));
        }
        let labels = field.ends_with("labels");
        for (key, value) in map {
            let entry = format!("{field}.{key}");
            let reserved = if labels {
                reserved_label(key)
            } else {
                reserved_annotation(key)
            };
            if let Some(why) = reserved {
                errors.push(SpecError::new(entry, why));
            } else if labels {
                check_label(&entry, key, value, errors);
            } else if !is_qualified_name(key) {
                errors.push(SpecError::new(entry, NOT_A_KEY));
            }
        }
    }
}

/// Message for a label or annotation key Kubernetes would refuse.
const NOT_A_KEY: &str = "is not a valid key: an optional DNS-subdomain prefix and '/', then at most 63 \
                         letters, digits, '-', '_' or '.', starting and ending with a letter or digit";

/// A label (or node selector entry): a qualified key and a value of at most 63 such characters.
fn check_label(field: &str, key: &str, value: &str, errors: &mut Vec<SpecError>) {
    if !is_qualified_name(key) {
        errors.push(SpecError::new(field, NOT_A_KEY));
    }
    if !value.is_empty() && !is_name_part(value) {
        errors.push(SpecError::new(
            field,
            format!(
                "value {value:?} is not a valid label value: at most 63 letters, digits, '-', '_' \
                 or '.', starting and ending with a letter or digit"
            ),
        ));
    }
}

fn check_exporter(exporter: &ExporterSpec, errors: &mut Vec<SpecError>) {
    check_image("spec.monitoring.exporter.image", &exporter.image, errors);
    if let Some(resources) = &exporter.resources {
        check_resources("spec.monitoring.exporter.resources", resources, errors);
    }
}

/// A Kubernetes qualified name (label, annotation or taint key): `[prefix/]name`.
fn is_qualified_name(key: &str) -> bool {
    match key.rsplit_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_name_part(name),
        None => is_name_part(key),
    }
}

/// The name part of a qualified name, or a label value: 1 to 63 of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
fn is_name_part(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn check_config(config: &BTreeMap<String, String>, errors: &mut Vec<SpecError>) {
    if config.len() > MAX_CONFIG_ENTRIES {
        errors.push(SpecError::new(
            "spec.config",
            format!(
                "has {} directives, at most {MAX_CONFIG_ENTRIES} are allowed",
                config.len()
            ),
        ));
    }
    // Directive names are case-insensitive in Redis: `maxmemory` and `MaxMemory` are the same directive,
    // and the rendered file would silently keep whichever sorts last.
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (key, value) in config {
        let field = format!("spec.config.{key}");
        if key.is_empty()
            || key.len() > MAX_DIRECTIVE_LEN
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errors.push(SpecError::new(
                field,
                format!("{BAD_DIRECTIVE_NAME}, at most {MAX_DIRECTIVE_LEN} characters"),
            ));
            continue;
        }
        if let Some(why) = refusal(key) {
            errors.push(SpecError::new(field.clone(), why));
        }
        if let Some(first) = seen.insert(key.to_ascii_lowercase(), key) {
            errors.push(SpecError::new(
                field.clone(),
                format!("{DUPLICATE_DIRECTIVE} ({first})"),
            ));
        }
        if value.chars().any(char::is_control) {
            errors.push(SpecError::new(
                field,
                "value must not contain newlines or other control characters",
            ));
        } else if value.len() > MAX_CONFIG_VALUE_LEN {
            errors.push(SpecError::new(
                field,
                format!("value must be at most {MAX_CONFIG_VALUE_LEN} characters"),
            ));
        }
    }
}

/// A quantity must parse (which refuses values the API server would cap, as too large) and not be negative;
/// a storage size must also be above zero.
fn check_quantity(field: &str, value: &str, positive: bool, errors: &mut Vec<SpecError>) {
    match value.parse::<Quantity>() {
        Err(e) => errors.push(SpecError::new(field, e.to_string())),
        Ok(q) if q.is_negative() => errors.push(SpecError::new(field, "must not be negative")),
        Ok(q) if positive && q.nanos() == 0 => {
            errors.push(SpecError::new(field, "must be greater than zero"))
        }
        Ok(_) => {}
    }
}

/// A container resource name the API server accepts: a standard one, or an extended resource qualified by a
/// domain (`example.com/gpu`).
fn is_resource_name(name: &str) -> bool {
    match name.split_once('/') {
        None => {
            matches!(name, "cpu" | "memory" | "ephemeral-storage")
                || name
                    .strip_prefix("hugepages-")
                    .is_some_and(|size| size.parse::<Quantity>().is_ok())
        }
        Some((domain, resource)) => {
            is_dns_subdomain(domain)
                && domain.contains('.')
                && !resource.is_empty()
                && resource.len() <= 63
                && resource
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        }
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

    use proptest::prelude::*;

    use super::*;
    use crate::api::{ClaimDeletePolicy, StorageSpec};
    use crate::desired::redis_conf::render;

    fn valid() -> RedisInstanceSpec {
        RedisInstanceSpec {
            image: "redis:7.2".into(),
            replicas: 1,
            resources: None,
            storage: None,
            config: BTreeMap::new(),
            replication: Default::default(),
            ..Default::default()
        }
    }

    #[test]
    fn replication_knobs_out_of_bounds_are_refused() {
        let mut spec = valid();
        spec.replication.failover_delay_seconds = -1;
        spec.replication.min_replicas_to_write = Some(101);
        spec.replication.min_replicas_max_lag = Some(3600);
        assert_eq!(
            fields(&spec),
            [
                "spec.replication.failoverDelaySeconds",
                "spec.replication.minReplicasToWrite"
            ]
        );
    }

    #[test]
    fn replication_directives_are_refused_in_config() {
        for key in [
            "replicaof",
            "SLAVEOF",
            "replica-announce-ip",
            "min-replicas-to-write",
            "masterauth",
        ] {
            let mut spec = valid();
            spec.config.insert(key.into(), "x".into());
            assert_eq!(fields(&spec), [format!("spec.config.{key}")], "{key}");
        }
    }

    fn fields(spec: &RedisInstanceSpec) -> Vec<String> {
        validate(spec).into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn operator_labels_cannot_be_overridden() {
        for key in [
            "app.kubernetes.io/instance",
            "app.kubernetes.io/name",
            "app.kubernetes.io/managed-by",
            "redis.github.com/role",
        ] {
            let mut spec = valid();
            spec.pod_metadata.labels.insert(key.into(), "x".into());
            let errors = validate(&spec);
            assert_eq!(errors.len(), 1, "{key}: {errors:?}");
            assert_eq!(errors[0].field, format!("spec.podMetadata.labels.{key}"));
            assert!(
                errors[0].problem.contains("cannot be overridden"),
                "{errors:?}"
            );
        }
        let mut spec = valid();
        spec.pod_metadata
            .annotations
            .insert("redis.github.com/config-hash".into(), "0".into());
        spec.service
            .annotations
            .insert("redis.github.com/settings-hash".into(), "0".into());
        assert_eq!(
            fields(&spec),
            [
                "spec.podMetadata.annotations.redis.github.com/config-hash",
                "spec.service.annotations.redis.github.com/settings-hash"
            ]
        );
    }

    #[test]
    fn metadata_keys_and_values_must_be_valid() {
        let mut spec = valid();
        spec.pod_metadata.labels = [
            ("team".to_string(), "cache".to_string()),
            ("example.com/tier".to_string(), String::new()),
            ("bad key".to_string(), "x".to_string()),
            ("long".to_string(), "v".repeat(64)),
        ]
        .into();
        spec.service.annotations = [
            (
                "service.beta.kubernetes.io/aws-load-balancer-internal".to_string(),
                "true".to_string(),
            ),
            ("-bad".to_string(), "x".to_string()),
        ]
        .into();
        assert_eq!(
            fields(&spec),
            [
                "spec.podMetadata.labels.bad key",
                "spec.podMetadata.labels.long",
                "spec.service.annotations.-bad"
            ]
        );
    }

    #[test]
    fn scheduling_fields_are_checked() {
        use k8s_openapi::api::core::v1::{
            Affinity, PodAffinityTerm, PodAntiAffinity, TopologySpreadConstraint,
        };
        let mut spec = valid();
        let toleration = |key: &str, operator: &str, value: &str, effect: &str| Toleration {
            key: Some(key.into()).filter(|k: &String| !k.is_empty()),
            operator: Some(operator.into()),
            value: Some(value.into()).filter(|v: &String| !v.is_empty()),
            effect: Some(effect.into()).filter(|e: &String| !e.is_empty()),
            ..Default::default()
        };
        spec.scheduling.tolerations = vec![
            toleration("dedicated", "Equal", "redis", "NoSchedule"),
            toleration("", "Exists", "", ""),
            toleration("", "Equal", "x", ""),
            toleration("k", "Exists", "x", ""),
            toleration("k", "Like", "", "Sometimes"),
        ];
        spec.scheduling.node_selector = [("disk".to_string(), "ssd".to_string())].into();
        spec.scheduling.topology_spread_constraints = vec![
            TopologySpreadConstraint {
                max_skew: 1,
                topology_key: "topology.kubernetes.io/zone".into(),
                when_unsatisfiable: "DoNotSchedule".into(),
                ..Default::default()
            },
            TopologySpreadConstraint {
                max_skew: 0,
                topology_key: String::new(),
                when_unsatisfiable: "Never".into(),
                ..Default::default()
            },
        ];
        spec.scheduling.affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 101,
                        pod_affinity_term: PodAffinityTerm::default(),
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        });
        spec.scheduling.priority_class_name = Some("Not_A_Name".into());
        assert_eq!(
            fields(&spec),
            [
                "spec.tolerations[2].operator",
                "spec.tolerations[3].value",
                "spec.tolerations[4].operator",
                "spec.tolerations[4].effect",
                "spec.topologySpreadConstraints[1].maxSkew",
                "spec.topologySpreadConstraints[1].topologyKey",
                "spec.topologySpreadConstraints[1].whenUnsatisfiable",
                "spec.affinity.podAntiAffinity",
                "spec.priorityClassName",
            ]
        );
    }

    #[test]
    fn an_unauthenticated_instance_outside_the_cluster_needs_the_acknowledgement() {
        use crate::api::{ReplicasServiceExposure, ServiceType};
        let mut spec = valid();
        spec.auth.enabled = false;
        assert!(validate(&spec).is_empty(), "ClusterIP only");
        spec.service.replicas = Some(ReplicasServiceExposure {
            type_: Some(ServiceType::NodePort),
            annotations: None,
        });
        assert_eq!(fields(&spec), ["spec.service"]);
        spec.service.replicas = None;
        spec.service.type_ = ServiceType::LoadBalancer;
        assert_eq!(fields(&spec), ["spec.service"]);
        spec.service.expose_without_auth = true;
        assert!(validate(&spec).is_empty(), "acknowledged");
        spec.service.expose_without_auth = false;
        spec.auth.enabled = true;
        assert!(validate(&spec).is_empty(), "authenticated");
    }

    #[test]
    fn system_priority_classes_are_refused_and_others_pass() {
        for class in [
            "system-cluster-critical",
            "system-node-critical",
            "system-anything",
        ] {
            let mut spec = valid();
            spec.scheduling.priority_class_name = Some(class.into());
            let errors = validate(&spec);
            assert_eq!(fields(&spec), ["spec.priorityClassName"], "{class}");
            assert!(
                errors[0].to_string().contains("system-"),
                "{class}: {}",
                errors[0]
            );
        }
        let mut spec = valid();
        spec.scheduling.priority_class_name = Some("team-high".into());
        assert!(validate(&spec).is_empty());
    }

    #[test]
    fn exporter_image_and_resources_are_checked() {
        let mut spec = valid();
        spec.monitoring.exporter.enabled = true;
        spec.monitoring.exporter.image = "two words".into();
        spec.monitoring.exporter.resources = Some(ResourceRequirements {
            requests: Some([("memory".to_string(), K8sQuantity("lots".into()))].into()),
            ..Default::default()
        });
        assert_eq!(
            fields(&spec),
            [
                "spec.monitoring.exporter.image",
                "spec.monitoring.exporter.resources.requests.memory"
            ]
        );
    }

    #[test]
    fn a_valid_spec_has_no_errors() {
        let mut spec = valid();
        spec.config.insert("maxmemory".into(), "100mb".into());
        spec.config.insert("save".into(), "900 1 300 10".into());
        spec.storage = Some(StorageSpec {
            size: "1Gi".into(),
            storage_class_name: Some("fast.example-1".into()),
            when_deleted: ClaimDeletePolicy::Retain,
        });
        assert_eq!(validate(&spec), vec![]);
    }

    #[test]
    fn negative_replicas_and_empty_image() {
        let mut spec = valid();
        spec.replicas = -1;
        spec.image = " ".into();
        assert_eq!(fields(&spec), ["spec.replicas", "spec.image"]);
        assert_eq!(
            validate(&spec)[0].to_string(),
            "spec.replicas: must be 0 to 100, got -1"
        );
    }

    #[test]
    fn replicas_are_bounded() {
        for (replicas, ok) in [
            (0, true),
            (MAX_REPLICAS, true),
            (MAX_REPLICAS + 1, false),
            (i32::MAX, false),
        ] {
            let mut spec = valid();
            spec.replicas = replicas;
            assert_eq!(validate(&spec).is_empty(), ok, "{replicas}");
        }
    }

    #[test]
    fn dangerous_and_managed_directives_are_refused_in_any_case() {
        for key in [
            "enable-protected-configs",
            "ENABLE-DEBUG-COMMAND",
            "Enable-Module-Command",
            "loadmodule",
            "unixsocket",
            "unixsocketperm",
            "rename-command",
            "protected-mode",
            "ReplicaOf",
            "slaveof",
            "replica-announce-ip",
            "replica-announce-port",
            "slave-announce-ip",
            "slave-announce-port",
            "masterauth",
            "masteruser",
            "RequirePass",
            "aclfile",
            "user",
        ] {
            let mut spec = valid();
            spec.config.insert(key.into(), "x".into());
            let errors = validate(&spec);
            assert_eq!(errors.len(), 1, "{key}: {errors:?}");
            assert_eq!(errors[0].field, format!("spec.config.{key}"));
            assert_eq!(Some(errors[0].problem.as_str()), refusal(key));
        }
    }

    /// `maxmemory` and `MaxMemory` are one directive: the rendered file kept only one of them, silently.
    #[test]
    fn keys_differing_only_in_case_are_refused() {
        let mut spec = valid();
        spec.config.insert("maxmemory".into(), "1mb".into());
        spec.config.insert("MaxMemory".into(), "2mb".into());
        let errors = validate(&spec);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "spec.config.maxmemory");
        assert!(errors[0].problem.contains("(MaxMemory)"), "{}", errors[0]);
    }

    /// `save ""` is how Redis turns snapshots off.
    #[test]
    fn an_empty_value_is_valid() {
        let mut spec = valid();
        spec.config.insert("save".into(), String::new());
        assert_eq!(validate(&spec), vec![]);
    }

    #[test]
    fn resource_names_and_requests_above_limits_are_refused() {
        let resources = |requests: &[(&str, &str)], limits: &[(&str, &str)]| {
            let list = |pairs: &[(&str, &str)]| {
                Some(
                    pairs
                        .iter()
                        .map(|(k, v)| (k.to_string(), K8sQuantity(v.to_string())))
                        .collect(),
                )
            };
            let mut spec = valid();
            spec.resources = Some(ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
                ..Default::default()
            });
            spec
        };
        let ok = resources(
            &[("cpu", "100m"), ("memory", "1Gi"), ("example.com/gpu", "1")],
            &[("cpu", "0.1"), ("memory", "1024Mi"), ("hugepages-2Mi", "0")],
        );
        assert_eq!(validate(&ok), vec![]);
        let above = resources(&[("memory", "2Gi")], &[("memory", "1Gi")]);
        assert_eq!(
            validate(&above)[0].to_string(),
            "spec.resources.requests.memory: 2Gi must not exceed the limit 1Gi"
        );
        for bad in ["cpus", "Memory", "gpu/", "nodomain/gpu", "hugepages-lots"] {
            let spec = resources(&[(bad, "1")], &[]);
            assert_eq!(
                fields(&spec),
                [format!("spec.resources.requests.{bad}")],
                "{bad}"
            );
        }
    }

    #[test]
    fn config_size_limits() {
        let mut spec = valid();
        spec.config = (0..=MAX_CONFIG_ENTRIES)
            .map(|i| (format!("directive-{i}"), "1".to_string()))
            .collect();
        assert_eq!(fields(&spec), ["spec.config"]);
        let mut spec = valid();
        spec.config
            .insert("x".repeat(MAX_DIRECTIVE_LEN + 1), "1".into());
        spec.config
            .insert("maxmemory".into(), "1".repeat(MAX_CONFIG_VALUE_LEN + 1));
        assert_eq!(validate(&spec).len(), 2);
    }

    /// The API server caps quantities at 2^63-1: `8Ei` would silently become a different size.
    #[test]
    fn quantities_the_api_server_cannot_hold_are_too_large() {
        let mut spec = valid();
        spec.storage = Some(StorageSpec {
            size: "8Ei".into(),
            storage_class_name: None,
            when_deleted: ClaimDeletePolicy::Retain,
        });
        spec.resources = Some(ResourceRequirements {
            requests: Some([("memory".to_string(), K8sQuantity("1e40".into()))].into()),
            ..Default::default()
        });
        let errors = validate(&spec);
        assert_eq!(
            errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
            ["spec.resources.requests.memory", "spec.storage.size"]
        );
        for error in errors {
            assert!(error.problem.contains("is too large"), "{error}");
        }
    }

    #[test]
    fn unparsable_quantities() {
        let mut spec = valid();
        spec.resources = Some(ResourceRequirements {
            limits: Some([("memory".to_string(), K8sQuantity("lots".into()))].into()),
            ..Default::default()
        });
        spec.storage = Some(StorageSpec {
            size: "0".into(),
            storage_class_name: Some("Bad_Class".into()),
            when_deleted: ClaimDeletePolicy::Delete,
        });
        assert_eq!(
            fields(&spec),
            [
                "spec.resources.limits.memory",
                "spec.storage.size",
                "spec.storage.storageClassName"
            ]
        );
    }

    #[test]
    fn owned_directives_are_refused_case_insensitively() {
        for key in ["port", "DIR", "bind", "include"] {
            let mut spec = valid();
            spec.config.insert(key.into(), "x".into());
            assert_eq!(fields(&spec), [format!("spec.config.{key}")]);
        }
    }

    #[test]
    fn control_characters_cannot_inject_directives() {
        for value in ["100mb\nport 7000", "a\rb", "x\u{0}", "tab\there"] {
            let mut spec = valid();
            spec.config.insert("maxmemory".into(), value.into());
            let errors = validate(&spec);
            assert_eq!(errors.len(), 1, "{value:?}");
            assert!(errors[0].problem.contains("control characters"));
        }
        let mut spec = valid();
        spec.config.insert("max memory".into(), "1".into());
        assert_eq!(fields(&spec), ["spec.config.max memory"]);
    }

    /// Config maps that are mostly well-formed, with owned keys, case twins, quotes, spaces, and control
    /// characters mixed in.
    fn arbitrary_config() -> impl Strategy<Value = BTreeMap<String, String>> {
        let key = prop_oneof![
            4 => "[a-zA-Z0-9_-]{1,12}",
            1 => Just("PORT".to_string()),
            1 => Just("save".to_string()),
            1 => Just("Save".to_string()),
            1 => ".{0,8}",
        ];
        let value = prop_oneof!["[ -~]{0,12}", ".{0,6}", Just(String::new())];
        proptest::collection::btree_map(key, value, 0..6)
    }

    fn arbitrary_spec() -> impl Strategy<Value = RedisInstanceSpec> {
        let quantity = "[-+]?[0-9.]{0,25}([eE][-+]?[0-9]{0,22}|[numkMGTPE]|[KMGTPE]i)?";
        (
            any::<i32>(),
            prop_oneof![Just("redis:7.2".to_string()), ".{0,10}"],
            proptest::option::of((quantity, proptest::option::of("[a-z.A-Z_-]{0,10}"))),
            proptest::option::of(quantity),
            arbitrary_config(),
        )
            .prop_map(
                |(replicas, image, storage, memory, config)| RedisInstanceSpec {
                    image,
                    replicas,
                    resources: memory.map(|m| ResourceRequirements {
                        limits: Some([("memory".to_string(), K8sQuantity(m))].into()),
                        ..Default::default()
                    }),
                    storage: storage.map(|(size, class)| StorageSpec {
                        size,
                        storage_class_name: class,
                        when_deleted: ClaimDeletePolicy::Retain,
                    }),
                    config,
                    replication: Default::default(),
                    ..Default::default()
                },
            )
    }

    proptest! {
        /// Validation never panics, whatever the spec.
        #[test]
        fn validation_never_panics(spec in arbitrary_spec()) {
            let _ = validate(&spec);
        }

        /// A spec that validates renders one `redis.conf` line per config entry: no value can smuggle in a
        /// second directive, and no user entry duplicates an operator setting.
        #[test]
        fn a_valid_config_renders_one_directive_per_entry(config in arbitrary_config()) {
            let mut spec = valid();
            spec.config = config;
            prop_assume!(validate(&spec).is_empty());
            let rendered = render(&spec.config, &spec.replication);
            let directives: Vec<&str> = rendered
                .lines()
                .filter(|line| !line.starts_with('#'))
                .map(|line| line.split(' ').next().unwrap_or_default())
                .collect();
            let mut lowercase: Vec<String> = directives.iter().map(|d| d.to_ascii_lowercase()).collect();
            lowercase.sort();
            lowercase.dedup();
            prop_assert_eq!(lowercase.len(), directives.len(), "{}", rendered);
            // The operator's own settings (port, dir, daemonize, supervised, logfile, repl-diskless-sync-delay),
            // and the busy-reply threshold unless the user sets it.
            let busy_default = !spec.config.keys().any(|key| {
                key.eq_ignore_ascii_case("lua-time-limit") || key.eq_ignore_ascii_case("busy-reply-threshold")
            });
            prop_assert_eq!(directives.len(), 6 + usize::from(busy_default) + spec.config.len());
        }
    }
}
