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
use crate::names::{claim_name, DATA_VOLUME, PRIMARY_EPOCH_ANNOTATION, REPLACE_ANNOTATION};

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
    apply_object(ctx, &namespace, &desired.statefulset)
        .await
        .map(drop)
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

/// The primary's mark of each of the data `claims` (`(pod, epoch)`, see [`PRIMARY_EPOCH_ANNOTATION`]); claims
/// without one or with an unreadable one are left out.
fn primary_marks(claims: &[Arc<PersistentVolumeClaim>]) -> Vec<(String, u64)> {
    claims
        .iter()
        .filter_map(|claim| {
            let epoch = claim
                .annotations()
                .get(PRIMARY_EPOCH_ANNOTATION)?
                .parse()
                .ok()?;
            let pod = pod_of_claim(&claim.name_any())?.to_string();
            Some((pod, epoch))
        })
        .collect()
}

/// The pod a data claim belongs to: `data-NAME-ORDINAL` is the claim of pod `NAME-ORDINAL`.
fn pod_of_claim(claim: &str) -> Option<&str> {
    claim
        .strip_prefix(DATA_VOLUME)?
        .strip_prefix('-')
        .filter(|pod| !pod.is_empty())
}

/// The pod whose claim carries the highest mark: the primary confirmed last.
fn highest(marks: &[(String, u64)]) -> Option<&(String, u64)> {
    marks
        .iter()
        .max_by_key(|(pod, epoch)| (*epoch, pod.clone()))
}

/// The pod recorded as the instance's last confirmed primary in its data claims, if any.
pub(super) fn recorded_primary(ctx: &Context, name: &str, namespace: &str) -> Option<String> {
    highest(&primary_marks(&data_claims(ctx, name, namespace))).map(|(pod, _)| pod.clone())
}

/// The mark `primary`'s claim is to carry, or `None` when it carries the highest already.
fn mark_for(primary: &str, marks: &[(String, u64)]) -> Option<u64> {
    match highest(marks) {
        Some((pod, _)) if pod == primary => None,
        Some((_, epoch)) => Some(epoch.saturating_add(1)),
        None => Some(1),
    }
}

/// Marks the claim of `primary`, the confirmed primary, as the last primary's (one write when the primary
/// changed, none otherwise), so that the instance, deleted and re-created over its claims, starts from its data.
/// A failure is logged: the next pass tries again.
pub(super) async fn mark_primary(ri: &RedisInstance, ctx: &Context, primary: &str) {
    let (name, namespace) = (ri.name_any(), ri.namespace().unwrap_or_default());
    let claims = data_claims(ctx, &name, &namespace);
    let Some(epoch) = mark_for(primary, &primary_marks(&claims)) else {
        return;
    };
    let ordinal = primary
        .strip_prefix(&format!("{name}-"))
        .unwrap_or_default();
    let claim = claim_name(&name, ordinal);
    if !claims.iter().any(|c| c.name_any() == claim) {
        return;
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({
        "metadata": {"annotations": {PRIMARY_EPOCH_ANNOTATION: epoch.to_string()}}
    });
    match api
        .patch(&claim, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => tracing::info!(%claim, epoch, "marked the primary's claim"),
        Err(error) => {
            ctx.metrics.record_api_error("patch", &error);
            tracing::warn!(%claim, %error, "could not mark the primary's claim");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(p, e)| (p.to_string(), *e)).collect()
    }

    #[test]
    fn a_data_claim_names_its_pod() {
        assert_eq!(pod_of_claim(&claim_name("cache", 2)), Some("cache-2"));
        assert_eq!(pod_of_claim("data-"), None);
        assert_eq!(pod_of_claim("other-cache-2"), None);
    }

    #[test]
    fn the_highest_mark_names_the_last_primary_and_a_new_primary_gets_one_more() {
        assert_eq!(mark_for("cache-0", &[]), Some(1));
        let two = marks(&[("cache-0", 1), ("cache-2", 2)]);
        assert_eq!(highest(&two).map(|(p, _)| p.as_str()), Some("cache-2"));
        assert_eq!(mark_for("cache-2", &two), None, "marked already");
        assert_eq!(mark_for("cache-0", &two), Some(3));
        assert_eq!(mark_for("cache-1", &two), Some(3));
    }
}
