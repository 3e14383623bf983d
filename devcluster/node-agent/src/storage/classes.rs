//! The two StorageClasses the devcluster serves.

use std::collections::BTreeMap;

use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::info;

use crate::error::{is_status, Result};
use crate::storage::PROVISIONER;

/// The default class; claims of it can grow.
pub const EXPANDABLE: &str = "devcluster-expandable";
/// A class whose claims cannot grow (the API server rejects the resize).
pub const FIXED: &str = "devcluster-fixed";

/// Whether claims of this class are provisioned by the agent.
pub fn is_served(class: &str) -> bool {
    class == EXPANDABLE || class == FIXED
}

/// Creates both classes when absent; existing ones are left alone.
pub async fn ensure(client: &Client) -> Result<()> {
    let api: Api<StorageClass> = Api::all(client.clone());
    for class in [class(EXPANDABLE, true, true), class(FIXED, false, false)] {
        match api.create(&PostParams::default(), &class).await {
            Ok(_) => info!(class = ?class.metadata.name, "created StorageClass"),
            Err(e) if is_status(&e, 409) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn class(name: &str, expandable: bool, default: bool) -> StorageClass {
    let annotations = default.then(|| {
        BTreeMap::from([(
            "storageclass.kubernetes.io/is-default-class".to_string(),
            "true".to_string(),
        )])
    });
    StorageClass {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            annotations,
            ..ObjectMeta::default()
        },
        provisioner: PROVISIONER.to_string(),
        allow_volume_expansion: Some(expandable),
        reclaim_policy: Some("Retain".to_string()),
        volume_binding_mode: Some("Immediate".to_string()),
        ..StorageClass::default()
    }
}
