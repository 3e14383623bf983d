//! Storage changes: replacing the StatefulSet (orphaning its pods) to change the claim template, and
//! expanding the claims in place.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::context::{instance_objects, Context};
use super::events::event;
use super::owned::apply_object;
use super::REPLACE_WAIT;
use crate::api::quantity::Quantity;
use crate::api::RedisInstance;
use crate::classify::replace::ReplaceRecord;
use crate::desired::children::Desired;
use crate::error::{Error, Result};
use crate::events::EventReason;
use crate::names::{claim_name, REPLACE_ANNOTATION};

/// Writes the replace record on the instance (a metadata patch, before the orphaning delete); returns the
/// instance as written, whose resourceVersion the status write of this reconcile must use.
pub(super) async fn record_replace(
    ri: &RedisInstance,
    ctx: &Context,
    record: &ReplaceRecord,
) -> Result<RedisInstance> {
    let api: Api<RedisInstance> =
        Api::namespaced(ctx.client.clone(), &ri.namespace().unwrap_or_default());
    let patch =
        serde_json::json!({"metadata": {"annotations": {REPLACE_ANNOTATION: record.render()}}});
    let mut written = api
        .patch(
            &ri.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .inspect_err(|e| ctx.metrics.record_api_error("patch", e))?;
    written.metadata.managed_fields = None;
    Ok(written)
}

/// A Unix time as RFC 3339 (seconds).
pub(super) fn unix_time_text(seconds: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

/// The instance's data claims (`data-NAME-ORDINAL`, from the claim template), from the watch cache.
pub(super) fn data_claims(
    ctx: &Context,
    name: &str,
    namespace: &str,
) -> Vec<Arc<PersistentVolumeClaim>> {
    // Every ordinal's claim name starts with the one of an empty ordinal.
    let prefix = claim_name(name, "");
    instance_objects(&ctx.stores.claims, name, namespace)
        .into_iter()
        .filter(|claim| claim.name_any().starts_with(&prefix))
        .collect()
}

/// Storage change: expand claims in place (growth), then replace the StatefulSet by an orphaning delete and a
/// re-create with the new claim template. Running pods and their claims are never touched by the replace.
pub(super) async fn replace_for_storage(
    ri: &RedisInstance,
    ctx: &Context,
    live: Option<&StatefulSet>,
    desired: &Desired,
    expand_to: Option<&str>,
) -> Result<()> {
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    if let Some(size) = expand_to {
        expand_claims(ri, ctx, size).await?;
    }
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    if live.is_some_and(|s| s.metadata.deletion_timestamp.is_none()) {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            // Only the StatefulSet this reconcile looked at: a stale cache must not delete its replacement.
            preconditions: Some(Preconditions {
                uid: live.and_then(|s| s.metadata.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        api.delete(&name, &params)
            .await
            .inspect_err(|e| ctx.metrics.record_api_error("delete", e))?;
        event(
            ctx,
            ri,
            EventType::Normal,
            EventReason::ReplacingStatefulSet,
            "Replace",
            format!("Deleted StatefulSet {name} with orphan propagation to apply the new claim template; pods and claims are kept"),
        )
        .await;
    }
    // Wait (bounded) for the garbage collector to finish the orphaning delete, then re-create.
    let gone =
        kube::runtime::wait::await_condition(api.clone(), &name, |sts: Option<&StatefulSet>| {
            sts.is_none()
        });
    if tokio::time::timeout(REPLACE_WAIT, gone).await.is_err() {
        return Err(Error::ReplaceInProgress(name));
    }
    apply_object(ctx, &namespace, &desired.statefulset).await
}

/// Raises the storage request of every existing data claim of the instance to `size`.
pub(super) async fn expand_claims(ri: &RedisInstance, ctx: &Context, size: &str) -> Result<()> {
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    let Ok(target) = size.parse::<Quantity>() else {
        return Ok(());
    };
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    for claim in data_claims(ctx, &name, &namespace) {
        let claim_name = claim.name_any();
        let current = claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| q.0.parse::<Quantity>().ok());
        if current.is_some_and(|c| c >= target) {
            continue;
        }
        let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": size}}}});
        api.patch(&claim_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .inspect_err(|e| ctx.metrics.record_api_error("patch", e))?;
        event(
            ctx,
            ri,
            EventType::Normal,
            EventReason::ExpandingClaim,
            "Expand",
            format!("Requested {size} for PersistentVolumeClaim {claim_name}"),
        )
        .await;
    }
    Ok(())
}
