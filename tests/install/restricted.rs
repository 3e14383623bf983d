//! The narrower installs: the namespaced overlay's Role, and the admission policy of
//! `deploy/components/admission-policy`, each for an operator that runs an instance under it.
//!
//! Each test makes its own ServiceAccount (and, for the policy, its own copies of the ClusterRole and the policy
//! that name only that ServiceAccount), so the shared `redis-operator` ServiceAccount of the other install tests
//! (and of other branches' runs on the same cluster) never holds more than the test means.

use std::process::Command;

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use redis_operator::api::{ClaimDeletePolicy, StorageSpec};
use serde_json::json;
use serde_yaml::Value;

use super::*;

/// Creates ServiceAccount `name` in the namespace `redis-operator` (which the install creates).
fn service_account(info: &ClusterInfo, name: &str) {
    run_ok(
        apply(info).args(["-f", &format!("{REPO}/deploy/base/namespace.yaml")]),
        None,
    );
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": "redis-operator"},
    });
    run_ok(apply(info).args(["-f", "-"]), Some(&manifest.to_string()));
}

fn apply_documents(info: &ClusterInfo, docs: &[Value]) {
    let manifest = docs
        .iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    run_ok(apply(info).args(["-f", "-"]), Some(&manifest));
}

fn delete_documents(info: &ClusterInfo, docs: &[Value]) {
    let manifest = docs
        .iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let _ = kubectl(info)
        .args(["delete", "--ignore-not-found", "--wait=false", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(manifest.as_bytes())?;
            child.wait()
        });
}

/// The leader-election Role of the install, bound to `account` too (the Lease stays in `redis-operator`); returns
/// the binding, to delete at the end (the Role is shared with the other install tests).
fn leader_election_for(info: &ClusterInfo, account: &str) -> Vec<Value> {
    let docs = documents(&render("deploy"));
    let role = find(&docs, "Role", "redis-operator-leader-election")
        .expect("the leader-election Role")
        .clone();
    let mut binding = find(&docs, "RoleBinding", "redis-operator-leader-election")
        .expect("the leader-election RoleBinding")
        .clone();
    binding["metadata"]["name"] = format!("{account}-leader-election").into();
    binding["subjects"][0]["name"] = account.into();
    apply_documents(info, &[role, binding.clone()]);
    vec![binding]
}

fn storage_spec(
    replicas: i32,
    when_deleted: ClaimDeletePolicy,
) -> redis_operator::api::RedisInstanceSpec {
    let mut s = spec(replicas);
    s.storage = Some(StorageSpec {
        size: "1Gi".into(),
        storage_class_name: None,
        when_deleted,
    });
    s
}

