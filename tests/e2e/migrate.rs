//! Upgrading from the API group before 0.2: an instance serving confirmed writes under `redis.github.com/v1`
//! (objects, owner references, pod labels and claim annotations as 0.1 left them) is moved by
//! `redis-operator migrate-api` and taken over by today's operator without a lost write, a deleted claim or a
//! deleted child.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, PropagationPolicy,
};
use kube::{Api, ResourceExt};
use serde_json::json;

use redis_operator::api::{ClaimDeletePolicy, RedisBackup, RedisInstance, StorageSpec};
use redis_operator::migrate::{legacy_resource, owner_reference, reown_children, Report};
use redis_operator::names::{
    LEGACY_API_GROUP, MIGRATED_FROM_ANNOTATION, PRIMARY_EPOCH_ANNOTATION, RESERVED_PREFIX,
    ROLE_LABEL,
};

use crate::harness::*;
use crate::replication::{
    finish_and_check, three_converged_with_a_writer, wait_converged, wait_writes,
};

/// `key` under the legacy prefix.
fn legacy_key(key: &str) -> String {
    format!(
        "{LEGACY_API_GROUP}/{}",
        key.strip_prefix(RESERVED_PREFIX).unwrap()
    )
}

/// A merge patch moving `key` of `field` (`labels`, `annotations`) to its legacy name.
fn to_legacy(field: &str, key: &str, map: &BTreeMap<String, String>) -> Option<serde_json::Value> {
    let value = map.get(key)?;
    Some(json!({"metadata": {field: {key: null, legacy_key(key): value}}}))
}

fn migrate_api(env: &TestEnv) -> String {
    run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_redis-operator"))
            .env("KUBECONFIG", &env.info.kubeconfig)
            .args(["migrate-api", "--namespace", &env.ns]),
        None,
    )
}

/// Creates a legacy `RedisBackup` of the instance `cache` named `name`; returns the legacy backups' API.
async fn create_legacy_backup(env: &TestEnv, name: &str) -> Api<DynamicObject> {
    let backups: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), &env.ns, &legacy_resource("RedisBackup"));
    let mut backup = DynamicObject::new(name, &legacy_resource("RedisBackup"));
    backup.data = json!({"spec": {"instance": "cache"}});
    backups
        .create(&PostParams::default(), &backup)
        .await
        .unwrap();
    backups
}

/// Turns `cache` (made by today's operator, which is stopped) into what 0.1 left: a `redis.github.com/v1`
/// object with the same spec and status owning the children, the legacy role label on the pods, the legacy
/// primary-epoch annotation on the claims (the Services keep today's selector: 0.1's, under the same field
/// manager, is replaced by today's operator's apply, which this test cannot reproduce); and a legacy `RedisBackup`. Then
/// deletes today's object without touching anything it owned.
async fn make_legacy(env: &TestEnv) -> DynamicObject {
    let patch = PatchParams::default();
    let ri = env.instances().get("cache").await.unwrap();
    let legacy_api: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &env.ns,
        &legacy_resource("RedisInstance"),
    );
    let mut legacy = DynamicObject::new("cache", &legacy_resource("RedisInstance"));
    legacy.metadata.finalizers = Some(vec![format!("{LEGACY_API_GROUP}/finalizer")]);
    legacy.data = json!({"spec": serde_json::to_value(&ri.spec).unwrap()});
    let legacy = legacy_api
        .create(&PostParams::default(), &legacy)
        .await
        .unwrap();
    legacy_api
        .patch_status(
            "cache",
            &patch,
            &Patch::Merge(json!({"status": serde_json::to_value(&ri.status).unwrap()})),
        )
        .await
        .unwrap();
    let legacy_owner = owner_reference(&legacy, &legacy_resource("RedisInstance"));
    let mut report = Report::default();
    reown_children(
        &env.client,
        &env.ns,
        ri.metadata.uid.as_deref().unwrap(),
        &legacy_owner,
        false,
        &mut report,
    )
    .await
    .unwrap();
    assert!(
        report.lines.iter().any(|l| l.starts_with("StatefulSet")),
        "{:?}",
        report.lines
    );
    for pod in env.pods_of("cache").await {
        if let Some(p) = to_legacy("labels", ROLE_LABEL, pod.labels()) {
            env.pods()
                .patch(&pod.name_any(), &patch, &Patch::Merge(p))
                .await
                .unwrap();
        }
    }
    for claim in env.claims().list(&ListParams::default()).await.unwrap() {
        if let Some(p) = to_legacy("annotations", PRIMARY_EPOCH_ANNOTATION, claim.annotations()) {
            env.claims()
                .patch(&claim.name_any(), &patch, &Patch::Merge(p))
                .await
                .unwrap();
        }
    }
    let backups = create_legacy_backup(env, "cache-manual").await;
    let failed = json!({"status": {"phase": "Failed", "reason": "NoBackupTarget",
        "message": "the instance cache has no spec.backup"}});
    backups
        .patch_status("cache-manual", &patch, &Patch::Merge(failed))
        .await
        .unwrap();
    // Today's object goes; nothing names it any more, and orphaning guards the rest.
    env.instances()
        .patch(
            "cache",
            &patch,
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    let orphan = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    env.instances().delete("cache", &orphan).await.unwrap();
    wait_until("today's object is gone", || async {
        env.instances().get_opt("cache").await.unwrap().is_none()
    })
    .await;
    legacy
}

