//! Tests of `api`.

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

/// Likewise `crds/redisbackup.yaml`: `cargo run -- crd --backup > crds/redisbackup.yaml`.
#[test]
fn committed_backup_crd_is_current() {
    const BACKUP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/redisbackup.yaml");
    let generated = backup_crd_yaml();
    if std::env::var_os("REDIS_OPERATOR_BLESS").is_some() {
        std::fs::write(BACKUP, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(BACKUP).unwrap_or_default();
    assert!(
        committed == generated,
        "crds/redisbackup.yaml is stale: run `cargo run -- crd --backup > crds/redisbackup.yaml`"
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
    assert!(config.iter().any(
        |(rule, message)| rule.contains("j.lowerAscii() == k.lowerAscii()")
            && message.contains(admission::DUPLICATE_DIRECTIVE)
    ));
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
        "apiVersion": "redis-operator.github.io/v1beta1",
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
