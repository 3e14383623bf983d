//! The instance's children: whether an object is the instance's own, and server-side apply of what differs.

use std::sync::Arc;

use futures::future::{try_join_all, BoxFuture};
use futures::FutureExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::info;

use super::context::{lookup, Context};
use crate::api::RedisInstance;
use crate::classify::diff::is_applied;
use crate::desired::children::Desired;
use crate::error::{Error, Result};
use crate::names::{claim_name, FIELD_MANAGER};
use crate::observe::ownership;

/// Whether `object` is controlled by the instance: its controller owner reference carries the instance's uid.
pub(crate) fn controlled_by(object: &impl Resource, ri: &RedisInstance) -> bool {
    let Some(uid) = ri.metadata.uid.as_deref() else {
        return false;
    };
    object
        .owner_references()
        .iter()
        .any(|owner| owner.controller == Some(true) && owner.uid == uid)
}

/// The first child (in the order below) that exists but is not controlled by this instance, as `"Kind name"`.
/// The caches only hold objects with the operator's labels, so a child they lack is read from the API server:
/// only then, when the operator is about to create it, which keeps a converged instance at zero requests here.
/// Those reads go out together (a new instance lacks all of its children: one round trip, not one per child).
pub(super) async fn foreign_child(
    ri: &RedisInstance,
    ctx: &Context,
    desired: &Desired,
    policy: Option<&NetworkPolicy>,
) -> Result<Option<String>> {
    let namespace = ri.namespace().unwrap_or_default();
    let namespace = namespace.as_str();
    let stores = &ctx.stores;
    let mut checks: Vec<BoxFuture<'_, Result<Option<String>>>> =
        vec![foreign(ri, ctx, namespace, &desired.config_map, &stores.config_maps).boxed()];
    for service in [
        &desired.service,
        &desired.replicas_service,
        &desired.headless,
    ]
    .into_iter()
    .chain(desired.metrics_service.as_ref())
    {
        checks.push(foreign(ri, ctx, namespace, service, &stores.services).boxed());
    }
    for budget in &desired.budgets {
        checks.push(foreign(ri, ctx, namespace, budget, &stores.budgets).boxed());
    }
    if let Some(policy) = policy {
        checks.push(foreign(ri, ctx, namespace, policy, &stores.network_policies).boxed());
    }
    checks.push(
        foreign(
            ri,
            ctx,
            namespace,
            &desired.statefulset,
            &stores.statefulsets,
        )
        .boxed(),
    );
    checks.push(foreign_claim(ri, ctx, desired).boxed());
    let found = try_join_all(checks).await?;
    Ok(found.into_iter().flatten().next())
}

/// The first data claim a pod of the StatefulSet would use (`data-NAME-N` for every ordinal it keeps) that
/// exists but was not made from the instance's claim template, as `"PersistentVolumeClaim name"`: the
/// StatefulSet controller would start a pod on whatever claim has that name. The cache holds the template's
/// claims; one it lacks is read from the API server (only then, so a converged instance makes no request here).
pub(super) async fn foreign_claim(
    ri: &RedisInstance,
    ctx: &Context,
    desired: &Desired,
) -> Result<Option<String>> {
    let Some(spec) = desired.statefulset.spec.as_ref() else {
        return Ok(None);
    };
    if spec.volume_claim_templates.is_none() {
        return Ok(None);
    }
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let checks = (0..spec.replicas.unwrap_or_default().max(0)).map(|ordinal| {
        let (api, namespace, name) = (&api, &namespace, &name);
        async move {
            let claim_name = claim_name(name, ordinal);
            let live = match lookup(&ctx.stores.claims, &claim_name, namespace) {
                Some(cached) => Some(cached),
                None => api
                    .get_opt(&claim_name)
                    .await
                    .inspect_err(|e| ctx.metrics.record_api_error("get", e))?
                    .map(Arc::new),
            };
            Ok::<_, Error>(
                live.filter(|claim| !ownership::from_claim_template(claim, name))
                    .map(|_| format!("PersistentVolumeClaim {claim_name}")),
            )
        }
    });
    let found = try_join_all(checks).await?;
    Ok(found.into_iter().flatten().next())
}

