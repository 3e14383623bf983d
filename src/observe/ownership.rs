//! Which watched objects are the instances' own, and what of them the caches keep. Anyone who may create an
//! object may give it the operator's labels, so a label-selected watch also delivers objects no instance owns:
//! they are dropped as they arrive (an update that makes an object foreign removes it from the cache), and what is
//! kept is cut to what the reconciler reads. The caches' size then follows the instances, not what others create.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, PodSpec};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::desired::metadata::labels;
use crate::names::{
    DATA_VOLUME, INSTANCE_LABEL, MANAGED_BY_LABEL, NAME_LABEL, PRIMARY_EPOCH_ANNOTATION,
    RESERVED_PREFIX, ROLE_LABEL,
};
use crate::observe::rollout::REVISION_LABEL;

/// The longest Event message kept (the StatefulSet controller's `FailedCreate` messages quote the API server's
/// refusal; status and Events cut what they show shorter still).
pub const EVENT_MESSAGE_LIMIT: usize = 4096;

/// A child the operator applies itself (StatefulSet, ConfigMap, Service, PodDisruptionBudget): its controller
/// owner reference is a RedisInstance.
pub fn controlled_by_an_instance<K: Resource>(object: &K) -> bool {
    object.owner_references().iter().any(|owner| {
        owner.controller == Some(true)
            && owner.kind == "RedisInstance"
            && owner.api_version.starts_with(crate::names::API_GROUP)
            && owner.api_version[crate::names::API_GROUP.len()..].starts_with('/')
    })
}

/// A pod of an instance's StatefulSet (named like the instance), or a pod without any controller: a storage
/// change deletes the StatefulSet orphaning its pods, and the new StatefulSet adopts them a moment later; those
/// pods must not disappear from the cache meanwhile. A pod another controller made (a ReplicaSet's, a Job's) is
/// not an instance's, whatever its labels say.
pub fn pod_of_an_instance(pod: &Pod) -> bool {
    let Some(instance) = pod.labels().get(INSTANCE_LABEL) else {
        return false;
    };
    let mut controllers = pod
        .owner_references()
        .iter()
        .filter(|owner| owner.controller == Some(true));
    match controllers.next() {
        None => true,
        Some(owner) => {
            owner.kind == "StatefulSet" && owner.api_version == "apps/v1" && owner.name == *instance
        }
    }
}

/// Whether `claim` was made from the claim template of instance `instance`: it carries every label the
/// template gives (claims carry no owner reference), and the name the StatefulSet controller gives them.
pub fn from_claim_template(claim: &PersistentVolumeClaim, instance: &str) -> bool {
    let carried = claim.labels();
    labels(instance)
        .iter()
        .all(|(key, value)| carried.get(key) == Some(value))
        && claim
            .name_any()
            .starts_with(&format!("{DATA_VOLUME}-{instance}-"))
}

/// A data claim of some instance (see [`from_claim_template`]).
pub fn claim_of_an_instance(claim: &PersistentVolumeClaim) -> bool {
    claim
        .labels()
        .get(INSTANCE_LABEL)
        .is_some_and(|instance| from_claim_template(claim, instance))
}

/// A watch event with objects `keep` refuses taken out: an added or listed one is left out, and an update that
/// makes a cached object foreign deletes it from the cache.
pub fn only_kept<K>(event: watcher::Event<K>, keep: fn(&K) -> bool) -> Option<watcher::Event<K>> {
    match event {
        watcher::Event::InitApply(object) if !keep(&object) => None,
        watcher::Event::Apply(object) if !keep(&object) => Some(watcher::Event::Delete(object)),
        other => Some(other),
    }
}

/// What the pod cache keeps: the labels and annotations the reconciler reads, the node, and the status.
pub fn trim_pod(pod: &mut Pod) {
    pod.spec = pod.spec.take().map(|spec| PodSpec {
        node_name: spec.node_name,
        ..Default::default()
    });
    let meta = pod.meta_mut();
    meta.managed_fields = None;
    meta.labels = meta.labels.take().map(|labels| {
        keep_keys(labels, |key| {
            [
                INSTANCE_LABEL,
                NAME_LABEL,
                MANAGED_BY_LABEL,
                ROLE_LABEL,
                REVISION_LABEL,
            ]
            .contains(&key)
        })
    });
    meta.annotations = meta
        .annotations
        .take()
        .map(|annotations| keep_keys(annotations, |key| key.starts_with(RESERVED_PREFIX)));
}

/// What the claim cache keeps: name, labels, the primary's mark, deletion state and the requested size.
pub fn trim_claim(claim: &mut PersistentVolumeClaim) {
    let meta = claim.meta_mut();
    meta.managed_fields = None;
    // Of the annotations, only the primary's mark is read.
    meta.annotations = meta
        .annotations
        .take()
        .map(|annotations| keep_keys(annotations, |key| key == PRIMARY_EPOCH_ANNOTATION))
        .filter(|kept| !kept.is_empty());
    claim.spec =
        claim.spec.take().map(
            |spec| k8s_openapi::api::core::v1::PersistentVolumeClaimSpec {
                resources: spec.resources,
                storage_class_name: spec.storage_class_name,
                ..Default::default()
            },
        );
    claim.status = None;
}

