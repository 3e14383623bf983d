//! `redis-operator migrate-api`: moves every `RedisInstance` and `RedisBackup` of the API group used before 0.2
//! ([`LEGACY_API_GROUP`]`/v1`) to today's ([`API_GROUP`]`/v1beta1`) without touching a running server.
//!
//! Two CRDs of different groups are two resources, so no conversion webhook can serve one as the other; the objects
//! are copied instead. For each legacy instance: the new object is created with the same name, spec, labels and
//! annotations (keys under the legacy prefix renamed) and its status copied; its pods get the role label under the
//! new key (the new Services select on it) and its claims the primary epoch under the new key; every child whose
//! owner reference names the legacy instance is re-pointed at the new one; the legacy object then loses its
//! finalizer and is deleted with orphan propagation, so the garbage collector removes nothing. Backups are copied
//! the same way, their owner re-pointed. Run it with the operator stopped (see the user guide's "Upgrading from
//! redis.github.com/v1"); it is idempotent: a second run finds nothing to do, and a run stopped half-way resumes.
//!
//! The decisions (what the new object holds, which owner references change, which keys are renamed) are pure
//! functions below; the I/O is [`migrate`].

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams, PropagationPolicy,
};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::api::{RedisBackup, RedisInstance};
use crate::names::{
    API_GROUP, INSTANCE_LABEL, LEGACY_API_GROUP, MANAGED_BY, MANAGED_BY_LABEL,
    MIGRATED_FROM_ANNOTATION, RESERVED_PREFIX,
};

/// The version the legacy group served.
pub const LEGACY_VERSION: &str = "v1";
/// The annotation `kubectl apply` keeps; it records the legacy manifest (its apiVersion), so it is not copied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The legacy resource of `kind` (`RedisInstance` or `RedisBackup`).
pub fn legacy_resource(kind: &str) -> ApiResource {
    let plural = format!("{}s", kind.to_lowercase());
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(LEGACY_API_GROUP, LEGACY_VERSION, kind),
        &plural,
    )
}

/// The key under today's prefix for a key under the legacy one; other keys unchanged.
pub fn renamed_key(key: &str) -> String {
    match key
        .strip_prefix(LEGACY_API_GROUP)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        Some(name) => format!("{RESERVED_PREFIX}{name}"),
        None => key.to_string(),
    }
}

/// `map` with every legacy-prefixed key renamed (a key already present under the new prefix wins).
pub fn renamed_keys(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = map
        .iter()
        .filter(|(key, _)| renamed_key(key) == **key)
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    for (key, value) in map {
        let new = renamed_key(key);
        if new != *key {
            out.entry(new).or_insert_with(|| value.clone());
        }
    }
    out
}

/// A merge patch giving the legacy-prefixed keys of `map` (under `field`, `labels` or `annotations`) their new
/// names, removing the old ones unless `keep_old`, or `None` when there is nothing to add or remove.
pub fn rename_patch(field: &str, map: &BTreeMap<String, String>, keep_old: bool) -> Option<Value> {
    let mut patch = serde_json::Map::new();
    for (key, value) in map {
        let new = renamed_key(key);
        if new != *key {
            if !keep_old {
                patch.insert(key.clone(), Value::Null);
            } else if map.contains_key(&new) {
                continue;
            }
            let kept = map.get(&new).unwrap_or(value);
            patch.insert(new, Value::String(kept.clone()));
        }
    }
    (!patch.is_empty()).then(|| json!({ "metadata": { field: patch } }))
}

