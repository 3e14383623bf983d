//! End-to-end scenarios against a real API server, StatefulSet controller and redis-server processes.
//! Each test has its own namespace and operator, so they run in parallel.

mod admission;
mod backup;
mod busy;
mod cluster;
mod exclusive;
mod harness;
mod hostile;
mod knobs;
mod kubectl;
mod live_config;
mod migrate;
mod network_policy;
mod real_node;
mod replication;
mod rollout;
mod security;
mod tenant;
mod tls;
mod versions;

use std::time::Duration;

use harness::*;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::wait::await_condition;
use kube::ResourceExt;
use redis_fsm::{Phase, Reason};
use redis_operator::api::{ClaimDeletePolicy, StorageSpec};
use serde_json::json;

fn storage(size: &str, class: Option<&str>) -> Option<StorageSpec> {
    Some(StorageSpec {
        size: size.into(),
        storage_class_name: class.map(Into::into),
        when_deleted: ClaimDeletePolicy::Retain,
    })
}

/// A change must show `Updating` with `reason` in the first status computed for its generation, then reach
/// Running with the rollout done.
async fn expect_update(
    env: &TestEnv,
    log: &StatusLog,
    name: &str,
    spec: serde_json::Value,
    reason: &str,
) -> i64 {
    let generation = env.patch_spec(name, spec).await;
    let ri = env.wait_running(name).await;
    let first = log.first_for_generation(generation).await;
    assert_eq!(
        (first.status, first.reason.as_str()),
        (Phase::Updating, reason),
        "the first status after the change must say Updating/{reason}: {first:#?}"
    );
    assert_eq!(first.ready, "False");
    let status = ri.status.unwrap();
    assert_eq!(status.ready_replicas, ri.spec.replicas);
    assert_eq!(status.updated_replicas, ri.spec.replicas);
    // Every pod runs the update revision. (Not `currentRevision == updateRevision`: under `OnDelete` a StatefulSet
    // controller before 1.35 never moves currentRevision.)
    let sts = env.statefulsets().get(name).await.unwrap().status.unwrap();
    let pods = env.pods_of(name).await;
    assert_eq!(pods.len(), usize::try_from(ri.spec.replicas).unwrap());
    for pod in &pods {
        assert_eq!(
            redis_operator::observe::rollout::pod_revision(pod),
            sts.update_revision.as_deref(),
            "Running before the rollout finished: {} runs an outdated revision",
            pod.name_any()
        );
    }
    // Let the status log catch up with the Running the test waited for on its own watch.
    let caught_up = async {
        while log.phases_since(generation).last() != Some(&Phase::Running) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, caught_up)
        .await
        .expect("the status log sees Running");
    generation
}