/// Waits until RBAC grants `user` what `can_i` asks (a new binding takes a moment to reach the authorizer), so
/// the operator's first requests are not refused.
fn wait_granted(info: &ClusterInfo, user: &str, can_i: &[&str]) {
    let deadline = std::time::Instant::now() + WAIT;
    while !user_can(info, user, can_i) {
        assert!(
            std::time::Instant::now() < deadline,
            "{user} was not granted {can_i:?} in time"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The API server refused nothing the operator `user` asked for in `namespaces` (when its audit log is known).
fn assert_nothing_refused(info: &ClusterInfo, user: &str, namespaces: &[&str]) {
    if let Some((forbidden, used)) = audit_of(info, user, namespaces) {
        eprintln!("requests of {user}:\n  {}", used.join("\n  "));
        assert!(!used.is_empty(), "the audit log shows no request of {user}");
        assert!(forbidden.is_empty(), "refused requests: {forbidden:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_namespaced_overlay_runs_an_instance_with_permissions_in_its_namespace_only() {
    let info = cluster();
    let admin = admin_client(info).await;
    let account = format!("redis-operator-ns-{}", unique_suffix());
    let user = format!("system:serviceaccount:redis-operator:{account}");
    service_account(info, &account);
    let election = leader_election_for(info, &account);
    wait_granted(
        info,
        &user,
        &[
            "patch",
            "leases.coordination.k8s.io",
            "-n",
            "redis-operator",
        ],
    );
    let lease = account.clone();
    let sa_kubeconfig = token_kubeconfig(info, &admin, &account).await;
    let sa_info = ClusterInfo {
        kubeconfig: sa_kubeconfig,
        kubectl: info.kubectl.clone(),
        operator_context: None,
        audit_log: None,
    };
    // The overlay's Role and RoleBinding, moved to the test's namespace and bound to the test's account, in place
    // before the operator starts.
    let overlay = documents(&render("deploy/overlays/namespaced"));
    let role = find(&overlay, "Role", "redis-operator")
        .expect("the overlay's Role")
        .clone();
    let binding = find(&overlay, "RoleBinding", "redis-operator")
        .expect("the overlay's RoleBinding")
        .clone();
    let env = env_with("namespaced", |ns| {
        let (mut role, mut binding) = (role, binding);
        role["metadata"]["namespace"] = ns.into();
        binding["metadata"]["namespace"] = ns.into();
        binding["subjects"][0]["name"] = account.clone().into();
        apply_documents(info, &[role, binding]);
        wait_granted(info, &user, &["list", "pods", "-n", ns]);
        Operator::start(
            &sa_info,
            ns,
            &[
                "--lease-namespace",
                "redis-operator",
                "--lease-name",
                &lease,
            ],
        )
    })
    .await;
    let _log = env
        .create("cache", storage_spec(1, ClaimDeletePolicy::Delete))
        .await;
    env.wait_running("cache").await;
    env.patch_spec("cache", json!({"replicas": 2})).await;
    let ri = env.wait_running("cache").await;
    assert_eq!(ri.status.unwrap().ready_replicas, 2);
    // The exporter on, then off: NAME-metrics is created, then deleted (which needs `delete` on Services).
    let services: Api<Service> = Api::namespaced(env.client.clone(), &env.ns);
    env.patch_spec(
        "cache",
        json!({"monitoring": {"exporter": {"enabled": true}}}),
    )
    .await;
    env.wait_running("cache").await;
    assert!(services.get_opt("cache-metrics").await.unwrap().is_some());
    env.patch_spec(
        "cache",
        json!({"monitoring": {"exporter": {"enabled": false}}}),
    )
    .await;
    env.wait_running("cache").await;
    wait_for("NAME-metrics to be deleted", WAIT, || async {
        services
            .get_opt("cache-metrics")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    env.delete_and_wait_gone("cache").await;
    assert_nothing_refused(info, &user, &[&env.ns, "redis-operator"]);

    // Nothing beyond its namespace: no cluster-wide list of Secrets or pods, nothing in another namespace.
    for denied in [
        vec!["list", "secrets", "--all-namespaces"],
        vec!["list", "pods", "--all-namespaces"],
        vec!["get", "secrets", "-n", "default"],
        vec!["patch", "pods", "-n", "default"],
        vec!["watch", "nodes"],
        vec![
            "list",
            "redisinstances.redis-operator.github.io",
            "--all-namespaces",
        ],
    ] {
        assert!(
            !user_can(info, &user, &denied),
            "the namespaced operator must not be able to {denied:?}"
        );
    }
    for allowed in [
        vec!["get", "secrets", "-n", env.ns.as_str()],
        vec!["delete", "pods", "-n", env.ns.as_str()],
        vec!["get", "persistentvolumeclaims", "-n", env.ns.as_str()],
    ] {
        assert!(
            user_can(info, &user, &allowed),
            "the namespaced operator must be able to {allowed:?}"
        );
    }
    delete_documents(info, &election);
    delete_service_account(info, &account);
}

/// The policy of `deploy/components/admission-policy`, renamed after `account` and matching only its user.
fn policy_for(account: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!(
        "{REPO}/deploy/components/admission-policy/policy.yaml"
    ))
    .unwrap();
    let mut docs = documents(&text);
    let real = "system:serviceaccount:redis-operator:redis-operator";
    for doc in &mut docs {
        doc["metadata"]["name"] = format!("{account}-policy").into();
        if doc["kind"] == "ValidatingAdmissionPolicy" {
            let condition = &mut doc["spec"]["matchConditions"][0]["expression"];
            let expression = condition.as_str().unwrap().to_string();
            assert!(expression.contains(real), "{expression}");
            *condition = expression
                .replace(
                    real,
                    &format!("system:serviceaccount:redis-operator:{account}"),
                )
                .into();
        } else {
            doc["spec"]["policyName"] = format!("{account}-policy").into();
        }
    }
    docs
}

/// `kubectl` as `user` (impersonated by the admin): `Err(stderr)` when refused.
fn kubectl_as(
    info: &ClusterInfo,
    user: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, String> {
    let out = run_captured(kubectl(info).args(["--as", user]).args(args), stdin);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admission_policy_lets_the_operator_change_only_what_it_owns() {
    let info = cluster();
    let admin = admin_client(info).await;
    let account = format!("redis-operator-vap-{}", unique_suffix());
    let user = format!("system:serviceaccount:redis-operator:{account}");
    service_account(info, &account);
    let election = leader_election_for(info, &account);
    // The install's ClusterRole, copied under the account's name and bound to it.
    let base = documents(&render("deploy"));
    let mut role = find(&base, "ClusterRole", "redis-operator")
        .unwrap()
        .clone();
    role["metadata"]["name"] = account.clone().into();
    let mut binding = find(&base, "ClusterRoleBinding", "redis-operator")
        .unwrap()
        .clone();
    binding["metadata"]["name"] = account.clone().into();
    binding["roleRef"]["name"] = account.clone().into();
    binding["subjects"][0]["name"] = account.clone().into();
    let rbac = vec![role, binding];
    apply_documents(info, &rbac);
    let policy = policy_for(&account);
    apply_documents(info, &policy);

    let ns = format!("install-vap-{}", unique_suffix());
    let mut namespace = k8s_openapi::api::core::v1::Namespace::default();
    namespace.metadata.name = Some(ns.clone());
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), &ns);
    let services: Api<Service> = Api::namespaced(admin.clone(), &ns);
    // Someone else's objects, one of them with the operator's labels (anyone may set a label).
    let theirs: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "theirs", "labels": {"app.kubernetes.io/managed-by": "redis-operator"}},
        "data": {"owner": "someone else"},
    }))
    .unwrap();
    config_maps
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "theirs"},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 8080}]},
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();

    // The policy takes effect once the API server has loaded it: wait for its first refusal.
    let unlabelled = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "unlabelled", "namespace": ns},
    })
    .to_string();
    let refusal = wait_for(
        "the policy to refuse an unlabelled ConfigMap",
        WAIT,
        || async {
            match kubectl_as(info, &user, &["create", "-f", "-"], Some(&unlabelled)) {
                Err(err) if err.contains(&format!("{account}-policy")) => Some(err),
                Ok(_) => {
                    let _ = config_maps
                        .delete("unlabelled", &DeleteParams::default())
                        .await;
                    None
                }
                Err(_) => None,
            }
        },
    )
    .await;
    assert!(
        refusal.contains("may only create or change objects that carry its label"),
        "{refusal}"
    );
    // Changing or deleting someone else's object is refused, labels or not.
    let patched = kubectl_as(
        info,
        &user,
        &[
            "-n",
            &ns,
            "patch",
            "configmap",
            "theirs",
            "--type=merge",
            "-p",
            r#"{"data":{"owner":"operator"}}"#,
        ],
        None,
    );
    assert!(
        patched.is_err_and(|e| e.contains("may only")),
        "foreign ConfigMap changed"
    );
    let deleted = kubectl_as(
        info,
        &user,
        &["-n", &ns, "delete", "service", "theirs"],
        None,
    );
    assert!(
        deleted.is_err_and(|e| e.contains("may only")),
        "foreign Service deleted"
    );
    let policies: Api<NetworkPolicy> = Api::namespaced(admin.clone(), &ns);
    let their_policy: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "theirs"},
        "spec": {"podSelector": {"matchLabels": {"app": "theirs"}}, "policyTypes": ["Ingress"]},
    }))
    .unwrap();
    policies
        .create(&PostParams::default(), &their_policy)
        .await
        .unwrap();
    let deleted = kubectl_as(
        info,
        &user,
        &["-n", &ns, "delete", "networkpolicy", "theirs"],
        None,
    );
    assert!(
        deleted.is_err_and(|e| e.contains("may only")),
        "foreign NetworkPolicy deleted"
    );
    assert!(policies.get_opt("theirs").await.unwrap().is_some());
    assert_eq!(
        config_maps.get("theirs").await.unwrap().data.unwrap()["owner"],
        "someone else"
    );
    assert!(services.get_opt("theirs").await.unwrap().is_some());
    // Labelled and owned by an instance: allowed.
    let owned = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": "owned", "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "redis-operator"},
            "ownerReferences": [{"apiVersion": "redis-operator.github.io/v1beta1", "kind": "RedisInstance", "name": "x",
                                 "uid": "00000000-0000-0000-0000-000000000000", "controller": true}],
        },
    })
    .to_string();
    kubectl_as(info, &user, &["create", "-f", "-"], Some(&owned))
        .expect("an owned, labelled ConfigMap");

    // And the operator runs an instance under it: children applied, role labels moved, pods replaced one at a
    // time for a restart, claims deleted at the end, and nothing refused.
    wait_granted(
        info,
        &user,
        &[
            "patch",
            "leases.coordination.k8s.io",
            "-n",
            "redis-operator",
        ],
    );
    let sa_info = ClusterInfo {
        kubeconfig: token_kubeconfig(info, &admin, &account).await,
        kubectl: info.kubectl.clone(),
        operator_context: None,
        audit_log: None,
    };
    let env = TestEnv {
        info,
        client: admin.clone(),
        ns: ns.clone(),
        operator: Operator::start(
            &sa_info,
            &ns,
            &[
                "--lease-namespace",
                "redis-operator",
                "--lease-name",
                &account,
            ],
        ),
    };
    let _log = env
        .create("cache", storage_spec(2, ClaimDeletePolicy::Delete))
        .await;
    env.wait_running("cache").await;
    let uids: Vec<Option<String>> = env
        .pods_of("cache")
        .await
        .iter()
        .map(|p| p.metadata.uid.clone())
        .collect();
    // A directive Redis cannot change at runtime: the pods are replaced, the primary last.
    env.patch_spec("cache", json!({"config": {"databases": "32"}}))
        .await;
    env.wait_running("cache").await;
    let now: Vec<Option<String>> = env
        .pods_of("cache")
        .await
        .iter()
        .map(|p| p.metadata.uid.clone())
        .collect();
    assert!(
        uids.iter().all(|uid| !now.contains(uid)),
        "every pod was replaced"
    );
    // Its own NetworkPolicy is applied, and deleted once turned off.
    assert!(policies.get_opt("cache").await.unwrap().is_some());
    env.patch_spec("cache", json!({"networkPolicy": {"enabled": false}}))
        .await;
    wait_for("the NetworkPolicy to go", WAIT, || async {
        policies
            .get_opt("cache")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    env.delete_and_wait_gone("cache").await;
    let claims = env.claims();
    wait_for("the claims to go", WAIT, || async {
        let left = claims.list(&Default::default()).await.ok()?;
        left.items
            .iter()
            .all(|c| c.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;
    assert_nothing_refused(info, &user, &[&ns, "redis-operator"]);
    let log = std::fs::read_to_string(&env.operator.log).unwrap_or_default();
    assert!(
        !log.contains(&format!("{account}-policy")),
        "the policy refused the operator something: {}",
        env.operator.log.display()
    );

    drop(env);
    delete_documents(info, &policy);
    delete_documents(info, &rbac);
    delete_documents(info, &election);
    delete_service_account(info, &account);
}

/// `overlays/restricted` is the base install plus the policy, and the policy names the ServiceAccount the
/// Deployment runs as (renaming one without the other would silently turn the policy off).
#[test]
fn the_restricted_overlay_binds_the_policy_to_the_operators_service_account() {
    let docs = documents(&render("deploy/overlays/restricted"));
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "ValidatingAdmissionPolicy")
        .expect("the policy");
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "ValidatingAdmissionPolicyBinding")
        .expect("its binding");
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"][0], "Deny");
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    let deployment = find(&docs, "Deployment", "redis-operator").expect("the base install");
    let account = format!(
        "system:serviceaccount:{}:{}",
        deployment["metadata"]["namespace"].as_str().unwrap(),
        deployment["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .unwrap()
    );
    let condition = policy["spec"]["matchConditions"][0]["expression"]
        .as_str()
        .unwrap();
    assert_eq!(
        condition,
        format!("request.userInfo.username == '{account}'")
    );
    assert!(find(&docs, "ClusterRole", "redis-operator").is_some());
}

/// Deletes a throwaway ServiceAccount of the operator's namespace, without waiting.
fn delete_service_account(info: &ClusterInfo, account: &str) {
    let _ = Command::new(&info.kubectl)
        .env("KUBECONFIG", &info.kubeconfig)
        .args([
            "-n",
            "redis-operator",
            "delete",
            "serviceaccount",
            account,
            "--wait=false",
        ])
        .status();
}