/// The object of today's group copied from `legacy`: same name, namespace and spec; labels and annotations with
/// the legacy keys renamed, without `kubectl apply`'s record, and with [`MIGRATED_FROM_ANNOTATION`]; no
/// finalizer (the operator adds its own), no owner but `owner` (a backup's new instance), no status (the status
/// subresource is written separately).
pub fn migrated_object(
    legacy: &DynamicObject,
    resource: &ApiResource,
    owner: Option<OwnerReference>,
) -> DynamicObject {
    let mut annotations = renamed_keys(legacy.annotations());
    annotations.remove(LAST_APPLIED);
    annotations.insert(
        MIGRATED_FROM_ANNOTATION.to_string(),
        legacy.uid().unwrap_or_default(),
    );
    let mut object = DynamicObject::new(&legacy.name_any(), resource);
    object.metadata.namespace = legacy.namespace();
    object.metadata.labels = Some(renamed_keys(legacy.labels()));
    object.metadata.annotations = Some(annotations);
    object.metadata.owner_references = owner.map(|owner| vec![owner]);
    if let Some(spec) = legacy.data.get("spec") {
        object.data = json!({ "spec": spec });
    }
    object
}

/// `refs` with the reference to `legacy_uid` replaced by `new` (keeping its `controller` and
/// `blockOwnerDeletion`), or `None` when none names `legacy_uid`.
pub fn reowned(
    refs: &[OwnerReference],
    legacy_uid: &str,
    new: &OwnerReference,
) -> Option<Vec<OwnerReference>> {
    if !refs.iter().any(|owner| owner.uid == legacy_uid) {
        return None;
    }
    Some(
        refs.iter()
            .map(|owner| {
                if owner.uid == legacy_uid {
                    OwnerReference {
                        controller: owner.controller,
                        block_owner_deletion: owner.block_owner_deletion,
                        ..new.clone()
                    }
                } else {
                    owner.clone()
                }
            })
            .collect(),
    )
}