#[tokio::test(flavor = "multi_thread")]
async fn create_goes_through_creating_to_running_and_ready() {
    let env = TestEnv::new("create").await;
    let log = env.create("cache", spec(2)).await;
    let ri = env.wait_running("cache").await;
    let phases = log.phases_through(Phase::Running).await;
    assert_eq!(phases.first(), Some(&Phase::Creating), "phases: {phases:?}");
    assert_eq!(phases.last(), Some(&Phase::Running));
    assert!(ri
        .finalizers()
        .iter()
        .any(|f| f == "redis-operator.github.io/finalizer"));
    let status = ri.status.unwrap();
    assert_eq!((status.replicas, status.ready_replicas), (2, 2));
    assert_eq!(status.history.last().map(|t| t.to), Some(Phase::Running));
    // The children exist, with the config hash on the pod template, and Redis answers on every pod.
    let sts = env.statefulsets().get("cache").await.unwrap();
    let annotations = sts
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert_eq!(
        annotations["redis-operator.github.io/config-hash"].len(),
        64
    );
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(env.client.clone(), &env.ns);
    assert!(
        cms.get("cache-config").await.unwrap().data.unwrap()["redis.conf"].contains("dir /data")
    );
    let svcs: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(env.client.clone(), &env.ns);
    assert_eq!(
        svcs.get("cache-headless")
            .await
            .unwrap()
            .spec
            .unwrap()
            .cluster_ip
            .as_deref(),
        Some("None")
    );
    svcs.get("cache").await.unwrap();
    for pod in env.pods_of("cache").await {
        assert_eq!(redis_command(&pod_ip(&pod), &["PING"]).await, "+PONG\r\n");
    }
    // kubectl wait works on the Ready condition.
    let out = kubectl(env.info)
        .args([
            "wait",
            "--for=condition=Ready",
            "--timeout=10s",
            "-n",
            &env.ns,
            "ri/cache",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_scale_up_and_down() {
    let env = TestEnv::new("scale").await;
    let log = env.create("cache", spec(1)).await;
    env.wait_running("cache").await;
    let generation = expect_update(
        &env,
        &log,
        "cache",
        json!({"replicas": 3}),
        Reason::StatefulSetUpdate.as_str(),
    )
    .await;
    assert_eq!(env.pods_of("cache").await.len(), 3);
    // The serving replica stays up while the new ones start: Updating until all are ready, never Pending.
    assert_eq!(
        log.phases_since(generation),
        [Phase::Updating, Phase::Running]
    );
    expect_update(
        &env,
        &log,
        "cache",
        json!({"replicas": 1}),
        Reason::StatefulSetUpdate.as_str(),
    )
    .await;
    let sts = env.statefulsets();
    let cond = |s: Option<&k8s_openapi::api::apps::v1::StatefulSet>| {
        s.and_then(|s| s.status.as_ref())
            .is_some_and(|st| st.replicas == 1)
    };
    tokio::time::timeout(WAIT, await_condition(sts, "cache", cond))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn image_change_rolls_the_pods() {
    let env = TestEnv::new("image").await;
    let log = env.create("cache", spec(2)).await;
    env.wait_running("cache").await;
    let before = env.pod_uids("cache").await;
    expect_update(
        &env,
        &log,
        "cache",
        json!({"image": "redis:7.4"}),
        Reason::StatefulSetUpdate.as_str(),
    )
    .await;
    for pod in env.pods_of("cache").await {
        assert!(
            !before.contains(&pod.uid().unwrap()),
            "pod {} was not replaced",
            pod.name_any()
        );
        assert_eq!(
            pod.spec.unwrap().containers[0].image.as_deref(),
            Some("redis:7.4")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resources_change_rolls_the_pods() {
    let env = TestEnv::new("resources").await;
    let log = env.create("cache", spec(1)).await;
    env.wait_running("cache").await;
    let resources =
        json!({"resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m"}}});
    expect_update(
        &env,
        &log,
        "cache",
        resources,
        Reason::StatefulSetUpdate.as_str(),
    )
    .await;
    let pod = env.pods_of("cache").await.remove(0);
    let limits = pod.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap()
        .limits
        .unwrap();
    assert_eq!(limits["memory"].0, "256Mi");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_change_restarts_pods_with_the_new_value() {
    // `databases` cannot be set at runtime: changing it restarts the pods (live directives do not, see
    // live_config.rs).
    let env = TestEnv::new("config").await;
    let mut s = spec(2);
    s.config.insert("databases".into(), "16".into());
    let log = env.create("cache", s).await;
    env.wait_running("cache").await;
    let ip = pod_ip(&env.pods_of("cache").await[0]);
    assert!(redis_command(&ip, &["CONFIG", "GET", "databases"])
        .await
        .contains("\r\n16\r\n"));
    let sts_uid = env.statefulsets().get("cache").await.unwrap().uid();
    expect_update(
        &env,
        &log,
        "cache",
        json!({"config": {"databases": "32"}}),
        Reason::StatefulSetRestart.as_str(),
    )
    .await;
    assert_eq!(
        env.statefulsets().get("cache").await.unwrap().uid(),
        sts_uid,
        "no StatefulSet recreation for config"
    );
    for pod in env.pods_of("cache").await {
        let reply = redis_command(&pod_ip(&pod), &["CONFIG", "GET", "databases"]).await;
        assert!(
            reply.contains("\r\n32\r\n"),
            "pod {} still runs the old config: {reply:?}",
            pod.name_any()
        );
    }
}

/// Writes a key on the primary, waits until every pod holds it and saves it on every pod; returns the pods'
/// UIDs.
async fn write_marker(env: &TestEnv, name: &str) -> Vec<String> {
    let replicas = env.instances().get(name).await.unwrap().spec.replicas;
    let status = env
        .wait_status(
            name,
            "labelled with a primary and in-sync replicas",
            move |s| {
                s.current_primary.is_some()
                    && s.pods.len() == replicas as usize
                    && s.pods.iter().all(|p| !p.label.is_empty())
            },
        )
        .await
        .status
        .unwrap();
    let primary = env
        .pods()
        .get(status.current_primary.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        redis_command(&pod_ip(&primary), &["SET", "marker", "kept"]).await,
        "+OK\r\n"
    );
    let mut uids = Vec::new();
    for pod in env.pods_of(name).await {
        let ip = pod_ip(&pod);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !redis_command(&ip, &["GET", "marker"])
            .await
            .contains("kept")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "marker never reached {}",
                pod.name_any()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(redis_command(&ip, &["SAVE"]).await, "+OK\r\n");
        uids.push(pod.uid().unwrap());
    }
    uids
}

async fn assert_marker_kept(env: &TestEnv, name: &str, uids: &[String]) {
    for pod in env.pods_of(name).await {
        assert!(
            uids.contains(&pod.uid().unwrap()),
            "pod {} was restarted",
            pod.name_any()
        );
        let reply = redis_command(&pod_ip(&pod), &["GET", "marker"]).await;
        assert!(
            reply.contains("kept"),
            "data lost on {}: {reply:?}",
            pod.name_any()
        );
    }
}

/// Creates `cache` with `replicas` pods on claims of `class`, waits for Running and writes a marker key to
/// every pod; returns the status log and the pods' UIDs.
async fn running_with_storage(
    env: &TestEnv,
    replicas: i32,
    class: &str,
) -> (StatusLog, Vec<String>) {
    let mut s = spec(replicas);
    s.storage = storage("1Gi", Some(class));
    let log = env.create("cache", s).await;
    env.wait_running("cache").await;
    (log, write_marker(env, "cache").await)
}

async fn claims_of(env: &TestEnv) -> Vec<k8s_openapi::api::core::v1::PersistentVolumeClaim> {
    env.claims()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

fn storage_request(spec: Option<&k8s_openapi::api::core::v1::PersistentVolumeClaimSpec>) -> String {
    spec.and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .map(|r| r["storage"].0.clone())
        .unwrap_or_default()
}

/// Waits until an Event with `reason` was recorded in the test namespace; returns its note.
async fn wait_event(env: &TestEnv, reason: &str) -> String {
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(env.client.clone(), &env.ns);
    let wait = async {
        loop {
            let list = events.list(&ListParams::default()).await.unwrap();
            if let Some(event) = list
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
            {
                break event.note.unwrap_or_default();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("no {reason} event"))
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_growth_expands_claims_and_keeps_pods_and_data() {
    let env = TestEnv::new("grow").await;
    let (log, uids) = running_with_storage(&env, 2, "devcluster-expandable").await;
    let sts_uid = env.statefulsets().get("cache").await.unwrap().uid();
    let generation = env
        .patch_spec("cache", json!({"storage": {"size": "2Gi"}}))
        .await;
    env.wait_running("cache").await;
    let first = log.first_for_generation(generation).await;
    assert_eq!(
        (first.status, first.reason.as_str()),
        (Phase::Updating, Reason::StatefulSetRestart.as_str())
    );
    let sts = env.statefulsets().get("cache").await.unwrap();
    assert_ne!(sts.uid(), sts_uid, "the StatefulSet was replaced");
    let template = &sts.spec.unwrap().volume_claim_templates.unwrap()[0];
    assert_eq!(storage_request(template.spec.as_ref()), "2Gi");
    let claims = claims_of(&env).await;
    assert_eq!(claims.len(), 2);
    for claim in &claims {
        assert_eq!(
            storage_request(claim.spec.as_ref()),
            "2Gi",
            "claim {} not expanded",
            claim.name_any()
        );
    }
    // The provisioner grows the volumes; the claims report the new capacity.
    let cond = |c: Option<&k8s_openapi::api::core::v1::PersistentVolumeClaim>| {
        c.and_then(|c| c.status.as_ref())
            .and_then(|s| s.capacity.as_ref())
            .is_some_and(|cap| cap.get("storage").is_some_and(|q| q.0 == "2Gi"))
    };
    for claim in &claims {
        let name = claim.name_any();
        let expanded = await_condition(env.claims(), &name, cond);
        tokio::time::timeout(WAIT, expanded).await.unwrap().unwrap();
    }
    wait_event(&env, "ReplacingStatefulSet").await;
    wait_event(&env, "ExpandingClaim").await;
    assert_marker_kept(&env, "cache", &uids).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_class_change_replaces_statefulset_and_keeps_claims() {
    let env = TestEnv::new("class").await;
    let (log, uids) = running_with_storage(&env, 1, "devcluster-expandable").await;
    let claim_uids: Vec<String> = claims_of(&env)
        .await
        .iter()
        .map(|c| c.uid().unwrap())
        .collect();
    let generation = env
        .patch_spec(
            "cache",
            json!({"storage": {"storageClassName": "devcluster-fixed"}}),
        )
        .await;
    env.wait_running("cache").await;
    let first = log.first_for_generation(generation).await;
    assert_eq!(first.status, Phase::Updating);
    assert!(
        first
            .last_condition_message
            .contains("existing claims keep storage class devcluster-expandable"),
        "{first:#?}"
    );
    let now: Vec<String> = claims_of(&env)
        .await
        .iter()
        .map(|c| c.uid().unwrap())
        .collect();
    assert_eq!(now, claim_uids, "claims must be kept");
    let sts = env.statefulsets().get("cache").await.unwrap();
    let template = &sts.spec.unwrap().volume_claim_templates.unwrap()[0];
    assert_eq!(
        template
            .spec
            .as_ref()
            .unwrap()
            .storage_class_name
            .as_deref(),
        Some("devcluster-fixed")
    );
    assert_marker_kept(&env, "cache", &uids).await;
}

/// The CRD's admission rules refuse a shrink or removal of storage before the operator sees it (the operator's
/// own refusal, for clusters without the rules, is covered by the unit tests of `change`).
#[tokio::test(flavor = "multi_thread")]
async fn storage_shrink_and_removal_are_refused_and_touch_nothing() {
    let env = TestEnv::new("shrink").await;
    let mut s = spec(1);
    s.storage = storage("2Gi", None);
    env.create("cache", s).await;
    let running = env.wait_running("cache").await;
    let before = env.statefulsets().get("cache").await.unwrap();
    for change in [
        json!({"storage": {"size": "1Gi"}}),
        json!({"storage": null}),
    ] {
        let patch = json!({ "spec": change });
        let err = env
            .instances()
            .patch(
                "cache",
                &Default::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .expect_err("the change is refused at admission");
        let kube::Error::Api(status) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(status.code, 422, "{status:?}");
        assert!(status.message.contains("spec.storage"), "{status:?}");
        let after = env.statefulsets().get("cache").await.unwrap();
        assert_eq!(after.uid(), before.uid());
        assert_eq!(
            after.metadata.generation, before.metadata.generation,
            "StatefulSet was changed"
        );
    }
    let ri = env.instances().get("cache").await.unwrap();
    assert_eq!(ri.metadata.generation, running.metadata.generation);
    assert_eq!(ri.spec.storage.unwrap().size, "2Gi");
}

/// What admission cannot see (resource quantities use Kubernetes' own schema) the operator refuses: Failed
/// with InvalidSpec, nothing created, and fixing the spec recovers. What admission can see is refused there.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_specs_fail_with_a_clear_reason_and_create_nothing() {
    let env = TestEnv::new("invalid").await;
    let memory = |value: &str| {
        Some(k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some(
                [(
                    "memory".to_string(),
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity(value.into()),
                )]
                .into(),
            ),
            ..Default::default()
        })
    };
    for (name, value, problem) in [
        ("quantity", "lots", "is not a Kubernetes quantity"),
        ("huge", "8Ei", "is too large"),
    ] {
        let mut s = spec(1);
        s.resources = memory(value);
        env.create(name, s).await;
        let ri = env
            .wait_status(name, "Failed", |s| s.status == Phase::Failed)
            .await;
        let status = ri.status.unwrap();
        assert_eq!(status.reason, Reason::InvalidSpec.as_str());
        assert!(
            status
                .last_condition_message
                .contains("spec.resources.limits.memory")
                && status.last_condition_message.contains(problem),
            "{status:#?}"
        );
        assert!(
            env.statefulsets().get_opt(name).await.unwrap().is_none(),
            "invalid spec created a StatefulSet"
        );
    }

    // The schema and the CEL rules refuse what they can: negative replicas, control characters in config
    // values, directives the operator owns.
    for bad in [
        json!({"replicas": -1}),
        json!({"config": {"maxmemory": "1mb\nport 7000"}}),
        json!({"config": {"dir": "/tmp"}}),
    ] {
        let mut body = json!({"apiVersion": "redis-operator.github.io/v1beta1", "kind": "RedisInstance",
            "metadata": {"name": "schema"}, "spec": bad});
        body["metadata"]["namespace"] = json!(env.ns);
        let ri: redis_operator::api::RedisInstance = serde_json::from_value(body).unwrap();
        let err = env
            .instances()
            .create(&Default::default(), &ri)
            .await
            .unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref e) if e.code == 422),
            "{err:?}"
        );
    }
    // An Event explains the failure.
    wait_event(&env, Reason::InvalidSpec.as_str()).await;
    // Fixing the spec recovers.
    env.patch_spec(
        "quantity",
        json!({"resources": {"limits": {"memory": "64Mi"}}}),
    )
    .await;
    env.wait_running("quantity").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crashing_config_fails_and_recovers_when_fixed() {
    let env = TestEnv::new("crash").await;
    let log = env.create("cache", spec(1)).await;
    env.wait_running("cache").await;
    env.patch_spec("cache", json!({"config": {"maxmemory": "not-a-size"}}))
        .await;
    let ri = env
        .wait_status("cache", "Failed", |s| s.status == Phase::Failed)
        .await;
    let status = ri.status.unwrap();
    assert_eq!(status.reason, Reason::PodsFailing.as_str());
    assert!(
        status.last_condition_message.contains("cache-0"),
        "{status:#?}"
    );
    let generation = env
        .patch_spec("cache", json!({"config": {"maxmemory": "50mb"}}))
        .await;
    env.wait_running("cache").await;
    assert_eq!(
        log.first_for_generation(generation).await.status,
        Phase::Updating
    );
    let ip = pod_ip(&env.pods_of("cache").await[0]);
    assert!(redis_command(&ip, &["CONFIG", "GET", "maxmemory"])
        .await
        .contains("52428800"));
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_records_terminated_and_retains_claims() {
    let env = TestEnv::new("delete").await;
    let mut s = spec(1);
    s.storage = storage("1Gi", None);
    let log = env.create("cache", s).await;
    env.wait_running("cache").await;
    env.delete_and_wait_gone("cache").await;
    let phases = log.phases_through(Phase::Terminated).await;
    assert_eq!(phases.last(), Some(&Phase::Terminated), "{phases:?}");
    let claims = env
        .claims()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(claims.len(), 1, "claims are retained by default");
    assert!(claims[0].metadata.deletion_timestamp.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn history_is_bounded_at_ten() {
    let env = TestEnv::new("history").await;
    env.create("cache", spec(1)).await;
    env.wait_running("cache").await;
    for replicas in [2, 1, 2, 1, 2, 1] {
        env.patch_spec("cache", json!({"replicas": replicas})).await;
        env.wait_running("cache").await;
    }
    let status = env.instances().get("cache").await.unwrap().status.unwrap();
    assert_eq!(status.history.len(), 10, "{:#?}", status.history);
    let last = status.history.last().unwrap();
    assert_eq!(last.to, Phase::Running);
    let pairs: Vec<(Phase, Phase)> = status
        .history
        .entries()
        .iter()
        .map(|t| (t.from, t.to))
        .collect();
    assert!(
        pairs.windows(2).all(|w| w[0].1 == w[1].0),
        "history is a chain: {pairs:?}"
    );
    assert_eq!(Some(last.generation), status.observed_generation);
}

#[tokio::test(flavor = "multi_thread")]
async fn converged_instance_costs_zero_writes_over_resyncs() {
    let env = TestEnv::with_operator_args("idle", &["--resync-seconds", "1"]).await;
    env.create("cache", spec(2)).await;
    env.wait_running("cache").await;
    assert_idle_resyncs_write_nothing(&env).await;
}

/// With the operator resyncing every second (`--resync-seconds 1`) and the instance converged: at least three
/// reconciles make no API write (from the audit log; skipped without one).
pub(crate) async fn assert_idle_resyncs_write_nothing(env: &TestEnv) {
    let Some(user) = env.info.operator_context.as_deref() else {
        eprintln!("no audit log for this cluster: write counting skipped");
        return;
    };
    let ok = "redis_operator_reconciles_total{result=\"ok\"}";
    // One more reconcile after Running was written: the reconcile that wrote it (and its Event) is complete.
    let start = env.operator.metric(ok).await.unwrap_or_default();
    let settled = env.operator.wait_metric_at_least(ok, start + 1.0).await;
    let before = audit_writes(env.info, user, &env.ns).expect("audit log readable");
    assert!(
        !before.is_empty(),
        "the operator's writes must be visible in the audit log"
    );
    // At least three more reconciles (resyncs every second), then compare the writes.
    env.operator.wait_metric_at_least(ok, settled + 3.0).await;
    // The audit log is written asynchronously; give a written request time to appear by re-reading it
    // until two consecutive reads agree.
    let mut after = audit_writes(env.info, user, &env.ns).unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let again = audit_writes(env.info, user, &env.ns).unwrap();
        if again == after {
            break;
        }
        after = again;
    }
    assert_eq!(
        after[before.len()..],
        [] as [String; 0],
        "writes during idle resyncs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_becomes_ready_with_nothing_to_reconcile() {
    // Regression: readiness waits on the watch caches alongside the controller; with no instance to reconcile
    // nothing else wakes it.
    let env = TestEnv::new("ready").await;
    let ready = async {
        while env.operator.http_get("/readyz").await.map(|(code, _)| code) != Some(200) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(WAIT, ready)
        .await
        .expect("/readyz answers 200 once the caches are synced");
    let (code, _) = env
        .operator
        .http_get("/healthz")
        .await
        .expect("/healthz answers");
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_policy_removes_the_claims_when_asked_to() {
    let env = TestEnv::new("delete-claims").await;
    let mut s = spec(1);
    s.storage = Some(StorageSpec {
        size: "1Gi".into(),
        storage_class_name: None,
        when_deleted: ClaimDeletePolicy::Delete,
    });
    env.create("cache", s).await;
    env.wait_running("cache").await;
    assert_eq!(claims_of(&env).await.len(), 1);
    env.instances()
        .delete("cache", &DeleteParams::default())
        .await
        .unwrap();
    let gone = async {
        while claims_of(&env)
            .await
            .iter()
            .any(|c| c.metadata.deletion_timestamp.is_none())
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(WAIT, gone)
        .await
        .expect("claims are deleted with whenDeleted: Delete");
    wait_event(&env, "DeletingClaim").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_child_is_reported_in_status_and_recovers() {
    let env = TestEnv::new("quota").await;
    let quotas = zero_quota(&env, "no-services", "services").await;
    env.create("cache", spec(1)).await;
    let ri = env
        .wait_status("cache", "Failed", |s| s.status == Phase::Failed)
        .await;
    let status = ri.status.unwrap();
    assert_eq!(status.reason, Reason::ChildMissing.as_str());
    assert!(
        status.last_condition_message.contains("Service cache"),
        "{status:#?}"
    );
    quotas
        .delete("no-services", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_running("cache").await;
}
