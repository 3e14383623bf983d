//! Creates a hostPath PersistentVolume for every pending claim of a served class; the controller-manager's
//! PV controller then binds the two.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use crate::error::is_status;
use crate::storage::{classes, PROVISIONER};

/// The claim's class, from the spec or the legacy annotation.
pub fn class_of(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .or_else(|| {
            pvc.annotations()
                .get("volume.beta.kubernetes.io/storage-class")
                .cloned()
        })
}

/// The PersistentVolume for a pending claim of a served class, or `None` when the claim needs nothing.
pub fn volume_for(pvc: &PersistentVolumeClaim, volumes_dir: &Path) -> Option<PersistentVolume> {
    let spec = pvc.spec.as_ref()?;
    let pending = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
        == "Pending";
    if !pending
        || spec.volume_name.as_deref().is_some_and(|v| !v.is_empty())
        || pvc.metadata.deletion_timestamp.is_some()
    {
        return None;
    }
    let class = class_of(pvc).filter(|c| classes::is_served(c))?;
    let uid = pvc.uid()?;
    let request = spec
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?
        .clone();
    let name = format!("pvc-{uid}");
    let path = volumes_dir.join(&name);
    Some(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(BTreeMap::from([(
                "pv.kubernetes.io/provisioned-by".to_string(),
                PROVISIONER.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), request)])),
            access_modes: spec.access_modes.clone(),
            persistent_volume_reclaim_policy: Some("Retain".to_string()),
            storage_class_name: Some(class),
            volume_mode: spec.volume_mode.clone(),
            host_path: Some(HostPathVolumeSource {
                path: path.to_string_lossy().into_owned(),
                type_: Some("DirectoryOrCreate".to_string()),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("PersistentVolumeClaim".to_string()),
                namespace: pvc.namespace(),
                name: Some(pvc.name_any()),
                uid: Some(uid),
                ..ObjectReference::default()
            }),
            ..PersistentVolumeSpec::default()
        }),
        ..PersistentVolume::default()
    })
}

/// Provisions the claim's volume if it needs one.
pub async fn provision(client: &Client, volumes_dir: &Path, pvc: &PersistentVolumeClaim) {
    let Some(pv) = volume_for(pvc, volumes_dir) else {
        return;
    };
    let name = pv.name_any();
    let path = volumes_dir.join(&name);
    if let Err(e) = std::fs::create_dir_all(&path) {
        warn!(path = %path.display(), error = %e, "cannot create the volume directory");
        return;
    }
    // Writable by every user, as rancher's local-path provisioner makes its directories: pods run as non-root
    // users, and the kubelet applies `fsGroup` to no hostPath volume.
    if let Err(e) =
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777))
    {
        warn!(path = %path.display(), error = %e, "cannot open the volume directory to the pod's user");
        return;
    }
    let api: Api<PersistentVolume> = Api::all(client.clone());
    match api.create(&PostParams::default(), &pv).await {
        Ok(_) => {
            info!(volume = %name, claim = %pvc.name_any(), namespace = ?pvc.namespace(), "provisioned volume")
        }
        Err(e) if is_status(&e, 409) => {}
        Err(e) => warn!(volume = %name, error = %e, "provisioning failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn claim(class: &str, phase: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data-redis-0".into()),
                namespace: Some("team".into()),
                uid: Some("1234".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some(class.into()),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".into(), Quantity("1Gi".into()))])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: Some(phase.into()),
                ..PersistentVolumeClaimStatus::default()
            }),
        }
    }

    #[test]
    fn pending_claim_of_a_served_class_gets_a_host_path_volume() {
        let pv = volume_for(
            &claim(classes::EXPANDABLE, "Pending"),
            Path::new("/state/volumes"),
        )
        .unwrap();
        assert_eq!(pv.name_any(), "pvc-1234");
        let spec = pv.spec.unwrap();
        assert_eq!(spec.host_path.unwrap().path, "/state/volumes/pvc-1234");
        assert_eq!(spec.capacity.unwrap()["storage"], Quantity("1Gi".into()));
        let claim_ref = spec.claim_ref.unwrap();
        assert_eq!(
            (claim_ref.name.as_deref(), claim_ref.uid.as_deref()),
            (Some("data-redis-0"), Some("1234"))
        );
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Retain")
        );
    }

    #[test]
    fn other_classes_and_bound_claims_are_left_alone() {
        assert!(volume_for(&claim("standard", "Pending"), Path::new("/v")).is_none());
        assert!(volume_for(&claim(classes::FIXED, "Bound"), Path::new("/v")).is_none());
        assert!(volume_for(&claim(classes::FIXED, "Pending"), Path::new("/v")).is_some());
    }
}