/// Each claim's uid, by name.
async fn claim_uids(env: &TestEnv) -> BTreeMap<String, String> {
    env.claims()
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.name_any(), c.uid().unwrap()))
        .collect()
}

async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(180);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_api_moves_a_serving_instance_off_the_legacy_group_without_losing_anything() {
    let mut env = TestEnv::new("migrate").await;
    install_legacy_crds(env.info);
    let mut s = spec(3);
    s.storage = Some(StorageSpec {
        size: "1Gi".into(),
        storage_class_name: None,
        when_deleted: ClaimDeletePolicy::Retain,
    });
    let (_, writer) = three_converged_with_a_writer(&env, s).await;
    let claims_before = claim_uids(&env).await;
    assert_eq!(claims_before.len(), 3);

    // 0.1's operator is stopped for the upgrade; its objects stay, and Redis keeps serving.
    env.operator.stop();
    let legacy = make_legacy(&env).await;
    wait_writes(&writer, 20).await;

    let dry = run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_redis-operator"))
            .env("KUBECONFIG", &env.info.kubeconfig)
            .args(["migrate-api", "--dry-run", "--namespace", &env.ns]),
        None,
    );
    assert!(dry.contains("would be copied"), "{dry}");
    let legacy_instances: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &env.ns,
        &legacy_resource("RedisInstance"),
    );
    assert!(
        legacy_instances.get_opt("cache").await.unwrap().is_some(),
        "a dry run changed nothing"
    );

    // A backup of today's group that took a legacy backup's name: both are left alone and the run says so; once it
    // is out of the way, a second run moves the legacy one.
    let legacy_backups = create_legacy_backup(&env, "taken").await;
    let backups: Api<RedisBackup> = Api::namespaced(env.client.clone(), &env.ns);
    let mut other = RedisBackup::new(
        "taken",
        redis_operator::api::RedisBackupSpec {
            instance: "elsewhere".into(),
        },
    );
    other.metadata.namespace = Some(env.ns.clone());
    backups
        .create(&PostParams::default(), &other)
        .await
        .unwrap();
    let out = migrate_api(&env);
    eprintln!("migrate-api:\n{out}");
    assert!(
        out.contains("RedisBackup")
            && out.contains("/taken: an object of that name already exists"),
        "{out}"
    );
    assert!(legacy_backups.get_opt("taken").await.unwrap().is_some());
    assert_eq!(
        backups.get("taken").await.unwrap().spec.instance,
        "elsewhere"
    );
    backups
        .delete("taken", &DeleteParams::default())
        .await
        .unwrap();
    wait_until("the other backup is gone", || async {
        backups.get_opt("taken").await.unwrap().is_none()
    })
    .await;
    let out = migrate_api(&env);
    eprintln!("migrate-api, again:\n{out}");
    assert_eq!(backups.get("taken").await.unwrap().spec.instance, "cache");
    // The legacy objects are gone, deleted without their finalizer and orphaning.
    for kind in ["RedisInstance", "RedisBackup"] {
        let api: Api<DynamicObject> =
            Api::namespaced_with(env.client.clone(), &env.ns, &legacy_resource(kind));
        wait_until(&format!("no legacy {kind} is left"), || async {
            api.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
        })
        .await;
    }
    // The copy: named as before, with the legacy uid recorded and the status carried over, before any
    // operator ran.
    let copy = env.instances().get("cache").await.unwrap();
    assert_eq!(
        copy.annotations().get(MIGRATED_FROM_ANNOTATION),
        legacy.uid().as_ref()
    );
    assert_eq!(copy.spec.replicas, 3);
    assert_eq!(
        copy.status.as_ref().map(|s| s.status),
        Some(redis_fsm::Phase::Running)
    );
    let statefulset = env.statefulsets().get("cache").await.unwrap();
    assert_eq!(
        statefulset.owner_references()[0].uid,
        copy.uid().unwrap(),
        "the StatefulSet is the copy's"
    );
    let backup: RedisBackup = Api::namespaced(env.client.clone(), &env.ns)
        .get("cache-manual")
        .await
        .unwrap();
    assert_eq!(
        backup.status.as_ref().map(|s| s.reason.as_str()),
        Some("NoBackupTarget")
    );
    // Every pod carries the role label under the new key, exactly one of them primary; the claims the epoch.
    let pods = env.pods_of("cache").await;
    let primaries = pods
        .iter()
        .filter(|p| p.labels().get(ROLE_LABEL).map(String::as_str) == Some("primary"))
        .count();
    assert_eq!(
        primaries,
        1,
        "{:?}",
        pods.iter().map(|p| p.labels()).collect::<Vec<_>>()
    );
    let claims = env.claims().list(&ListParams::default()).await.unwrap();
    assert!(claims
        .iter()
        .any(|c| c.annotations().contains_key(PRIMARY_EPOCH_ANNOTATION)));
    assert!(claims.iter().all(|c| !c
        .annotations()
        .keys()
        .any(|k| k.starts_with(LEGACY_API_GROUP))));

    // While both groups are served, the short name is today's: the legacy CRD gave its up.
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    let legacy_crd = crds
        .get(&format!("redisinstances.{LEGACY_API_GROUP}"))
        .await
        .unwrap();
    assert!(legacy_crd
        .spec
        .names
        .short_names
        .unwrap_or_default()
        .is_empty());
    let listed = run_ok(
        kubectl(env.info).args(["get", "ri", "-o", "name", "--namespace", &env.ns]),
        None,
    );
    assert_eq!(
        listed.trim(),
        "redisinstance.redis-operator.github.io/cache"
    );

    // Today's operator takes over, and no confirmed write is lost. (This instance's pod template is already
    // today's, so its pods stay; 0.1's template differs, and its pods are replaced once, as by any template change.)
    env.operator = Operator::start(env.info, &env.ns, &[]);
    // The copied status already says Running: wait for today's operator's own pass (it adds its finalizer).
    wait_until("today's operator reconciled the copy", || async {
        env.instances()
            .get("cache")
            .await
            .unwrap()
            .finalizers()
            .iter()
            .any(|f| f.starts_with(RESERVED_PREFIX))
    })
    .await;
    wait_until("the pods run today's template", || async {
        let sts = env.statefulsets().get("cache").await.unwrap();
        let status = sts.status.unwrap_or_default();
        status.update_revision.is_some()
            && status.update_revision == status.current_revision
            && status.updated_replicas == Some(3)
            && env
                .instances()
                .get("cache")
                .await
                .unwrap()
                .status
                .is_some_and(|s| {
                    s.status == redis_fsm::Phase::Running
                        && s.observed_generation == copy.metadata.generation
                })
    })
    .await;
    wait_converged(&env, "cache", 3).await;
    wait_writes(&writer, 20).await;
    finish_and_check(&env, writer, "migrate-api").await;
    let claims_after = claim_uids(&env).await;
    assert_eq!(
        claims_after, claims_before,
        "no claim was deleted or replaced"
    );
    let copy: RedisInstance = env.instances().get("cache").await.unwrap();
    assert!(copy
        .finalizers()
        .iter()
        .all(|f| f.starts_with(RESERVED_PREFIX)));

    // A second run finds nothing to do.
    let again = migrate_api(&env);
    assert!(again.contains("no redis.github.com object left"), "{again}");
}
