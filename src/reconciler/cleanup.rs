//! Deletion: what the finalizer does before the instance goes (claims by the delete policy).

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use redis_fsm::Observation;

use super::context::Context;
use super::events::event;
use super::publish::{publish_status, Passes};
use super::reset_backoff;
use super::storage::data_claims;
use crate::api::{ClaimDeletePolicy, RedisInstance};
use crate::error::Result;
use crate::events::EventReason;

/// Deletion: record `Terminated`, apply the claim policy; the children go by owner reference.
pub(super) async fn cleanup(ri: &RedisInstance, ctx: &Context) -> Result<Action> {
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    // Its archiver stops storing (what it stored stays in the bucket).
    ctx.archivers.stop(&ri.uid().unwrap_or_default());
    ctx.metrics.forget_instance(&namespace, &name);
    let observation = Observation {
        generation: ri.metadata.generation.unwrap_or_default(),
        deletion_requested: true,
        spec_replicas: ri.spec.replicas,
        ..Default::default()
    };
    publish_status(
        ri,
        ctx,
        &observation,
        &Passes::default(),
        k8s_openapi::jiff::Timestamp::now(),
    )
    .await?;
    let delete_claims = ri
        .spec
        .storage
        .as_ref()
        .is_some_and(|s| s.when_deleted == ClaimDeletePolicy::Delete);
    if delete_claims {
        // The only place the operator ever deletes a claim: the user asked for it with `whenDeleted: Delete`.
        let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
        for claim in data_claims(ctx, &name, &namespace) {
            let claim_name = claim.name_any();
            if claim.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match api.delete(&claim_name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => continue,
                Err(e) => {
                    ctx.metrics.record_api_error("delete", &e);
                    return Err(e.into());
                }
            }
            event(
                ctx,
                ri,
                EventType::Normal,
                EventReason::DeletingClaim,
                "Delete",
                format!("Deleted PersistentVolumeClaim {claim_name} (storage.whenDeleted: Delete)"),
            )
            .await;
        }
    }
    reset_backoff(ri, ctx);
    ctx.forget(ri);
    Ok(Action::await_change())
}
