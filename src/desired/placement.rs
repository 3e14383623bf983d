//! Pure builders for where the pods run and how the instance is reached: the scheduling fields (with a default
//! soft anti-affinity), the user's pod labels and annotations, and the client Services' type and annotations.
//! [`crate::desired::children`] builds the objects and calls these on them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PodAffinityTerm, PodAntiAffinity, PodSpec, Service, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::api::{RedisInstanceSpec, SchedulingSpec, ServiceExposure};
use crate::desired::metadata::selector_labels;
use crate::desired::redis_conf::config_hash;
use crate::names::{
    INSTANCE_LABEL, MANAGED_BY_LABEL, NAME_LABEL, RESERVED_PREFIX, ROLE_LABEL,
    SETTINGS_HASH_ANNOTATION,
};

/// Node label the default anti-affinity spreads over.
pub const HOSTNAME_TOPOLOGY_KEY: &str = "kubernetes.io/hostname";

/// Weight of the default anti-affinity term: the strongest preference, still only a preference.
const DEFAULT_ANTI_AFFINITY_WEIGHT: i32 = 100;

/// Why a label key may not be set by the user, if it is the operator's.
pub fn reserved_label(key: &str) -> Option<&'static str> {
    if [NAME_LABEL, INSTANCE_LABEL, MANAGED_BY_LABEL, ROLE_LABEL].contains(&key) {
        Some("is set by the operator (its Services and watches select pods by it) and cannot be overridden")
    } else if key.starts_with(RESERVED_PREFIX) {
        Some("uses the prefix redis-operator.github.io/, which the operator keeps for itself")
    } else {
        None
    }
}

/// Why an annotation key may not be set by the user, if it is the operator's.
pub fn reserved_annotation(key: &str) -> Option<&'static str> {
    key.starts_with(RESERVED_PREFIX)
        .then_some("uses the prefix redis-operator.github.io/, which the operator keeps for itself")
}

/// Adds the scheduling fields and the user's pod labels and annotations to the StatefulSet's pod template.
pub fn place_pods(spec: &RedisInstanceSpec, instance: &str, statefulset: &mut StatefulSet) {
    let Some(template) = statefulset.spec.as_mut().map(|s| &mut s.template) else {
        return;
    };
    if let Some(pod) = template.spec.as_mut() {
        schedule(&spec.scheduling, instance, pod);
    }
    let metadata = template.metadata.get_or_insert_with(ObjectMeta::default);
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    for (key, value) in &spec.pod_metadata.labels {
        // Validation refuses the operator's keys; never let one through anyway.
        if reserved_label(key).is_none() {
            labels.insert(key.clone(), value.clone());
        }
    }
    let annotations = metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (key, value) in &spec.pod_metadata.annotations {
        if reserved_annotation(key).is_none() {
            annotations.insert(key.clone(), value.clone());
        }
    }
    let settings = serde_json::json!([spec.scheduling, spec.pod_metadata]);
    annotations.insert(
        SETTINGS_HASH_ANNOTATION.to_string(),
        config_hash(&settings.to_string()),
    );
}

/// Sets the pod's scheduling fields from the spec.
fn schedule(scheduling: &SchedulingSpec, instance: &str, pod: &mut PodSpec) {
    let mut affinity = scheduling.affinity.clone().unwrap_or_default();
    if affinity.pod_anti_affinity.is_none() {
        affinity.pod_anti_affinity = Some(default_anti_affinity(instance));
    }
    pod.affinity = Some(affinity);
    pod.tolerations = Some(scheduling.tolerations.clone()).filter(|t| !t.is_empty());
    pod.node_selector = Some(scheduling.node_selector.clone()).filter(|s| !s.is_empty());
    pod.topology_spread_constraints =
        Some(scheduling.topology_spread_constraints.clone()).filter(|c| !c.is_empty());
    pod.priority_class_name = scheduling.priority_class_name.clone();
}

/// A preferred (soft) anti-affinity between the pods of one instance on the node's hostname: the scheduler
/// spreads them over nodes when it can, and still places them all on a single node when that is all there is.
fn default_anti_affinity(instance: &str) -> PodAntiAffinity {
    PodAntiAffinity {
        preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
            weight: DEFAULT_ANTI_AFFINITY_WEIGHT,
            pod_affinity_term: PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(selector_labels(instance)),
                    ..Default::default()
                }),
                topology_key: HOSTNAME_TOPOLOGY_KEY.into(),
                ..Default::default()
            },
        }]),
        ..Default::default()
    }
}

