//! Admission-time validation: the CRD's schema bounds and CEL rules refuse a bad `kubectl apply` with a clear
//! message and admit the valid edit; `save ""` is admitted and reaches Redis; `kubectl explain` shows a type
//! for every spec field.

use std::io::Write;
use std::process::Stdio;

use serde_json::json;

use crate::harness::*;

/// `kubectl apply` of a RedisInstance `name` with `spec` in the test namespace: `Ok(stdout)` or
/// `Err(stderr)` (the API server's refusal).
fn apply(env: &TestEnv, name: &str, spec: serde_json::Value) -> Result<String, String> {
    kubectl_apply(env, name, spec, &[])
}

/// Like [`apply`], through admission only (`--dry-run=server`): nothing is stored, so a valid edit can be
/// checked without the operator acting on it.
fn admitted(env: &TestEnv, name: &str, spec: serde_json::Value) -> Result<String, String> {
    kubectl_apply(env, name, spec, &["--dry-run=server"])
}

fn kubectl_apply(
    env: &TestEnv,
    name: &str,
    spec: serde_json::Value,
    extra: &[&str],
) -> Result<String, String> {
    let object = json!({
        "apiVersion": "redis-operator.github.io/v1beta1",
        "kind": "RedisInstance",
        "metadata": {"name": name, "namespace": env.ns},
        "spec": spec,
    });
    let mut child = kubectl(env.info)
        .args(["apply", "-f", "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(object.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// Applying `spec` must be refused with a message containing `message`, and create nothing.
fn assert_refused(env: &TestEnv, name: &str, spec: serde_json::Value, message: &str) {
    match apply(env, name, spec.clone()) {
        Ok(out) => panic!("{spec} was admitted: {out}"),
        Err(err) => assert!(
            err.contains(message),
            "{spec} was refused without {message:?}: {err}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admission_refuses_invalid_specs_with_their_message() {
    let env = TestEnv::new("admission").await;
    for (spec, message) in [
        (json!({"replicas": 10000000000_i64}), "spec.replicas"),
        (json!({"replicas": 101}), "less than or equal to 100"),
        (json!({"replicas": -1}), "greater than or equal to 0"),
        (
            json!({"config": {"PORT": "7000"}}),
            "PORT is set by the operator and cannot be overridden",
        ),
        (
            json!({"config": {"Dir": "/tmp"}}),
            "Dir is set by the operator",
        ),
        (
            json!({"config": {"LoadModule": "/tmp/x.so"}}),
            "LoadModule is refused",
        ),
        (
            json!({"config": {"ENABLE-DEBUG-COMMAND": "yes"}}),
            "ENABLE-DEBUG-COMMAND is refused",
        ),
        (
            json!({"config": {"enable-protected-configs": "yes"}}),
            "enable-protected-configs is refused",
        ),
        (
            json!({"config": {"SlaveOf": "10.0.0.1 6379"}}),
            "SlaveOf is refused",
        ),
        (
            json!({"config": {"rename-command": "CONFIG \"\""}}),
            "rename-command is refused",
        ),
        (
            json!({"config": {"RequirePass": "secret"}}),
            "RequirePass is managed by the operator",
        ),
        (
            json!({"config": {"user": "alice on >pw"}}),
            "user is managed by the operator",
        ),
        (
            json!({"config": {"maxmemory": "1mb", "MaxMemory": "2mb"}}),
            "names the same directive as another key",
        ),
        (
            json!({"config": {"max memory": "1mb"}}),
            "directive names may only contain",
        ),
        (
            json!({"storage": {"size": "8Ei"}}),
            "is too large: a Kubernetes quantity must be below 2^63-1",
        ),
        (
            json!({"storage": {"size": "0"}}),
            "must be greater than zero",
        ),
        (
            json!({"storage": {"size": "lots"}}),
            "is not a Kubernetes quantity",
        ),
        (
            json!({"storage": {"size": "1Gi", "storageClassName": "Bad_Class"}}),
            "is not a valid StorageClass name",
        ),
        (
            json!({"image": "redis 7"}),
            "must not be empty or contain whitespace",
        ),
        (
            json!({"priorityClassName": "system-node-critical"}),
            "the system- PriorityClasses (system-cluster-critical, system-node-critical) are kept for cluster \
             components",
        ),
        (
            json!({"auth": {"enabled": false}, "service": {"type": "LoadBalancer"}}),
            "acknowledge it with service.exposeWithoutAuth: true",
        ),
        (
            json!({"auth": {"enabled": false}, "service": {"replicas": {"type": "NodePort"}}}),
            "acknowledge it with service.exposeWithoutAuth: true",
        ),
    ] {
        assert_refused(&env, "bad", spec, message);
    }
    assert!(
        env.instances().get_opt("bad").await.unwrap().is_none(),
        "a refused apply created the instance"
    );
    // The valid neighbours of those edits are admitted.
    for spec in [
        json!({"replicas": 100, "config": {"maxmemory": "1mb", "maxmemory-policy": "allkeys-lru",
            "save": ""}}),
        json!({"replicas": 0, "image": "registry.example/redis:7.2@sha256:0123"}),
        json!({"storage": {"size": "7Ei", "storageClassName": "fast.example-1"}}),
        json!({"storage": {"size": "0.5Gi", "whenDeleted": "Delete"}}),
        json!({"priorityClassName": "team-high"}),
        json!({"auth": {"enabled": false}, "service": {"type": "NodePort", "exposeWithoutAuth": true}}),
        json!({"auth": {"enabled": false}, "service": {"type": "ClusterIP"}}),
        json!({"service": {"type": "LoadBalancer"}}),
    ] {
        admitted(&env, "good", spec.clone()).unwrap_or_else(|e| panic!("{spec} refused: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_shrink_and_removal_are_refused_at_admission() {
    let env = TestEnv::new("admit-storage").await;
    apply(
        &env,
        "cache",
        json!({"replicas": 0, "storage": {"size": "2Gi"}}),
    )
    .expect("created with storage");
    assert_refused(
        &env,
        "cache",
        json!({"replicas": 0, "storage": {"size": "1Gi"}}),
        "cannot shrink (from 2Gi to 1Gi)",
    );
    assert_refused(
        &env,
        "cache",
        json!({"replicas": 0, "storage": {"size": "1.9Gi"}}),
        "cannot shrink",
    );
    assert_refused(
        &env,
        "cache",
        json!({"replicas": 0}),
        "storage cannot be removed from an instance that has it",
    );
    // Same size in another unit, a growth and a class change are admitted.
    for spec in [
        json!({"replicas": 0, "storage": {"size": "2048Mi"}}),
        json!({"replicas": 0, "storage": {"size": "3Gi"}}),
        json!({"replicas": 0, "storage": {"size": "3Gi", "storageClassName": "devcluster-fixed"}}),
    ] {
        apply(&env, "cache", spec.clone()).unwrap_or_else(|e| panic!("{spec} refused: {e}"));
    }
    let ri = env.instances().get("cache").await.unwrap();
    assert_eq!(ri.spec.storage.unwrap().size, "3Gi");
}

/// A status write the schema cannot hold is refused too (the operator is not the only possible writer).
#[tokio::test(flavor = "multi_thread")]
async fn out_of_range_status_integers_are_refused() {
    let env = TestEnv::new("admit-status").await;
    apply(&env, "cache", json!({"replicas": 0})).expect("created");
    let api = env.instances();
    for status in [
        json!({"replicas": 10000000000_i64}),
        json!({"readyReplicas": -1}),
        json!({"observedGeneration": -5}),
    ] {
        let patch = json!({"status": status});
        let err = api
            .patch_status(
                "cache",
                &Default::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .expect_err("out-of-range status is refused");
        assert!(
            matches!(err, kube::Error::Api(ref e) if e.code == 422),
            "{status}: {err:?}"
        );
    }
}

/// `save ""` is how Redis turns RDB snapshots off: admitted, rendered as `save ""`, and in effect.
#[tokio::test(flavor = "multi_thread")]
async fn empty_save_turns_snapshots_off() {
    let env = TestEnv::new("save-off").await;
    apply(
        &env,
        "cache",
        // CONFIG GET below is administrative: the application user gets every command here.
        json!({"replicas": 1, "config": {"save": ""}, "auth": {"defaultUserRules": "~* &* +@all"}}),
    )
    .expect("save \"\" is admitted");
    env.wait_running("cache").await;
    let ri = env.instances().get("cache").await.unwrap();
    assert_eq!(ri.spec.config.get("save").map(String::as_str), Some(""));
    let ip = pod_ip(&env.pods_of("cache").await[0]);
    let reply = redis_command(&ip, &["CONFIG", "GET", "save"]).await;
    assert_eq!(reply, "*2\r\n$4\r\nsave\r\n$0\r\n\r\n", "{reply:?}");
}

/// `kubectl explain` once showed `resources <>` and `storage <>`: nullable properties lost their type in the
/// published OpenAPI v2.
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_explain_shows_a_type_for_every_spec_field() {
    let info = cluster();
    for output in ["plaintext", "plaintext-openapiv2"] {
        for field in [
            "redisinstance.spec",
            "redisinstance.spec.resources",
            "redisinstance.spec.storage",
        ] {
            let out = run_ok(
                kubectl(info).args(["explain", field, &format!("--output={output}")]),
                None,
            );
            assert!(!out.contains("<>"), "{field} ({output}):\n{out}");
        }
        let spec = run_ok(
            kubectl(info).args([
                "explain",
                "redisinstance.spec",
                &format!("--output={output}"),
            ]),
            None,
        );
        for line in ["resources\t<Object>", "storage\t<Object>"] {
            assert!(spec.contains(line), "{output}: no {line:?} in\n{spec}");
        }
    }
}
