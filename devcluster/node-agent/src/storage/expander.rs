//! Grows a bound volume when its claim asks for more: the PV capacity first, then the claim's status.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::quantity::parse_quantity;
use crate::storage::PROVISIONER;

/// What a claim needs: the requested size when it exceeds the reported capacity of a bound claim.
pub fn pending_growth(pvc: &PersistentVolumeClaim) -> Option<String> {
    let status = pvc.status.as_ref()?;
    if status.phase.as_deref() != Some("Bound") {
        return None;
    }
    let requested = pvc
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?;
    let capacity = status.capacity.as_ref()?.get("storage")?;
    (parse_quantity(&requested.0)? > parse_quantity(&capacity.0)?).then(|| requested.0.clone())
}

/// Expands the claim's volume if it asks for more than it has and the volume is one of the agent's.
pub async fn expand(client: &Client, pvc: &PersistentVolumeClaim) {
    let Some(size) = pending_growth(pvc) else {
        return;
    };
    let Some(volume_name) = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()) else {
        return;
    };
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = match volumes.get(&volume_name).await {
        Ok(pv) => pv,
        Err(e) => {
            warn!(volume = %volume_name, error = %e, "cannot read the volume to expand");
            return;
        }
    };
    if pv
        .annotations()
        .get("pv.kubernetes.io/provisioned-by")
        .map(String::as_str)
        != Some(PROVISIONER)
    {
        return;
    }
    let params = PatchParams::default();
    let pv_patch = json!({ "spec": { "capacity": { "storage": size } } });
    if let Err(e) = volumes
        .patch(&volume_name, &params, &Patch::Merge(&pv_patch))
        .await
    {
        warn!(volume = %volume_name, error = %e, "expanding the volume failed");
        return;
    }
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &pvc.namespace().unwrap_or_default());
    let claim_patch = json!({ "status": { "capacity": { "storage": size }, "conditions": null } });
    match claims
        .patch_status(&pvc.name_any(), &params, &Patch::Merge(&claim_patch))
        .await
    {
        Ok(_) => info!(claim = %pvc.name_any(), volume = %volume_name, %size, "expanded volume"),
        Err(e) => warn!(claim = %pvc.name_any(), error = %e, "updating the claim capacity failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    fn claim(request: &str, capacity: &str, phase: &str) -> PersistentVolumeClaim {
        let storage = |q: &str| {
            Some(BTreeMap::from([(
                "storage".to_string(),
                Quantity(q.to_string()),
            )]))
        };
        PersistentVolumeClaim {
            spec: Some(PersistentVolumeClaimSpec {
                resources: Some(VolumeResourceRequirements {
                    requests: storage(request),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: Some(phase.into()),
                capacity: storage(capacity),
                ..PersistentVolumeClaimStatus::default()
            }),
            ..PersistentVolumeClaim::default()
        }
    }

    #[test]
    fn grows_only_bound_claims_asking_for_more() {
        assert_eq!(
            pending_growth(&claim("2Gi", "1Gi", "Bound")).as_deref(),
            Some("2Gi")
        );
        assert_eq!(pending_growth(&claim("1Gi", "1Gi", "Bound")), None);
        assert_eq!(pending_growth(&claim("1024Mi", "1Gi", "Bound")), None);
        assert_eq!(pending_growth(&claim("2Gi", "1Gi", "Pending")), None);
    }
}
