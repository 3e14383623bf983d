//! The labels and metadata every child of an instance carries.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use crate::api::RedisInstance;
use crate::names::{INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL, NAME_LABEL};

/// The labels every child carries.
pub fn labels(instance: &str) -> BTreeMap<String, String> {
    [
        (NAME_LABEL, "redis"),
        (INSTANCE_LABEL, instance),
        (MANAGED_BY_LABEL, MANAGED_BY),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The labels selecting every pod of `instance`.
pub fn selector_labels(instance: &str) -> BTreeMap<String, String> {
    let mut labels = labels(instance);
    labels.remove(MANAGED_BY_LABEL);
    labels
}

/// Metadata of a child named `name`: the operator's labels and the instance as controller owner.
pub fn metadata(ri: &RedisInstance, name: String, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: ri.namespace(),
        labels: Some(labels(&ri.name_any())),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    }
}