/// A controller owner reference to `object` of `resource`.
pub fn owner_reference(object: &DynamicObject, resource: &ApiResource) -> OwnerReference {
    OwnerReference {
        api_version: resource.api_version.clone(),
        kind: resource.kind.clone(),
        name: object.name_any(),
        uid: object.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What a run did (or, dry, would do), one line per step.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
}

impl Report {
    fn step(&mut self, line: String) {
        tracing::info!("{line}");
        self.lines.push(line);
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Moves the legacy objects of `namespace` (all namespaces when `None`) to today's group. With `dry_run`, reads
/// only and reports what it would do.
pub async fn migrate(
    client: &Client,
    namespace: Option<&str>,
    dry_run: bool,
) -> Result<Report, BoxError> {
    let mut report = Report::default();
    let legacy_instances = legacy_resource("RedisInstance");
    let legacy_backups = legacy_resource("RedisBackup");
    let instances = match list(client, namespace, &legacy_instances).await? {
        Some(found) => found,
        None => {
            report.step(format!(
                "the {LEGACY_API_GROUP} API is not served here: nothing to migrate"
            ));
            return Ok(report);
        }
    };
    let backups = list(client, namespace, &legacy_backups)
        .await?
        .unwrap_or_default();
    release_short_names(client, dry_run, &mut report).await;
    let new_instances = ApiResource::erase::<RedisInstance>(&());
    let new_backups = ApiResource::erase::<RedisBackup>(&());
    // legacy instance uid -> the new instance's owner reference
    let mut owners: BTreeMap<String, OwnerReference> = BTreeMap::new();
    for legacy in &instances {
        let copy = copy_object(client, legacy, &new_instances, None, dry_run, &mut report).await?;
        let Some(copy) = copy else { continue };
        let owner = owner_reference(&copy, &new_instances);
        relabel_pods_and_claims(client, legacy, dry_run, &mut report).await?;
        owners.insert(legacy.uid().unwrap_or_default(), owner);
    }
    // Legacy objects with a copy: only those are deleted (one whose name is taken by another object stays).
    let mut copied: std::collections::BTreeSet<String> = owners.keys().cloned().collect();
    for legacy in &backups {
        let owner = legacy
            .owner_references()
            .iter()
            .find_map(|owner| owners.get(&owner.uid))
            .cloned();
        if copy_object(client, legacy, &new_backups, owner, dry_run, &mut report)
            .await?
            .is_some()
        {
            copied.insert(legacy.uid().unwrap_or_default());
        }
    }
    for legacy in &instances {
        let Some(owner) = owners.get(&legacy.uid().unwrap_or_default()) else {
            continue;
        };
        let namespace = legacy.namespace().unwrap_or_default();
        let uid = legacy.uid().unwrap_or_default();
        reown_children(client, &namespace, &uid, owner, dry_run, &mut report).await?;
    }
    for (legacy, resource) in backups
        .iter()
        .map(|b| (b, &legacy_backups))
        .chain(instances.iter().map(|i| (i, &legacy_instances)))
    {
        if copied.contains(&legacy.uid().unwrap_or_default()) {
            delete_legacy(client, legacy, resource, dry_run, &mut report).await?;
        }
    }
    if instances.is_empty() && backups.is_empty() {
        report.step(format!(
            "no {LEGACY_API_GROUP} object left: delete its CRDs with `kubectl delete crd \
             redisinstances.{LEGACY_API_GROUP} redisbackups.{LEGACY_API_GROUP}`"
        ));
    }
    Ok(report)
}

/// Takes the short names and categories off the legacy CRDs: while both groups are served, `kubectl get ri`
/// (or `redis`, `all`) would otherwise name the legacy resource, and show nothing once its objects are moved.
/// Needs permission to patch CRDs; without it, says so and goes on (the names clear when the legacy CRDs go).
async fn release_short_names(client: &Client, dry_run: bool, report: &mut Report) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for plural in ["redisinstances", "redisbackups"] {
        let name = format!("{plural}.{LEGACY_API_GROUP}");
        let crd = match crds.get_opt(&name).await {
            Ok(Some(crd)) => crd,
            Ok(None) => continue,
            Err(err) => {
                report.step(format!(
                    "CRD {name}: not read ({err}); its short names stay"
                ));
                continue;
            }
        };
        let names = &crd.spec.names;
        let has = |list: &Option<Vec<String>>| list.as_ref().is_some_and(|l| !l.is_empty());
        if !has(&names.short_names) && !has(&names.categories) {
            continue;
        }
        if dry_run {
            report.step(format!(
                "CRD {name}: would lose its short names and categories"
            ));
            continue;
        }
        let patch = json!({"spec": {"names": {"shortNames": null, "categories": null}}});
        match crds.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => report.step(format!(
                "CRD {name}: short names and categories removed (they name today's resource now)"
            )),
            Err(err) => report.step(format!(
                "CRD {name}: short names kept ({err}); `kubectl get ri` may name the legacy resource until the \
                 legacy CRDs are deleted"
            )),
        }
    }
}

/// The legacy objects of `resource`, or `None` when the API server does not serve it.
async fn list(
    client: &Client,
    namespace: Option<&str>,
    resource: &ApiResource,
) -> Result<Option<Vec<DynamicObject>>, BoxError> {
    let api = dynamic_api(client, namespace, resource);
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(Some(list.items)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(err) => Err(err.into()),
    }
}

fn dynamic_api(
    client: &Client,
    namespace: Option<&str>,
    resource: &ApiResource,
) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

fn describe(object: &DynamicObject, kind: &str) -> String {
    format!(
        "{kind} {}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Creates (or finds, from an earlier run) the copy of `legacy` and copies the status into it. `None` when an
/// object of that name exists that is not a copy of `legacy`: reported, and `legacy` is left alone.
async fn copy_object(
    client: &Client,
    legacy: &DynamicObject,
    resource: &ApiResource,
    owner: Option<OwnerReference>,
    dry_run: bool,
    report: &mut Report,
) -> Result<Option<DynamicObject>, BoxError> {
    let namespace = legacy.namespace().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, resource);
    let what = describe(legacy, &resource.kind);
    let legacy_uid = legacy.uid().unwrap_or_default();
    let copy = match api.get_opt(&legacy.name_any()).await? {
        Some(existing) => {
            if existing.annotations().get(MIGRATED_FROM_ANNOTATION) != Some(&legacy_uid) {
                report.step(format!(
                    "{what}: an object of that name already exists in {API_GROUP} and is not a copy of the \
                     legacy one; left both alone (rename or delete one, then run again)"
                ));
                return Ok(None);
            }
            existing
        }
        None => {
            let copy = migrated_object(legacy, resource, owner);
            if dry_run {
                report.step(format!(
                    "{what}: would be copied to {}",
                    resource.api_version
                ));
                return Ok(Some(copy));
            }
            let created = api.create(&PostParams::default(), &copy).await?;
            report.step(format!("{what}: copied to {}", resource.api_version));
            created
        }
    };
    let status = legacy.data.get("status").filter(|s| !s.is_null());
    let copied = copy.data.get("status").filter(|s| !s.is_null());
    if let (Some(status), None, false) = (status, copied, dry_run) {
        api.patch_status(
            &legacy.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
        report.step(format!("{what}: status copied"));
    }
    Ok(Some(copy))
}

/// Gives the instance's pods the role label, and its claims the primary epoch, under today's keys (the new
/// `NAME` Services select on the new role label before the operator relabels anything).
async fn relabel_pods_and_claims(
    client: &Client,
    legacy: &DynamicObject,
    dry_run: bool,
    report: &mut Report,
) -> Result<(), BoxError> {
    let namespace = legacy.namespace().unwrap_or_default();
    let selector = format!(
        "{INSTANCE_LABEL}={},{MANAGED_BY_LABEL}={MANAGED_BY}",
        legacy.name_any()
    );
    let params = ListParams::default().labels(&selector);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    for pod in pods.list(&params).await? {
        // The legacy role label stays until the pod is replaced: the legacy Services still select on it until the
        // operator applies the new ones.
        if let Some(patch) = rename_patch("labels", pod.labels(), true) {
            rename(&pods, &pod, patch, "labels", dry_run, report).await?;
        }
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    for claim in claims.list(&params).await? {
        if let Some(patch) = rename_patch("annotations", claim.annotations(), false) {
            rename(&claims, &claim, patch, "annotations", dry_run, report).await?;
        }
    }
    Ok(())
}

async fn rename<K>(
    api: &Api<K>,
    object: &K,
    patch: Value,
    field: &str,
    dry_run: bool,
    report: &mut Report,
) -> Result<(), BoxError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let what = format!("{} {}", K::kind(&()), object.name_any());
    if dry_run {
        report.step(format!(
            "{what}: would rename its {LEGACY_API_GROUP}/ {field}"
        ));
        return Ok(());
    }
    api.patch(
        &object.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await?;
    report.step(format!("{what}: {LEGACY_API_GROUP}/ {field} renamed"));
    Ok(())
}

/// Re-points every child in `ns` whose owner reference names `uid` at `owner`: the kinds an instance owns
/// (StatefulSet, Services, ConfigMap, Secrets, PodDisruptionBudgets, NetworkPolicy, claims, RedisBackups).
pub async fn reown_children(
    client: &Client,
    ns: &str,
    uid: &str,
    owner: &OwnerReference,
    dry_run: bool,
    report: &mut Report,
) -> Result<(), BoxError> {
    let uid = uid.to_string();
    reown::<StatefulSet>(client, ns, &uid, owner, dry_run, report).await?;
    reown::<Service>(client, ns, &uid, owner, dry_run, report).await?;
    reown::<ConfigMap>(client, ns, &uid, owner, dry_run, report).await?;
    reown::<Secret>(client, ns, &uid, owner, dry_run, report).await?;
    reown::<PodDisruptionBudget>(client, ns, &uid, owner, dry_run, report).await?;
    reown::<NetworkPolicy>(client, ns, &uid, owner, dry_run, report).await?;
    reown::<PersistentVolumeClaim>(client, ns, &uid, owner, dry_run, report).await?;
    reown::<RedisBackup>(client, ns, &uid, owner, dry_run, report).await?;
    Ok(())
}

async fn reown<K>(
    client: &Client,
    namespace: &str,
    legacy_uid: &str,
    owner: &OwnerReference,
    dry_run: bool,
    report: &mut Report,
) -> Result<(), BoxError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    for object in api.list(&ListParams::default()).await? {
        let Some(refs) = reowned(object.owner_references(), legacy_uid, owner) else {
            continue;
        };
        let what = format!("{} {namespace}/{}", K::kind(&()), object.name_any());
        if dry_run {
            report.step(format!(
                "{what}: would be re-owned by {}",
                owner.api_version
            ));
            continue;
        }
        // The resourceVersion makes the patch fail rather than overwrite a concurrent change of the list.
        let patch = json!({ "metadata": {
            "resourceVersion": object.resource_version(),
            "ownerReferences": refs,
        }});
        api.patch(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?;
        report.step(format!("{what}: re-owned by {}", owner.api_version));
    }
    Ok(())
}

/// Removes the legacy object's finalizers and deletes it, orphaning anything that still names it.
async fn delete_legacy(
    client: &Client,
    legacy: &DynamicObject,
    resource: &ApiResource,
    dry_run: bool,
    report: &mut Report,
) -> Result<(), BoxError> {
    let namespace = legacy.namespace().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, resource);
    let what = describe(
        legacy,
        &format!("{} {}", resource.kind, resource.api_version),
    );
    if dry_run {
        report.step(format!(
            "{what}: would be deleted (orphaning, without its finalizer)"
        ));
        return Ok(());
    }
    if !legacy.finalizers().is_empty() {
        // Gone since it was listed (an earlier run's orphaning deletion finished): nothing left to do.
        match api
            .patch(
                &legacy.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {
                report.step(format!("{what}: already gone"));
                return Ok(());
            }
            Err(err) => return Err(err.into()),
        }
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    match api.delete(&legacy.name_any(), &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(err) => return Err(err.into()),
    }
    report.step(format!("{what}: deleted"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy_instance() -> DynamicObject {
        let resource = legacy_resource("RedisInstance");
        let mut legacy = DynamicObject::new("cache", &resource);
        legacy.metadata.namespace = Some("apps".into());
        legacy.metadata.uid = Some("old-uid".into());
        legacy.metadata.finalizers = Some(vec![format!("{LEGACY_API_GROUP}/finalizer")]);
        legacy.metadata.annotations = Some(BTreeMap::from([
            (
                format!("{LEGACY_API_GROUP}/switchover-to"),
                "cache-1".into(),
            ),
            ("team".into(), "payments".into()),
            (
                LAST_APPLIED.into(),
                "{\"apiVersion\":\"redis.github.com/v1\"}".into(),
            ),
        ]));
        legacy.metadata.labels = Some(BTreeMap::from([("tier".into(), "gold".into())]));
        legacy.data = json!({"spec": {"replicas": 3, "config": {"maxmemory": "64mb"}}, "status": {"phase": "Running"}});
        legacy
    }

    #[test]
    fn the_legacy_resources_are_the_v1_resources_of_the_old_group() {
        let resource = legacy_resource("RedisBackup");
        assert_eq!(resource.api_version, "redis.github.com/v1");
        assert_eq!(resource.plural, "redisbackups");
        assert_eq!(RedisInstance::group(&()), API_GROUP);
        assert_eq!(RedisBackup::group(&()), API_GROUP);
        assert_eq!(RESERVED_PREFIX, format!("{API_GROUP}/"));
        assert!(MIGRATED_FROM_ANNOTATION.starts_with(RESERVED_PREFIX));
    }

    #[test]
    fn a_copy_keeps_name_spec_and_metadata_under_the_new_keys_and_nothing_of_the_old_object_s_life()
    {
        let legacy = legacy_instance();
        let resource = ApiResource::erase::<RedisInstance>(&());
        let copy = migrated_object(&legacy, &resource, None);
        assert_eq!(copy.name_any(), "cache");
        assert_eq!(copy.namespace().as_deref(), Some("apps"));
        assert_eq!(
            copy.types.as_ref().map(|t| t.api_version.as_str()),
            Some("redis-operator.github.io/v1beta1")
        );
        assert_eq!(copy.data["spec"], legacy.data["spec"]);
        assert!(copy.data.get("status").is_none());
        assert!(copy.metadata.finalizers.is_none() && copy.metadata.uid.is_none());
        let annotations = copy.annotations();
        assert_eq!(
            annotations["redis-operator.github.io/switchover-to"],
            "cache-1"
        );
        assert_eq!(annotations["team"], "payments");
        assert_eq!(annotations[MIGRATED_FROM_ANNOTATION], "old-uid");
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert!(!annotations.keys().any(|k| k.starts_with(LEGACY_API_GROUP)));
        assert_eq!(copy.labels()["tier"], "gold");
        // The copy parses as today's type.
        let typed: RedisInstance =
            serde_json::from_value(serde_json::to_value(&copy).unwrap()).unwrap();
        assert_eq!(typed.spec.replicas, 3);
    }

    #[test]
    fn only_legacy_keys_are_renamed_and_a_key_already_renamed_wins() {
        let map = BTreeMap::from([
            ("redis.github.com/role".to_string(), "replica".to_string()),
            (
                "redis-operator.github.io/role".to_string(),
                "primary".to_string(),
            ),
            ("redis.github.com.evil/x".to_string(), "1".to_string()),
            (
                "app.kubernetes.io/instance".to_string(),
                "cache".to_string(),
            ),
        ]);
        let renamed = renamed_keys(&map);
        assert_eq!(renamed["redis-operator.github.io/role"], "primary");
        assert_eq!(renamed["redis.github.com.evil/x"], "1");
        assert!(!renamed.contains_key("redis.github.com/role"));
        assert_eq!(renamed.len(), 3);
        let patch = rename_patch("labels", &map, false).unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"labels": {
                "redis.github.com/role": null,
                "redis-operator.github.io/role": "primary",
            }}})
        );
        let plain = BTreeMap::from([("a".to_string(), "b".to_string())]);
        assert!(rename_patch("labels", &plain, false).is_none());
        // Keeping the old keys: only what the new name lacks is added.
        assert!(rename_patch("labels", &map, true).is_none());
        let old_only =
            BTreeMap::from([("redis.github.com/role".to_string(), "replica".to_string())]);
        assert_eq!(
            rename_patch("labels", &old_only, true).unwrap(),
            json!({"metadata": {"labels": {"redis-operator.github.io/role": "replica"}}})
        );
    }

    #[test]
    fn only_the_reference_to_the_legacy_owner_changes_and_keeps_its_flags() {
        let resource = ApiResource::erase::<RedisInstance>(&());
        let mut new = DynamicObject::new("cache", &resource);
        new.metadata.uid = Some("new-uid".into());
        let owner = owner_reference(&new, &resource);
        let other = OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "x".into(),
            uid: "x-uid".into(),
            controller: None,
            block_owner_deletion: None,
        };
        let legacy = OwnerReference {
            api_version: "redis.github.com/v1".into(),
            kind: "RedisInstance".into(),
            name: "cache".into(),
            uid: "old-uid".into(),
            controller: Some(true),
            block_owner_deletion: None,
        };
        assert!(reowned(std::slice::from_ref(&other), "old-uid", &owner).is_none());
        let refs = reowned(&[other.clone(), legacy], "old-uid", &owner).unwrap();
        assert_eq!(refs[0], other);
        assert_eq!(refs[1].uid, "new-uid");
        assert_eq!(refs[1].api_version, "redis-operator.github.io/v1beta1");
        assert_eq!(refs[1].controller, Some(true));
        assert_eq!(refs[1].block_owner_deletion, None);
    }
}
