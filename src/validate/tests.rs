//! Tests of `validate`.

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
        "redis-operator.github.io/role",
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
        .insert("redis-operator.github.io/config-hash".into(), "0".into());
    spec.service
        .annotations
        .insert("redis-operator.github.io/settings-hash".into(), "0".into());
    assert_eq!(
        fields(&spec),
        [
            "spec.podMetadata.annotations.redis-operator.github.io/config-hash",
            "spec.service.annotations.redis-operator.github.io/settings-hash"
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

#[test]
fn a_valkey_image_refuses_the_redis_directives_valkey_lacks_and_valkeys_own_managed_names() {
    let mut spec = valid();
    spec.config.insert("dynamic-hz".into(), "yes".into());
    spec.config.insert("hz".into(), "20".into());
    assert!(fields(&spec).is_empty(), "Redis has dynamic-hz");
    spec.image = "valkey/valkey:9".into();
    let errors = validate(&spec);
    assert_eq!(fields(&spec), ["spec.config.dynamic-hz"]);
    assert!(
        errors[0].problem.contains("Valkey does not have"),
        "{errors:?}"
    );
    for key in [
        "primaryauth",
        "primaryuser",
        "tls-auth-clients-user",
        "unixsocketgroup",
        "rdma-port",
    ] {
        let mut spec = valid();
        spec.config.insert(key.into(), "x".into());
        assert_eq!(fields(&spec), [format!("spec.config.{key}")], "{key}");
    }
}