pub(super) async fn foreign<K>(
    ri: &RedisInstance,
    ctx: &Context,
    namespace: &str,
    desired: &K,
    store: &Store<K>,
) -> Result<Option<String>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + 'static,
{
    let name = desired.name_any();
    let live = match lookup(store, &name, namespace) {
        Some(live) => Some(live),
        None => {
            let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
            api.get_opt(&name)
                .await
                .inspect_err(|e| ctx.metrics.record_api_error("get", e))?
                .map(Arc::new)
        }
    };
    Ok(live
        .filter(|live| !controlled_by(&**live, ri))
        .map(|_| format!("{} {name}", K::kind(&()))))
}

/// Applies `desired` with server-side apply unless the cached live object already holds it; says whether it
/// applied.
pub(crate) async fn apply_unless_current<K>(
    ctx: &Context,
    namespace: &str,
    desired: &K,
    store: &Store<K>,
) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug
        + 'static,
{
    let live = lookup(store, &desired.name_any(), namespace);
    let applied = apply_unless_held(ctx, namespace, desired, live.as_deref()).await?;
    Ok(applied.is_some())
}

/// Applies `desired` with server-side apply unless `live` already holds it; returns the object as the API server
/// holds it after the apply, `None` when nothing was applied.
pub(crate) async fn apply_unless_held<K>(
    ctx: &Context,
    namespace: &str,
    desired: &K,
    live: Option<&K>,
) -> Result<Option<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug
        + 'static,
{
    if live.is_some_and(|live| is_applied(desired, live)) {
        return Ok(None);
    }
    apply_object(ctx, namespace, desired).await.map(Some)
}

/// Applies `desired` with server-side apply; returns the object as the API server holds it afterwards.
pub(super) async fn apply_object<K>(ctx: &Context, namespace: &str, desired: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api
        .patch(&desired.name_any(), &params, &Patch::Apply(desired))
        .await
        .map_err(|source| {
            ctx.metrics.record_api_error("apply", &source);
            Error::Apply {
                kind: K::kind(&()).to_string(),
                name: desired.name_any(),
                source,
            }
        })?;
    info!(kind = %K::kind(&()), name = %desired.name_any(), "applied");
    Ok(applied)
}

/// Applies a child that an instance has only while a setting is on (`NAME-metrics` while the exporter runs,
/// the NetworkPolicy `NAME` while `networkPolicy.enabled`); once it is off, deletes the one named `name` this
/// instance controls (the cache holds only the operator's own objects, and a foreign one is never touched).
pub(super) async fn sync_optional_child<K>(
    ri: &RedisInstance,
    ctx: &Context,
    name: &str,
    desired: Option<&K>,
    store: &Store<K>,
) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug
        + 'static,
{
    let namespace = ri.namespace().unwrap_or_default();
    if let Some(child) = desired {
        return apply_unless_current(ctx, &namespace, child, store)
            .await
            .map(drop);
    }
    let Some(live) = lookup(store, name, &namespace) else {
        return Ok(());
    };
    if !controlled_by(&*live, ri) || live.meta().deletion_timestamp.is_some() {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => info!(kind = %K::kind(&()), %name, "deleted: turned off in the spec"),
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => {
            ctx.metrics.record_api_error("delete", &e);
            return Err(e.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;
    use crate::desired::children::tests::instance;

    #[test]
    fn only_a_controller_reference_with_the_instance_uid_makes_a_child_ours() {
        let mut ri = instance("cache");
        ri.metadata.uid = Some("uid-1".into());
        let mut service = k8s_openapi::api::core::v1::Service::default();
        assert!(!controlled_by(&service, &ri), "no owner: someone else's");
        let owner = |uid: &str, controller: bool| OwnerReference {
            api_version: "redis-operator.github.io/v1beta1".into(),
            kind: "RedisInstance".into(),
            name: "cache".into(),
            uid: uid.into(),
            controller: Some(controller),
            ..Default::default()
        };
        service.metadata.owner_references = Some(vec![owner("uid-0", true)]);
        assert!(
            !controlled_by(&service, &ri),
            "an earlier instance of the same name"
        );
        service.metadata.owner_references = Some(vec![owner("uid-1", false)]);
        assert!(!controlled_by(&service, &ri), "not as controller");
        service.metadata.owner_references = Some(vec![owner("uid-1", true)]);
        assert!(controlled_by(&service, &ri));
        let desired = crate::desired::children::build(&ri);
        assert!(
            controlled_by(&desired.config_map, &ri),
            "what the operator builds is its own"
        );
    }
}
