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
    if redis_fsm::image_server(&spec.image).0 == redis_fsm::ServerName::Valkey {
        for key in spec.config.keys() {
            if let Some(why) = crate::api::directives::valkey_lacks(key) {
                errors.push(SpecError::new(format!("spec.config.{key}"), why));
            }
        }
    }
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
mod tests;
