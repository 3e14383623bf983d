//! A shared cluster (issue 19, items 2 and 5): objects the operator does not own neither grow its memory nor get
//! used by an instance. A Secret in `NAME-auth`'s place or a claim in a data claim's place that someone else made
//! is refused and left alone; 100 MB of unrelated Secrets and labelled ConfigMaps leave the operator's memory where
//! it was, while a change of a Secret an instance names still reconciles it.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use redis_fsm::{Phase, Reason};
use redis_operator::api::{RedisInstanceStatus, SecretKeyRef};
use serde_json::json;

use super::{storage, wait_event};
use crate::harness::*;

fn secrets(env: &TestEnv) -> Api<Secret> {
    Api::namespaced(env.client.clone(), &env.ns)
}

fn opaque(name: &str, data: &[(&str, &[u8])]) -> Secret {
    let mut secret = Secret {
        type_: Some("Opaque".into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    secret.metadata.name = Some(name.into());
    secret
}

fn failed_with(reason: &'static str) -> impl Fn(&RedisInstanceStatus) -> bool {
    move |s| s.status == Phase::Failed && s.reason == reason
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_secret_someone_else_made_in_name_auths_place_is_refused_and_left_alone() {
    let env = TestEnv::new("foreign-auth").await;
    // Someone who may create Secrets (or an earlier, unrelated application) put a password of their choosing
    // where the generated one goes: an instance that used it would serve data behind a password they know.
    let planted = secrets(&env)
        .create(
            &PostParams::default(),
            &opaque("cache-auth", &[("password", b"known-to-someone-else")]),
        )
        .await
        .unwrap();
    env.create("cache", spec(1)).await;
    let ri = env
        .wait_status(
            "cache",
            "Failed: NAME-auth is not its own",
            failed_with(Reason::ChildConflict.as_str()),
        )
        .await;
    let message = ri.status.unwrap().last_condition_message;
    assert!(message.contains("Secret cache-auth"), "{message}");
    let note = wait_event(&env, Reason::ChildConflict.as_str()).await;
    assert!(note.contains("Secret cache-auth"), "{note}");

    // Nothing was used or touched: no pods, no NAME-acl, the Secret as it was (not adopted, not rewritten).
    assert!(env.statefulsets().get_opt("cache").await.unwrap().is_none());
    assert!(secrets(&env).get_opt("cache-acl").await.unwrap().is_none());
    let live = secrets(&env).get("cache-auth").await.unwrap();
    assert_eq!(live.resource_version(), planted.resource_version());
    assert!(live.owner_references().is_empty(), "adopted");

    // Once it is gone the instance generates its own and runs (its deletion reconciles the instance).
    secrets(&env)
        .delete("cache-auth", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_running("cache").await;
    let own = secrets(&env).get("cache-auth").await.unwrap();
    let uid = env.instances().get("cache").await.unwrap().uid();
    assert!(own
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == uid.as_ref() && o.controller == Some(true)));
    let password = secret_value(&env.client, &env.ns, "cache-auth", "password")
        .await
        .unwrap();
    assert_ne!(password, "known-to-someone-else");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_secret_someone_else_made_in_name_acls_place_blocks_the_instance_until_it_goes() {
    let env = TestEnv::new("foreign-acl").await;
    // NAME-acl (the Redis users' Secret): refused and untouched, and the instance goes on once the Secret is
    // gone, although nothing in the instance's spec names it (its deletion must still reconcile the instance).
    let planted = secrets(&env)
        .create(
            &PostParams::default(),
            &opaque(
                "other-acl",
                &[("users.acl", b"user default on nopass ~* +@all")],
            ),
        )
        .await
        .unwrap();
    env.create("other", spec(1)).await;
    let ri = env
        .wait_status(
            "other",
            "Failed: NAME-acl is not its own",
            failed_with(Reason::ChildConflict.as_str()),
        )
        .await;
    let message = ri.status.unwrap().last_condition_message;
    assert!(message.contains("Secret other-acl"), "{message}");
    assert!(env.statefulsets().get_opt("other").await.unwrap().is_none());
    let live = secrets(&env).get("other-acl").await.unwrap();
    assert_eq!(live.resource_version(), planted.resource_version());
    secrets(&env)
        .delete("other-acl", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_running("other").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_someone_else_made_in_a_data_claims_place_is_refused_and_never_deleted() {
    let env = TestEnv::new("foreign-claim").await;
    let claims = env.claims();
    // Another application's claim that happens to have the name a data claim of `cache` would have (a StatefulSet
    // `cache` with a volume `data` names its claims the same way).
    let theirs: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data-cache-0", "labels": {"app": "theirs"}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        }
    }))
    .unwrap();
    let theirs = claims
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    let mut s = spec(1);
    s.storage = storage("1Gi", None);
    s.storage.as_mut().unwrap().when_deleted = redis_operator::api::ClaimDeletePolicy::Delete;
    env.create("cache", s.clone()).await;
    let ri = env
        .wait_status(
            "cache",
            "Failed: data-cache-0 is not its own",
            failed_with(Reason::ChildConflict.as_str()),
        )
        .await;
    let message = ri.status.unwrap().last_condition_message;
    assert!(
        message.contains("PersistentVolumeClaim data-cache-0"),
        "{message}"
    );
    wait_event(&env, Reason::ChildConflict.as_str()).await;
    // No pod was started on it.
    assert!(env.statefulsets().get_opt("cache").await.unwrap().is_none());
    assert!(env.pods_of("cache").await.is_empty());

    // Deleting the instance (whose policy deletes its claims) leaves the foreign claim alone.
    env.delete_and_wait_gone("cache").await;
    let live = claims.get("data-cache-0").await.unwrap();
    assert_eq!(live.uid(), theirs.uid());
    assert!(live.metadata.deletion_timestamp.is_none(), "deleted");
    assert_eq!(live.labels(), theirs.labels(), "relabelled");

    // An instance re-created over its own retained claims keeps using them.
    s.storage.as_mut().unwrap().when_deleted = redis_operator::api::ClaimDeletePolicy::Retain;
    env.create("own", s.clone()).await;
    env.wait_running("own").await;
    let first = claims.get("data-own-0").await.unwrap().uid();
    env.delete_and_wait_gone("own").await;
    env.create("own", s).await;
    env.wait_running("own").await;
    assert_eq!(claims.get("data-own-0").await.unwrap().uid(), first);
}

/// The operator process's resident set (`VmRSS` of /proc/PID/status), in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// How many unrelated objects of 700 KB each are created: 100 Secrets and 50 ConfigMaps that carry the
/// operator's labels, about 105 MB.
const UNRELATED_SECRETS: usize = 100;
const LABELLED_CONFIG_MAPS: usize = 50;
const OBJECT_BYTES: usize = 700 * 1024;
/// How much the operator's resident set may grow with them.
const RSS_BOUND_KIB: u64 = 10 * 1024;
/// The label of those objects (so the test removes them, and only them, at its end).
const FILLER_LABEL: &str = "e2e-filler=true";

/// Waits until the operator has reconciled at least once more than `since` (so its caches are synced and it
/// has acted on what they hold).
async fn one_more_reconcile(operator: &Operator) {
    let ok = "redis_operator_reconciles_total{result=\"ok\"}";
    let since = operator.metric(ok).await.unwrap_or_default();
    operator.wait_metric_at_least(ok, since + 1.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unrelated_secrets_and_labelled_objects_leave_the_operators_memory_flat() {
    let mut env = TestEnv::new("memory").await;
    // The instance reads a password Secret of the user's: its change must still reach the instance.
    secrets(&env)
        .create(
            &PostParams::default(),
            &opaque("app-password", &[("pw", b"first-password")]),
        )
        .await
        .unwrap();
    let mut s = spec(1);
    s.auth.secret_ref = Some(SecretKeyRef {
        name: "app-password".into(),
        key: "pw".into(),
    });
    env.create("cache", s).await;
    env.wait_running("cache").await;
    one_more_reconcile(&env.operator).await;
    let before = rss_kib(env.operator.pid());

    // About 100 MB the operator has no business keeping: Opaque Secrets nobody references, and ConfigMaps that
    // carry the operator's labels (anyone may set a label) but are not owned by any instance.
    let filler: Vec<u8> = (0..OBJECT_BYTES).map(|i| b'a' + (i % 26) as u8).collect();
    let text = String::from_utf8(filler.clone()).unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    futures::stream::iter(0..UNRELATED_SECRETS)
        .map(|i| {
            let mut secret = opaque(&format!("unrelated-{i}"), &[("blob", &filler)]);
            secret.metadata.labels = Some([("e2e-filler".to_string(), "true".to_string())].into());
            let api = secrets(&env);
            async move { api.create(&PostParams::default(), &secret).await.map(drop) }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await
        .expect("the unrelated Secrets are created");
    futures::stream::iter(0..LABELLED_CONFIG_MAPS)
        .map(|i| {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": format!("labelled-{i}"), "labels": {
                    "app.kubernetes.io/managed-by": "redis-operator",
                    "app.kubernetes.io/instance": "cache",
                    "app.kubernetes.io/name": "redis",
                    "e2e-filler": "true",
                }},
                "data": {"blob": text},
            }))
            .unwrap();
            let api = config_maps.clone();
            async move { api.create(&PostParams::default(), &cm).await.map(drop) }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await
        .expect("the labelled ConfigMaps are created");

    // A rotation of the user's Secret, made after every unrelated Secret, still reaches the instance: the
    // operator's Secret watch has gone past all of them when the new password is in force.
    let rotated = secrets(&env)
        .replace("app-password", &PostParams::default(), &{
            let mut live = secrets(&env).get("app-password").await.unwrap();
            live.data = opaque("app-password", &[("pw", b"second-password")]).data;
            live
        })
        .await
        .unwrap();
    let version = rotated.resource_version();
    env.wait_status("cache", "the rotated password in force", move |s| {
        s.auth
            .as_ref()
            .and_then(|a| a.applied_secret_version.clone())
            == version
    })
    .await;
    one_more_reconcile(&env.operator).await;
    let after_watch = rss_kib(env.operator.pid());

    // A fresh operator lists all of them at start (its readiness waits for every cache's initial list).
    env.operator.stop();
    env.operator = Operator::start(env.info, &env.ns, &[]);
    one_more_reconcile(&env.operator).await;
    env.wait_running("cache").await;
    let after_list = rss_kib(env.operator.pid());

    eprintln!(
        "operator RSS: {before} KiB before, {after_watch} KiB after watching ~{} MB of unrelated objects, \
         {after_list} KiB for an operator started with them",
        (UNRELATED_SECRETS + LABELLED_CONFIG_MAPS) * OBJECT_BYTES / 1_000_000
    );
    for (what, rss) in [("watched", after_watch), ("listed", after_list)] {
        assert!(
            rss <= before + RSS_BOUND_KIB,
            "the operator grew from {before} KiB to {rss} KiB with unrelated objects {what} (bound: {} KiB)",
            RSS_BOUND_KIB
        );
    }
    // The labelled ConfigMaps were not taken for the instance's own.
    let listed = config_maps
        .list(&ListParams::default().labels("app.kubernetes.io/instance=cache"))
        .await
        .unwrap();
    assert!(listed
        .items
        .iter()
        .any(|cm| cm.name_any() == "cache-config"));
    assert!(listed
        .items
        .iter()
        .filter(|cm| cm.name_any().starts_with("labelled-"))
        .all(|cm| cm.owner_references().is_empty()));
    // Remove the bulk now rather than with the namespace, so the API server sheds it soon.
    let filler = ListParams::default().labels(FILLER_LABEL);
    let _ = secrets(&env)
        .delete_collection(&DeleteParams::default(), &filler)
        .await;
    let _ = config_maps
        .delete_collection(&DeleteParams::default(), &filler)
        .await;
}