/// What the `FailedCreate` Event cache keeps: what it is about, why, and when; the message cut to
/// [`EVENT_MESSAGE_LIMIT`].
pub fn trim_event(event: &mut Event) {
    let meta = event.meta_mut();
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
    if let Some(message) = event.message.as_mut() {
        if message.len() > EVENT_MESSAGE_LIMIT {
            let mut end = EVENT_MESSAGE_LIMIT;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
    }
}

fn keep_keys(
    map: BTreeMap<String, String>,
    keep: impl Fn(&str) -> bool,
) -> BTreeMap<String, String> {
    map.into_iter().filter(|(key, _)| keep(key)).collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn owner(api_version: &str, kind: &str, name: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: "u".into(),
            controller: Some(controller),
            ..Default::default()
        }
    }

    fn labelled<K: Resource>(mut object: K, instance: &str) -> K {
        object.meta_mut().labels = Some(labels(instance));
        object
    }

    #[test]
    fn only_children_an_instance_controls_are_its_own() {
        let mut cm = labelled(k8s_openapi::api::core::v1::ConfigMap::default(), "cache");
        assert!(!controlled_by_an_instance(&cm), "labels alone");
        cm.metadata.owner_references = Some(vec![owner(
            "redis-operator.github.io/v1beta1",
            "RedisInstance",
            "cache",
            false,
        )]);
        assert!(!controlled_by_an_instance(&cm), "not as controller");
        cm.metadata.owner_references = Some(vec![owner("v1", "Other", "cache", true)]);
        assert!(!controlled_by_an_instance(&cm));
        cm.metadata.owner_references = Some(vec![owner(
            "redis-operator.github.io/v1beta1",
            "RedisInstance",
            "cache",
            true,
        )]);
        assert!(controlled_by_an_instance(&cm));
    }

    #[test]
    fn pods_of_the_instances_statefulset_and_orphans_are_kept_others_not() {
        let mut pod = labelled(Pod::default(), "cache");
        assert!(pod_of_an_instance(&pod), "orphaned during a replace");
        pod.metadata.owner_references = Some(vec![owner("apps/v1", "StatefulSet", "cache", true)]);
        assert!(pod_of_an_instance(&pod));
        pod.metadata.owner_references = Some(vec![owner("apps/v1", "StatefulSet", "other", true)]);
        assert!(!pod_of_an_instance(&pod), "another StatefulSet's");
        pod.metadata.owner_references = Some(vec![owner("apps/v1", "ReplicaSet", "cache", true)]);
        assert!(!pod_of_an_instance(&pod), "a ReplicaSet's");
        pod.metadata.labels = None;
        pod.metadata.owner_references = None;
        assert!(!pod_of_an_instance(&pod), "no instance label");
    }

    #[test]
    fn claims_need_every_template_label_and_the_template_name() {
        let mut claim = labelled(PersistentVolumeClaim::default(), "cache");
        claim.metadata.name = Some("data-cache-0".into());
        assert!(from_claim_template(&claim, "cache"));
        assert!(claim_of_an_instance(&claim));
        assert!(!from_claim_template(&claim, "other"));
        claim.metadata.name = Some("logs-cache-0".into());
        assert!(!claim_of_an_instance(&claim), "another template's name");
        claim.metadata.name = Some("data-cache-0".into());
        claim
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(MANAGED_BY_LABEL);
        assert!(!from_claim_template(&claim, "cache"), "a label missing");
    }

    #[test]
    fn a_foreign_update_deletes_and_a_foreign_listing_is_left_out() {
        let keep: fn(&Pod) -> bool = |pod| pod.labels().contains_key("keep");
        let mine = {
            let mut pod = Pod::default();
            pod.metadata.labels = Some([("keep".to_string(), String::new())].into());
            pod
        };
        let theirs = Pod::default();
        assert!(only_kept(watcher::Event::InitApply(theirs.clone()), keep).is_none());
        assert!(matches!(
            only_kept(watcher::Event::Apply(theirs.clone()), keep),
            Some(watcher::Event::Delete(_))
        ));
        assert!(matches!(
            only_kept(watcher::Event::Apply(mine.clone()), keep),
            Some(watcher::Event::Apply(_))
        ));
        assert!(matches!(
            only_kept(watcher::Event::Delete(theirs), keep),
            Some(watcher::Event::Delete(_))
        ));
    }

    #[test]
    fn a_kept_pod_is_cut_to_what_is_read() {
        let mut pod = labelled(Pod::default(), "cache");
        let labels = pod.metadata.labels.as_mut().unwrap();
        labels.insert(ROLE_LABEL.into(), "primary".into());
        labels.insert("team".into(), "x".repeat(63));
        pod.metadata.annotations = Some(
            [
                (
                    "redis-operator.github.io/auth".to_string(),
                    "on-1".to_string(),
                ),
                ("big".to_string(), "x".repeat(100_000)),
            ]
            .into(),
        );
        pod.spec = Some(PodSpec {
            node_name: Some("node-1".into()),
            hostname: Some("h".into()),
            ..Default::default()
        });
        trim_pod(&mut pod);
        assert_eq!(
            pod.labels().keys().collect::<Vec<_>>(),
            [
                "app.kubernetes.io/instance",
                "app.kubernetes.io/managed-by",
                "app.kubernetes.io/name",
                ROLE_LABEL
            ]
        );
        assert_eq!(pod.annotations().len(), 1);
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        assert_eq!(spec.hostname, None);
    }

    #[test]
    fn event_messages_are_capped_at_a_character_boundary() {
        let mut event = Event {
            message: Some("é".repeat(EVENT_MESSAGE_LIMIT)),
            ..Default::default()
        };
        trim_event(&mut event);
        let message = event.message.unwrap();
        assert!(message.len() <= EVENT_MESSAGE_LIMIT);
        assert!(message.chars().all(|c| c == 'é'));
    }
}
