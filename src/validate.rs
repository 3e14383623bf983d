//! Validation of a spec before anything is touched. The CRD schema catches what it can; this catches the
//! rest (and everything again, for objects written before the schema was tightened).

use crate::api::RedisInstanceSpec;
use crate::quantity::Quantity;
use crate::redis_conf::OWNED_DIRECTIVES;

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

/// Checks a spec; returns every problem found (empty when the spec is valid).
pub fn validate(spec: &RedisInstanceSpec) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if spec.replicas < 0 {
        errors.push(SpecError::new(
            "spec.replicas",
            format!("must be 0 or more, got {}", spec.replicas),
        ));
    }
    if spec.image.trim().is_empty() {
        errors.push(SpecError::new("spec.image", "must not be empty"));
    } else if spec
        .image
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        errors.push(SpecError::new(
            "spec.image",
            format!("{:?} must not contain whitespace", spec.image),
        ));
    }
    if let Some(resources) = &spec.resources {
        let lists = [
            ("limits", &resources.limits),
            ("requests", &resources.requests),
        ];
        for (list, values) in lists {
            for (name, value) in values.iter().flatten() {
                let field = format!("spec.resources.{list}.{name}");
                check_quantity(&field, &value.0, false, &mut errors);
            }
        }
    }
    if let Some(storage) = &spec.storage {
        check_quantity("spec.storage.size", &storage.size, true, &mut errors);
        if let Some(class) = &storage.storage_class_name {
            if !is_dns_subdomain(class) {
                errors.push(SpecError::new(
                    "spec.storage.storageClassName",
                    format!("{class:?} is not a valid StorageClass name"),
                ));
            }
        }
    }
    for (key, value) in &spec.config {
        let field = format!("spec.config.{key}");
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errors.push(SpecError::new(
                field,
                "directive names may only contain letters, digits, '-' and '_'",
            ));
            continue;
        }
        if OWNED_DIRECTIVES.contains(&key.to_ascii_lowercase().as_str()) {
            errors.push(SpecError::new(
                field.clone(),
                "is set by the operator and cannot be overridden",
            ));
        }
        if value.chars().any(char::is_control) {
            errors.push(SpecError::new(
                field,
                "value must not contain newlines or other control characters",
            ));
        }
    }
    errors
}

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

    use super::*;
    use crate::api::{ClaimDeletePolicy, StorageSpec};

    fn valid() -> RedisInstanceSpec {
        RedisInstanceSpec {
            image: "redis:7.2".into(),
            replicas: 1,
            resources: None,
            storage: None,
            config: BTreeMap::new(),
            replication: Default::default(),
        }
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
            "spec.replicas: must be 0 or more, got -1"
        );
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
}