/// Which client Service is being exposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientService {
    /// `NAME`, read-write.
    Primary,
    /// `NAME-replicas`, read-only.
    Replicas,
}

/// Sets a client Service's type and annotations from `spec.service`; the read-only Service follows the
/// read-write one except where `spec.service.replicas` says otherwise.
pub fn expose(exposure: &ServiceExposure, which: ClientService, service: &mut Service) {
    let overrides = exposure
        .replicas
        .as_ref()
        .filter(|_| which == ClientService::Replicas);
    let type_ = overrides.and_then(|o| o.type_).unwrap_or(exposure.type_);
    let user_annotations = overrides
        .and_then(|o| o.annotations.as_ref())
        .unwrap_or(&exposure.annotations);
    if let Some(spec) = service.spec.as_mut() {
        spec.type_ = Some(type_.as_str().to_string());
    }
    let annotations = service
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    for (key, value) in user_annotations {
        if reserved_annotation(key).is_none() {
            annotations.insert(key.clone(), value.clone());
        }
    }
    let settings = serde_json::json!([type_, user_annotations]);
    annotations.insert(
        SETTINGS_HASH_ANNOTATION.to_string(),
        config_hash(&settings.to_string()),
    );
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, Toleration, TopologySpreadConstraint,
    };

    use super::*;
    use crate::api::{PodMetadataSpec, ReplicasServiceExposure, ServiceType};
    use crate::desired::children::{build, tests::instance};
    use crate::names::CONFIG_HASH_ANNOTATION;

    fn pod_spec(spec: &RedisInstanceSpec) -> PodSpec {
        let mut ri = instance("cache");
        ri.spec = spec.clone();
        build(&ri).statefulset.spec.unwrap().template.spec.unwrap()
    }

    fn template_meta(spec: &RedisInstanceSpec) -> ObjectMeta {
        let mut ri = instance("cache");
        ri.spec = spec.clone();
        build(&ri)
            .statefulset
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
    }

    #[test]
    fn without_settings_the_pods_prefer_distinct_nodes() {
        let pod = pod_spec(&RedisInstanceSpec::default());
        let anti = pod.affinity.unwrap().pod_anti_affinity.unwrap();
        assert!(
            anti.required_during_scheduling_ignored_during_execution
                .is_none(),
            "the default must be soft, or a one-node cluster could not run replicas"
        );
        let terms = anti
            .preferred_during_scheduling_ignored_during_execution
            .unwrap();
        assert_eq!(terms.len(), 1);
        let term = &terms[0].pod_affinity_term;
        assert_eq!(term.topology_key, HOSTNAME_TOPOLOGY_KEY);
        let selector = term.label_selector.clone().unwrap().match_labels.unwrap();
        assert_eq!(selector[INSTANCE_LABEL], "cache");
        assert_eq!(selector[NAME_LABEL], "redis");
        assert!(pod.tolerations.is_none());
        assert!(pod.node_selector.is_none());
        assert!(pod.topology_spread_constraints.is_none());
        assert!(pod.priority_class_name.is_none());
    }

    #[test]
    fn scheduling_fields_reach_the_pod_template() {
        let mut spec = RedisInstanceSpec::default();
        let toleration = Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("redis".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        };
        let spread = TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "topology.kubernetes.io/zone".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            ..Default::default()
        };
        spec.scheduling = SchedulingSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity::default()),
                ..Default::default()
            }),
            tolerations: vec![toleration.clone()],
            node_selector: [("disk".to_string(), "ssd".to_string())].into(),
            topology_spread_constraints: vec![spread.clone()],
            priority_class_name: Some("critical".into()),
        };
        let pod = pod_spec(&spec);
        let affinity = pod.affinity.unwrap();
        assert!(affinity.node_affinity.is_some());
        assert!(
            affinity.pod_anti_affinity.is_some(),
            "a node affinity alone keeps the default anti-affinity"
        );
        assert_eq!(pod.tolerations, Some(vec![toleration]));
        assert_eq!(pod.node_selector.unwrap()["disk"], "ssd");
        assert_eq!(pod.topology_spread_constraints, Some(vec![spread]));
        assert_eq!(pod.priority_class_name.as_deref(), Some("critical"));
    }

    #[test]
    fn a_user_anti_affinity_replaces_the_default() {
        let mut spec = RedisInstanceSpec::default();
        let own = PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                topology_key: HOSTNAME_TOPOLOGY_KEY.into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        spec.scheduling.affinity = Some(Affinity {
            pod_anti_affinity: Some(own.clone()),
            ..Default::default()
        });
        assert_eq!(
            pod_spec(&spec).affinity.unwrap().pod_anti_affinity,
            Some(own)
        );
    }

    #[test]
    fn pod_metadata_is_added_and_operator_keys_stay_the_operators() {
        let pod_metadata = PodMetadataSpec {
            labels: [
                ("team".to_string(), "cache".to_string()),
                (INSTANCE_LABEL.to_string(), "hijack".to_string()),
                (ROLE_LABEL.to_string(), "primary".to_string()),
            ]
            .into(),
            annotations: [
                ("example.com/owner".to_string(), "ops".to_string()),
                (CONFIG_HASH_ANNOTATION.to_string(), "0".to_string()),
            ]
            .into(),
        };
        let spec = RedisInstanceSpec {
            pod_metadata,
            ..Default::default()
        };
        let meta = template_meta(&spec);
        let labels = meta.labels.unwrap();
        assert_eq!(labels["team"], "cache");
        assert_eq!(labels[INSTANCE_LABEL], "cache");
        assert!(!labels.contains_key(ROLE_LABEL));
        let annotations = meta.annotations.unwrap();
        assert_eq!(annotations["example.com/owner"], "ops");
        assert_ne!(annotations[CONFIG_HASH_ANNOTATION], "0");
    }

    /// A subset comparison cannot see a removed entry: the settings hash must change when one goes.
    #[test]
    fn removing_a_setting_changes_the_template() {
        let mut with = RedisInstanceSpec::default();
        with.scheduling.node_selector = [("disk".to_string(), "ssd".to_string())].into();
        with.pod_metadata.annotations = [("a".to_string(), "b".to_string())].into();
        let hash = |spec: &RedisInstanceSpec| {
            template_meta(spec).annotations.unwrap()[SETTINGS_HASH_ANNOTATION].clone()
        };
        let mut without_selector = with.clone();
        without_selector.scheduling.node_selector.clear();
        let mut without_annotation = with.clone();
        without_annotation.pod_metadata.annotations.clear();
        assert_ne!(hash(&with), hash(&without_selector));
        assert_ne!(hash(&with), hash(&without_annotation));
        assert_eq!(hash(&with), hash(&with.clone()));
    }

    #[test]
    fn reserved_keys() {
        for key in [
            NAME_LABEL,
            INSTANCE_LABEL,
            MANAGED_BY_LABEL,
            ROLE_LABEL,
            "redis-operator.github.io/anything",
        ] {
            assert!(reserved_label(key).is_some(), "{key}");
        }
        assert!(reserved_label("app.kubernetes.io/component").is_none());
        assert!(reserved_annotation(CONFIG_HASH_ANNOTATION).is_some());
        assert!(reserved_annotation("service.beta.kubernetes.io/aws-load-balancer-type").is_none());
    }

    #[test]
    fn services_follow_spec_service_and_the_replicas_one_may_differ() {
        let mut ri = instance("cache");
        let lb = [("cloud.example.com/lb".to_string(), "internal".to_string())];
        ri.spec.service = ServiceExposure {
            type_: ServiceType::LoadBalancer,
            annotations: lb.clone().into(),
            replicas: None,
            expose_without_auth: false,
        };
        let desired = build(&ri);
        for service in [&desired.service, &desired.replicas_service] {
            let spec = service.spec.as_ref().unwrap();
            assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
            assert_eq!(
                service.metadata.annotations.as_ref().unwrap()["cloud.example.com/lb"],
                "internal"
            );
        }
        assert!(desired.headless.metadata.annotations.is_none());
        assert_eq!(
            desired
                .headless
                .spec
                .as_ref()
                .unwrap()
                .cluster_ip
                .as_deref(),
            Some("None")
        );

        ri.spec.service.replicas = Some(ReplicasServiceExposure {
            type_: Some(ServiceType::ClusterIP),
            annotations: Some(BTreeMap::new()),
        });
        let desired = build(&ri);
        let replicas = &desired.replicas_service;
        assert_eq!(
            replicas.spec.as_ref().unwrap().type_.as_deref(),
            Some("ClusterIP")
        );
        assert!(!replicas
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .contains_key("cloud.example.com/lb"));
        assert_eq!(
            desired.service.spec.as_ref().unwrap().type_.as_deref(),
            Some("LoadBalancer")
        );
    }

    #[test]
    fn the_default_is_cluster_ip() {
        let desired = build(&instance("cache"));
        for service in [&desired.service, &desired.replicas_service] {
            assert_eq!(
                service.spec.as_ref().unwrap().type_.as_deref(),
                Some("ClusterIP")
            );
        }
    }
}
