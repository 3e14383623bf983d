//! Hostile input: objects and situations from the reliability trial (undecodable objects, foreign objects in a
//! child's place, changes that never converge, pods the StatefulSet controller refuses, an operator killed
//! mid-replace, deletions, SIGTERM while blocked, API server restarts). Each test applies the input and checks
//! what the operator does: status, children untouched, no tight loop, other instances still reconciled.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, PropagationPolicy,
};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use redis_fsm::{Phase, Reason};
use redis_operator::api::RedisInstance;
use redis_operator::classify::replace::ReplaceRecord;
use redis_operator::events::EventReason;
use serde_json::json;

use super::{claims_of, storage, wait_event};
use crate::harness::*;
use redis_operator::names::REPLACE_ANNOTATION;

/// A value no log line may contain: it stands for a password in an instance's configuration.
const SECRET: &str = "hunter2-do-not-log";

/// The sum of every `redis_operator_reconciles_total` series except `result="ok"`.
async fn failed_reconciles(operator: &Operator) -> f64 {
    let (_, body) = operator.http_get("/metrics").await.unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with("redis_operator_reconciles_total{"))
        .filter(|l| !l.contains("result=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sum of every `redis_operator_reconciles_total` series.
async fn all_reconciles(operator: &Operator) -> f64 {
    let (_, body) = operator.http_get("/metrics").await.unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with("redis_operator_reconciles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until `/readyz` answers 200.
async fn wait_ready(operator: &Operator) {
    let ready = async {
        while operator.http_get("/readyz").await.map(|(code, _)| code) != Some(200) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(WAIT, ready).await.unwrap_or_else(|_| {
        panic!(
            "/readyz never answered 200; log: {}",
            operator.log.display()
        )
    });
}

fn log_text(operator: &Operator) -> String {
    std::fs::read_to_string(&operator.log).unwrap_or_default()
}

/// Writes `body` as a RedisInstance without the typed client (which could not hold an out-of-range value).
async fn create_raw(env: &TestEnv, body: serde_json::Value) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &env.ns,
        &ApiResource::erase::<RedisInstance>(&()),
    );
    let object: DynamicObject = serde_json::from_value(body).unwrap();
    api.create(&PostParams::default(), &object)
        .await
        .map(|_| ())
}

/// Writes an undecodable RedisInstance `name`: through the spec when the API server admits an out-of-range
/// `replicas` (schemas without bounds on API servers that do not check `format: int32`), else through the
/// status subresource. Returns which path worked, or `None` when the API server admits neither (Kubernetes
/// 1.37 checks `format: int32`; only objects stored earlier can then be undecodable, which the unit tests of
/// `watch::decode` cover).
async fn write_undecodable(env: &TestEnv, name: &str) -> Option<&'static str> {
    let out_of_range = 10_000_000_000i64;
    let body = |replicas: serde_json::Value| {
        json!({
            "apiVersion": "redis-operator.github.io/v1beta1",
            "kind": "RedisInstance",
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "config": {"syslog-ident": SECRET}},
        })
    };
    if create_raw(env, body(json!(out_of_range))).await.is_ok() {
        return Some("spec");
    }
    create_raw(env, body(json!(0)))
        .await
        .expect("a valid instance is created");
    let api: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &env.ns,
        &ApiResource::erase::<RedisInstance>(&()),
    );
    let status = json!({"status": {"status": "Running", "ready": "True", "reason": "AllReplicasReady",
        "lastConditionMessage": "", "replicas": out_of_range}});
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
    {
        Ok(_) => Some("status"),
        Err(error) => {
            eprintln!("the API server admits no out-of-range value ({error})");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undecodable_instance_is_reported_and_the_others_are_still_managed() {
    let mut env = TestEnv::new("undecodable").await;
    let mut good = spec(1);
    good.config.insert("syslog-ident".into(), SECRET.into());
    env.create("good", good).await;
    env.wait_running("good").await;
    let Some(path) = write_undecodable(&env, "bad").await else {
        eprintln!("no undecodable object can be written to this cluster: skipped");
        return;
    };
    eprintln!("undecodable value written through the {path}");

    // A restarted operator lists the undecodable object in its initial list.
    env.operator.stop();
    env.operator = Operator::start(env.info, &env.ns, &[]);
    wait_ready(&env.operator).await;
    let generation = env.patch_spec("good", json!({"replicas": 2})).await;
    let ri = env.wait_running("good").await;
    assert_eq!(ri.status.unwrap().observed_generation, Some(generation));
    wait_event(&env, EventReason::Undecodable.as_str()).await;

    // The running operator meets one too, as a watch event.
    let later = write_undecodable(&env, "bad-later").await;
    assert_eq!(later, Some(path));
    env.patch_spec("good", json!({"replicas": 1})).await;
    env.wait_running("good").await;

    let log = log_text(&env.operator);
    assert!(
        log.contains("bad") && log.contains("cannot decode RedisInstance"),
        "the undecodable object is named in the log"
    );
    assert!(
        !log.contains(SECRET),
        "an object's contents reached the log"
    );
    assert!(
        !log.contains("10000000000"),
        "an object's value reached the log"
    );
    if path == "spec" {
        // Nothing was made for instances the operator never could read.
        for name in ["bad", "bad-later"] {
            assert!(env.statefulsets().get_opt(name).await.unwrap().is_none());
        }
    }
}

/// Waits until a watch has seen the instance with status `Failed` and `reason`.
async fn wait_failed(env: &TestEnv, name: &str, reason: &str) -> RedisInstance {
    let reason = reason.to_string();
    env.wait_status(name, &format!("Failed/{reason}"), move |s| {
        s.status == Phase::Failed && s.reason == reason
    })
    .await
}

/// The operator's writes in the test's namespace over `window` (None without an audit log).
async fn writes_over(env: &TestEnv, window: Duration) -> Option<Vec<String>> {
    let user = env.info.operator_context.as_deref()?;
    // The audit log is written asynchronously: start from a reading that two consecutive reads agree on.
    let mut before = audit_writes(env.info, user, &env.ns)?;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let again = audit_writes(env.info, user, &env.ns)?;
        if again == before {
            break;
        }
        before = again;
    }
    // A measurement window, not a wait for a condition: a loop would show as writes within it.
    tokio::time::sleep(window).await;
    let after = audit_writes(env.info, user, &env.ns)?;
    Some(after[before.len()..].to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_object_in_a_childs_place_is_never_taken_over() {
    let env = TestEnv::new("foreign").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let services: Api<Service> = Api::namespaced(env.client.clone(), &env.ns);
    let foreign_cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cache-config"},
        "data": {"owner": "someone else"}
    }))
    .unwrap();
    config_maps
        .create(&PostParams::default(), &foreign_cm)
        .await
        .unwrap();
    let foreign_svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "cache"},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 8080}]}
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &foreign_svc)
        .await
        .unwrap();

    env.create("cache", spec(1)).await;
    let ri = wait_failed(&env, "cache", Reason::ChildConflict.as_str()).await;
    let message = ri.status.unwrap().last_condition_message;
    assert!(message.contains("ConfigMap cache-config"), "{message}");
    wait_event(&env, Reason::ChildConflict.as_str()).await;
    let untouched = |cm: &ConfigMap, svc: &Service| {
        assert_eq!(
            cm.data.as_ref().unwrap().get("owner").map(String::as_str),
            Some("someone else")
        );
        assert_eq!(cm.data.as_ref().unwrap().len(), 1, "content replaced");
        assert!(cm.owner_references().is_empty(), "ConfigMap adopted");
        assert!(svc.owner_references().is_empty(), "Service adopted");
        let spec = svc.spec.as_ref().unwrap();
        assert_eq!(
            spec.selector
                .as_ref()
                .unwrap()
                .get("app")
                .map(String::as_str),
            Some("theirs")
        );
        assert_eq!(spec.ports.as_ref().unwrap().len(), 1);
        assert_eq!(spec.ports.as_ref().unwrap()[0].port, 8080);
    };
    untouched(
        &config_maps.get("cache-config").await.unwrap(),
        &services.get("cache").await.unwrap(),
    );
    assert!(env.statefulsets().get_opt("cache").await.unwrap().is_none());

    // No loop while blocked: at most the one status write and its Event.
    if let Some(writes) = writes_over(&env, Duration::from_secs(20)).await {
        assert!(
            writes.is_empty(),
            "writes while blocked by a foreign object: {writes:?}"
        );
    }

    // Deleting the instance leaves the foreign objects alone.
    env.delete_and_wait_gone("cache").await;
    // The garbage collector would act on an owner reference within seconds; there is none to act on.
    untouched(
        &config_maps.get("cache-config").await.unwrap(),
        &services.get("cache").await.unwrap(),
    );

    // An instance blocked by a foreign object recovers once the object goes away.
    env.create("other", spec(1)).await;
    let blocker: Service = serde_json::from_value(json!({
        "metadata": {"name": "other"},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 8080}]}
    }))
    .unwrap();
    // The instance may have created its Service already: only a foreign one counts for this part.
    if services
        .create(&PostParams::default(), &blocker)
        .await
        .is_ok()
    {
        wait_failed(&env, "other", Reason::ChildConflict.as_str()).await;
        services
            .delete("other", &DeleteParams::default())
            .await
            .unwrap();
    }
    env.wait_running("other").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storage_size_the_api_server_cannot_hold_does_not_loop() {
    let env = TestEnv::new("huge-claim").await;
    let mut s = spec(1);
    s.storage = storage("1Gi", Some("devcluster-expandable"));
    env.create("cache", s).await;
    env.wait_running("cache").await;
    // Record every StatefulSet the instance gets: a replace loop shows as a stream of new uids.
    let uids = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let seen = uids.clone();
    let config = watcher::Config::default().fields("metadata.name=cache");
    let watch = tokio::spawn(
        watcher(env.statefulsets(), config)
            .applied_objects()
            .for_each(move |sts: Result<StatefulSet, _>| {
                if let Ok(sts) = sts {
                    seen.lock().unwrap().insert(sts.uid().unwrap_or_default());
                }
                std::future::ready(())
            }),
    );
    let patch = json!({"spec": {"storage": {"size": "8Ei"}}});
    if let Err(error) = env
        .instances()
        .patch("cache", &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        // The CRD's rules refuse it at admission (current clusters): nothing reaches the operator.
        let message = error.to_string();
        assert!(message.contains("too large"), "{message}");
        assert_eq!(claims_of(&env).await.len(), 1);
        return;
    }
    // Refused up front (validation), or applied and then held back: reported as Failed either way.
    let ri = env
        .wait_status("cache", "Failed", |s| s.status == Phase::Failed)
        .await;
    eprintln!("reported as {:?}", ri.status.as_ref().map(|s| &s.reason));
    let reconciles = all_reconciles(&env.operator).await;
    // A measurement window: the trial saw 145 replaces in 30 s.
    tokio::time::sleep(Duration::from_secs(30)).await;
    watch.abort();
    let replaced = uids.lock().unwrap().len().saturating_sub(1);
    assert!(
        replaced <= 2,
        "the StatefulSet was replaced {replaced} times in 30 s"
    );
    let more = all_reconciles(&env.operator).await - reconciles;
    assert!(more < 30.0, "{more} reconciles in 30 s: a tight loop");
    // The pod and its data are untouched.
    assert_eq!(claims_of(&env).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_the_statefulset_controller_cannot_create_is_reported() {
    let env = TestEnv::new("refused-pod").await;
    let quotas = zero_quota(&env, "no-pods", "pods").await;

    env.create("cache", spec(1)).await;
    let ri = wait_failed(&env, "cache", Reason::PodsFailing.as_str()).await;
    let message = ri.status.unwrap().last_condition_message;
    assert!(
        message.contains("cache-0") && message.contains("FailedCreate"),
        "{message}"
    );
    quotas
        .delete("no-pods", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_running("cache").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replace_interrupted_by_an_operator_stop_is_recognised() {
    let mut env = TestEnv::new("replace-crash").await;
    let mut s = spec(1);
    s.storage = storage("1Gi", Some("devcluster-expandable"));
    let log = env.create("cache", s).await;
    env.wait_running("cache").await;

    // What the operator does up to a crash between the orphaning delete and the re-create: it records the
    // replace, changes the claims, deletes the StatefulSet with orphan propagation; then it is gone.
    env.operator.stop();
    let generation = env
        .patch_spec("cache", json!({"storage": {"size": "2Gi"}}))
        .await;
    let record = ReplaceRecord {
        generation,
        attempts: 1,
        started_at: k8s_openapi::jiff::Timestamp::now().as_second(),
    };
    let annotate = json!({"metadata": {"annotations": {REPLACE_ANNOTATION: record.render()}}});
    env.instances()
        .patch("cache", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .unwrap();
    let uid = env
        .statefulsets()
        .get("cache")
        .await
        .unwrap()
        .uid()
        .unwrap();
    let orphan = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..Default::default()
    };
    env.statefulsets().delete("cache", &orphan).await.unwrap();
    let gone = await_condition(env.statefulsets(), "cache", conditions::is_deleted(&uid));
    tokio::time::timeout(WAIT, gone).await.unwrap().unwrap();

    env.operator = Operator::start(env.info, &env.ns, &[]);
    env.wait_running("cache").await;
    let first = log.first_for_generation(generation).await;
    assert_eq!(
        (first.status, first.reason.as_str()),
        (Phase::Updating, Reason::StatefulSetRestart.as_str()),
        "{first:#?}"
    );
    let phases = log.phases_since(generation);
    assert!(!phases.contains(&Phase::Failed), "{phases:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_instance_is_not_a_failed_reconcile() {
    let env = TestEnv::new("clean-delete").await;
    env.create("cache", spec(1)).await;
    env.wait_running("cache").await;
    env.delete_and_wait_gone("cache").await;
    // Reconciles queued by the deletion's own updates run after the object is gone: wait until the count
    // is stable over three readings.
    let mut readings = Vec::new();
    let stable = async {
        loop {
            readings.push(all_reconciles(&env.operator).await);
            if readings.len() >= 3
                && readings[readings.len() - 3..]
                    .windows(2)
                    .all(|w| w[0] == w[1])
            {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::time::timeout(WAIT, stable).await.unwrap();
    assert_eq!(failed_reconciles(&env.operator).await, 0.0);
    let log = log_text(&env.operator);
    assert!(
        !log.contains("NotFound"),
        "log: {}",
        env.operator.log.display()
    );
    assert!(
        !log.contains("reconcile failed"),
        "log: {}",
        env.operator.log.display()
    );
}

/// A kubeconfig for `user` of the suite's cluster with `token`.
fn kubeconfig_with_token(info: &ClusterInfo, token: &str, path: &Path) {
    let admin = std::fs::read_to_string(&info.kubeconfig).unwrap();
    let admin: serde_yaml::Value = serde_yaml::from_str(&admin).unwrap();
    let cluster = admin["clusters"][0]["cluster"].clone();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": "limited", "user": {"token": token}}],
        "contexts": [{"name": "limited", "context": {"cluster": "cluster", "user": "limited"}}],
        "current-context": "limited",
    });
    std::fs::write(path, serde_yaml::to_string(&config).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_an_operator_that_cannot_list_its_instances() {
    // An operator that may read its children but not RedisInstances: its instance cache never syncs, while
    // the children's events queue reconciles that wait for it.
    let mut env = TestEnv::new("sigterm").await;
    env.create("cache", spec(1)).await;
    env.wait_running("cache").await;
    env.operator.stop();
    let ns = env.ns.as_str();
    let rbac = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: no-instances, namespace: {ns}}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: no-instances, namespace: {ns}}}\n\
         rules:\n- apiGroups: [\"\", \"apps\"]\n  resources: [statefulsets, configmaps, services, pods, \
         persistentvolumeclaims, events]\n  verbs: [get, list, watch]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: no-instances, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: no-instances}}\n\
         subjects: [{{kind: ServiceAccount, name: no-instances, namespace: {ns}}}]\n"
    );
    run_ok(kubectl(env.info).args(["apply", "-f", "-"]), Some(&rbac));
    let token = run_ok(
        kubectl(env.info).args(["create", "token", "no-instances", "-n", ns]),
        None,
    );
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-logs");
    let kubeconfig = dir.join(format!("{ns}-limited.kubeconfig"));
    kubeconfig_with_token(env.info, token.trim(), &kubeconfig);
    let log_path = dir.join(format!("{ns}-limited.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_redis-operator"))
        .env("KUBECONFIG", &kubeconfig)
        .args(["run", "--namespace", ns, "--leader-election=false"])
        .arg("--metrics-address")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // Wait until the refused list shows in its log.
    let refused = async {
        while !std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("403")
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(WAIT, refused)
        .await
        .unwrap_or_else(|_| panic!("no refused list in {}", log_path.display()));
    // Touch a child so that a reconcile is queued and waits for the instance cache.
    let touch = json!({"metadata": {"annotations": {"e2e/touch": "1"}}});
    env.statefulsets()
        .patch("cache", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();
    let sent = Instant::now();
    run_ok(
        Command::new("kill").args(["-TERM", &child.id().to_string()]),
        None,
    );
    let bound = redis_operator::cli::SHUTDOWN_DEADLINE + Duration::from_secs(5);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if sent.elapsed() > bound {
            let _ = child.kill();
            panic!(
                "still running {bound:?} after SIGTERM; log: {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("exited {:?} after SIGTERM", sent.elapsed());
}

/// A private cluster for the test that restarts its API server; `down --purge` when dropped.
struct PrivateCluster {
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl PrivateCluster {
    fn up() -> PrivateCluster {
        let dir = PathBuf::from(format!("/tmp/dc-restart-{}", std::process::id()));
        let env = vec![
            ("DEVCLUSTER_DIR".to_string(), dir.display().to_string()),
            ("DEVCLUSTER_ETCD_PORT".into(), free_port().to_string()),
            ("DEVCLUSTER_ETCD_PEER_PORT".into(), free_port().to_string()),
            ("DEVCLUSTER_APISERVER_PORT".into(), free_port().to_string()),
            ("DEVCLUSTER_CM_PORT".into(), free_port().to_string()),
            // SeaweedFS binds eight ports one after another while its parts already connect to each other: ports in
            // the ephemeral range (where the API port above lies, and so the default S3 ports after it) can be
            // taken by one of those connections first (CI: "Filer listener error: bind: address already in use").
            // Below that range (and clear of the fixed ports of scripts/test.sh's clusters) no connection's source port
            // lands on them.
            (
                "DEVCLUSTER_S3_PORT".into(),
                (28_000 + (std::process::id() % 250) * 8).to_string(),
            ),
            // 127.1: the shared cluster, 127.2: the oldest release's, 127.3: the benchmark's.
            ("DEVCLUSTER_POD_CIDR_PREFIX".into(), "127.4".into()),
            ("DEVCLUSTER_NODE_NAME".into(), "devcluster-restart".into()),
            // The node agent: the test reads its log, and a second real node would need its own bridge.
            ("DEVCLUSTER_NODE".into(), "agent".into()),
        ];
        let cluster = PrivateCluster { dir, env };
        cluster.run("up");
        cluster
    }

    fn run(&self, command: &str) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/devcluster/cluster.sh");
        run_ok(
            Command::new("bash")
                .arg(script)
                .arg(command)
                .envs(self.env.iter().map(|(k, v)| (k, v))),
            None,
        );
    }

    fn info(&self) -> ClusterInfo {
        ClusterInfo {
            kubeconfig: self.dir.join("kubeconfig"),
            kubectl: self.dir.join("bin/kubectl"),
            operator_context: Some("redis-operator".into()),
            audit_log: Some(self.dir.join("audit.log")),
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/devcluster/cluster.sh");
        let _ = Command::new("bash")
            .arg(script)
            .args(["down", "--purge"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .status();
    }
}

/// How long status may lag the pods after an API server restart.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Sends a signal to a pod's Redis process.
fn signal_pod_process(pod: &Pod, signal: &str) {
    let pid = container_pid(pod, "redis").to_string();
    run_ok(Command::new("kill").args([signal, &pid]), None);
}

fn pod_ready(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

/// Starts a private cluster of its own (tens of seconds with the control plane cached) so that restarting its
/// API server disturbs no other test. Covers two defects: the operator relisting minutes late after the
/// restart, and the node agent no longer reporting readiness that changed while the API server was down.
#[tokio::test(flavor = "multi_thread")]
async fn status_catches_up_promptly_after_an_api_server_restart() {
    if std::env::var_os("REDIS_OPERATOR_E2E_KUBECONFIG").is_some() {
        // Needs a cluster whose API server it may restart.
        return;
    }
    let cluster = PrivateCluster::up();
    let info = cluster.info();
    install_crd(&info);
    let client = admin_client(&info).await;
    let ns = "restart";
    run_ok(kubectl(&info).args(["create", "namespace", ns]), None);
    let _operator = Operator::start(&info, ns, &[]);
    let instances: Api<RedisInstance> = Api::namespaced(client.clone(), ns);
    instances
        .create(
            &PostParams::default(),
            &RedisInstance::new("cache", spec(1)),
        )
        .await
        .unwrap();
    let running = |replicas: i32| {
        move |ri: Option<&RedisInstance>| {
            ri.and_then(|r| r.status.as_ref())
                .is_some_and(|s| s.status == Phase::Running && s.ready_replicas == replicas)
        }
    };
    tokio::time::timeout(
        WAIT,
        await_condition(instances.clone(), "cache", running(1)),
    )
    .await
    .unwrap()
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = pods.get("cache-0").await.unwrap();
    assert_eq!(pod_ready(&pod).as_deref(), Some("True"));

    // The API server goes down hard; meanwhile the pod's server stops answering, so its readiness changes
    // while nobody can record it.
    let pid = std::fs::read_to_string(cluster.dir.join("run/kube-apiserver.pid")).unwrap();
    run_ok(Command::new("kill").args(["-KILL", pid.trim()]), None);
    let agent_log = cluster.dir.join("logs/node-agent.log");
    let failures_before = std::fs::read_to_string(&agent_log)
        .unwrap_or_default()
        .matches("status update failed")
        .count();
    signal_pod_process(&pod, "-STOP");
    let noticed = async {
        loop {
            let failures = std::fs::read_to_string(&agent_log)
                .unwrap_or_default()
                .matches("status update failed")
                .count();
            if failures > failures_before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(WAIT, noticed)
        .await
        .expect("the node agent tries to report the unready pod while the API server is down");

    cluster.run("up");
    let started = Instant::now();
    // Right after the restart, a change: the operator must see it and the pods it brings.
    let client = admin_client(&info).await;
    let instances: Api<RedisInstance> = Api::namespaced(client.clone(), ns);
    let patch = json!({"spec": {"replicas": 2}});
    instances
        .patch("cache", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client, ns);
    let unready = await_condition(pods.clone(), "cache-0", |pod: Option<&Pod>| {
        pod.and_then(pod_ready).as_deref() == Some("False")
    });
    tokio::time::timeout(CATCH_UP, unready)
        .await
        .expect("the readiness lost during the outage is reported once the API server is back")
        .unwrap();
    signal_pod_process(&pod, "-CONT");

    tokio::time::timeout(
        CATCH_UP,
        await_condition(instances.clone(), "cache", running(2)),
    )
    .await
    .unwrap_or_else(|_| panic!("status did not catch up within {CATCH_UP:?} of the restart"))
    .unwrap();
    eprintln!("status caught up {:?} after the restart", started.elapsed());

    // `up` right after a SIGTERM of the API server: the draining server must not be mistaken for a running one
    // (it used to start nothing and time out while the old one took a minute to go).
    let pid = std::fs::read_to_string(cluster.dir.join("run/kube-apiserver.pid")).unwrap();
    run_ok(Command::new("kill").args(["-TERM", pid.trim()]), None);
    cluster.run("up");
    let client = admin_client(&info).await;
    let instances: Api<RedisInstance> = Api::namespaced(client, ns);
    assert!(
        instances.get("cache").await.is_ok(),
        "the API server serves again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quantity_finer_than_the_api_server_keeps_converges() {
    // Kubernetes stores `0.0001` CPU as `1m`; compared as written it looked like a change on every reconcile.
    let env = TestEnv::new("fine-cpu").await;
    let mut s = spec(1);
    s.resources = Some(serde_json::from_value(json!({"requests": {"cpu": "0.0001"}})).unwrap());
    env.create("cache", s).await;
    env.wait_running("cache").await;
    let sts = env.statefulsets().get("cache").await.unwrap();
    let stored = sts.spec.unwrap().template.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap()
        .requests
        .unwrap()["cpu"]
        .0
        .clone();
    assert_eq!(stored, "1m", "the API server's canonical form");
    if let Some(writes) = writes_over(&env, Duration::from_secs(10)).await {
        assert!(writes.is_empty(), "writes after converging: {writes:?}");
    }
    let ri = env.instances().get("cache").await.unwrap();
    assert_eq!(ri.status.unwrap().status, Phase::Running);
}
