//! Install tests: the deploy/ manifests against a real API server, the operator running with the deploy/
//! ServiceAccount's token (RBAC sufficient and not wider than needed), leader election between operator
//! processes, and the HTTP endpoints.

#[path = "../shared/doc_anchors.rs"]
mod doc_anchors;
#[path = "../e2e/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::*;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::config::Kubeconfig;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, ResourceExt};
use redis_operator::api::RedisInstance;
use serde::Deserialize;
use serde_yaml::Value;

mod helm;
mod restricted;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// The deploy/ ServiceAccount as the API server names it.
const OPERATOR_USER: &str = "system:serviceaccount:redis-operator:redis-operator";
/// Lease duration of the leader-election test.
const LEASE_SECONDS: u64 = 10;

/// `kubectl kustomize` of a folder under deploy/ (client side only).
fn render(dir: &str) -> String {
    run_ok(
        Command::new(&cluster().kubectl).args(["kustomize", &format!("{REPO}/{dir}")]),
        None,
    )
}

/// The documents of a multi-document YAML stream.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("valid YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The sum of a family's samples whose labels contain `label`.
fn sum_of(metrics: &str, family: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(family) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn unique_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 100_000)
        .unwrap_or_default()
}

/// Polls `check` until it returns `Some`, or panics after `timeout` saying what was awaited.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fresh namespace with `operator` (given the namespace's name) as the test's operator.
async fn env_with(test: &str, operator: impl FnOnce(&str) -> Operator) -> TestEnv {
    let info = cluster();
    let client = admin_client(info).await;
    let ns = format!("install-{test}-{}", unique_suffix());
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(ns.clone());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace is created");
    let operator = operator(&ns);
    TestEnv {
        info,
        client,
        ns,
        operator,
    }
}

async fn readyz(operator: &Operator) -> Option<u16> {
    operator.http_get("/readyz").await.map(|(code, _)| code)
}

fn log_of(operator: &Operator) -> String {
    std::fs::read_to_string(&operator.log).unwrap_or_default()
}

async fn lease_holder(client: &Client, namespace: &str, name: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    leases
        .get_opt(name)
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

#[test]
fn crd_copies_in_deploy_equal_the_generated_crds() {
    for crd in ["redisinstance.yaml", "redisbackup.yaml"] {
        let generated = std::fs::read(format!("{REPO}/crds/{crd}")).unwrap();
        let copy = std::fs::read(format!("{REPO}/deploy/base/crd/{crd}")).unwrap();
        assert!(
            generated == copy,
            "deploy/base/crd/{crd} differs from crds/{crd}: cp crds/{crd} deploy/base/crd/{crd}"
        );
    }
}

#[test]
fn deployment_is_highly_available_probed_and_locked_down() {
    let docs = documents(&render("deploy"));
    let deployment = find(&docs, "Deployment", "redis-operator").expect("a Deployment");
    assert_eq!(deployment["metadata"]["namespace"], "redis-operator");
    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(spec["serviceAccountName"], "redis-operator");
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    let container = &spec["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"][0], "ALL");
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][kind][resource].is_string(),
                "{kind}.{resource}"
            );
        }
    }
    let env = container["env"].as_sequence().unwrap();
    let field_of = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].clone())
    };
    assert_eq!(field_of("POD_NAME"), Some("metadata.name".into()));
    assert_eq!(field_of("POD_NAMESPACE"), Some("metadata.namespace".into()));
    let service = find(&docs, "Service", "redis-operator-metrics").expect("a metrics Service");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http-metrics");
    assert_eq!(container["ports"][0]["name"], "http-metrics");
    // A drain evicts one replica at a time: the other keeps leading or takes over.
    let budget = find(&docs, "PodDisruptionBudget", "redis-operator").expect("a budget");
    assert_eq!(budget["metadata"]["namespace"], "redis-operator");
    assert_eq!(budget["spec"]["maxUnavailable"], 1);
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn namespaced_overlay_grants_the_same_rules_in_one_namespace_only() {
    let base = documents(&render("deploy"));
    let overlay = documents(&render("deploy/overlays/namespaced"));
    let cluster_role = find(&base, "ClusterRole", "redis-operator").expect("base ClusterRole");
    let role = find(&overlay, "Role", "redis-operator").expect("overlay Role");
    // Every rule but the one on Nodes, which a Role cannot grant: a namespaced install does not see cordoned
    // nodes (and so does not switch over off them).
    let namespaced_rules: Vec<&serde_yaml::Value> = cluster_role["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|rule| rule["resources"][0] != "nodes")
        .collect();
    assert_eq!(
        cluster_role["rules"].as_sequence().unwrap().len(),
        namespaced_rules.len() + 1,
        "the ClusterRole has exactly one rule on Nodes"
    );
    let role_rules: Vec<&serde_yaml::Value> = role["rules"].as_sequence().unwrap().iter().collect();
    assert_eq!(
        role_rules, namespaced_rules,
        "the namespaced Role drifted from the ClusterRole"
    );
    assert!(
        !overlay
            .iter()
            .any(|d| d["kind"] == "ClusterRole" || d["kind"] == "ClusterRoleBinding"),
        "the namespaced overlay must grant nothing cluster-wide"
    );
    let watched = role["metadata"]["namespace"].as_str().unwrap();
    let binding = find(&overlay, "RoleBinding", "redis-operator").expect("overlay RoleBinding");
    assert_eq!(binding["metadata"]["namespace"], watched);
    let deployment = find(&overlay, "Deployment", "redis-operator").unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "WATCH_NAMESPACE" && e["value"] == watched),
        "WATCH_NAMESPACE must name the Role's namespace"
    );
    // The leader-election Lease stays in the operator's namespace in both variants.
    assert!(find(&overlay, "Role", "redis-operator-leader-election").is_some());
}

#[test]
fn servicemonitor_overlay_scrapes_the_metrics_service() {
    let docs = documents(&render("deploy/overlays/servicemonitor"));
    let monitor = find(&docs, "ServiceMonitor", "redis-operator").expect("a ServiceMonitor");
    let service = find(&docs, "Service", "redis-operator-metrics").unwrap();
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .unwrap();
    for (key, value) in selector {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "selector {key:?} does not match the Service"
        );
    }
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
}

/// The monitoring overlays' ServiceMonitor and PodMonitor select what the operator builds for an instance with
/// the exporter on: the `NAME-metrics` Service (or the pods) by their labels, on the `http-metrics` port.
#[test]
fn monitoring_overlays_select_the_instances_exporters() {
    use redis_operator::api::{RedisInstance, RedisInstanceSpec};
    let mut spec = RedisInstanceSpec::default();
    spec.monitoring.exporter.enabled = true;
    let mut ri = RedisInstance::new("cache", spec);
    ri.metadata.namespace = Some("apps".into());
    ri.metadata.uid = Some("uid-1".into());
    let desired = redis_operator::desired::children::build(&ri);
    let service = serde_yaml::to_value(desired.metrics_service.expect("NAME-metrics")).unwrap();
    let template = serde_yaml::to_value(desired.statefulset.spec.unwrap().template).unwrap();
    let selects = |selector: &Value, labels: &Value| {
        let selector = selector["matchLabels"].as_mapping().expect("matchLabels");
        !selector.is_empty() && selector.iter().all(|(key, value)| &labels[key] == value)
    };

    let docs = documents(&render("deploy/overlays/monitoring"));
    let monitor = find(&docs, "ServiceMonitor", "redis-instances").expect("a ServiceMonitor");
    assert_eq!(monitor["spec"]["namespaceSelector"]["any"], true);
    assert!(selects(
        &monitor["spec"]["selector"],
        &service["metadata"]["labels"]
    ));
    for other in [
        &desired.service,
        &desired.replicas_service,
        &desired.headless,
    ] {
        let labels = serde_yaml::to_value(&other.metadata.labels).unwrap();
        assert!(
            !selects(&monitor["spec"]["selector"], &labels),
            "the ServiceMonitor must select only NAME-metrics"
        );
    }
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
    assert!(find(&docs, "PrometheusRule", "redis-instances").is_some());
    assert!(find(&docs, "ServiceMonitor", "redis-operator").is_some());

    let docs = documents(&render("deploy/overlays/monitoring-podmonitor"));
    let monitor = find(&docs, "PodMonitor", "redis-instances").expect("a PodMonitor");
    assert!(selects(
        &monitor["spec"]["selector"],
        &template["metadata"]["labels"]
    ));
    let exporter = template["spec"]["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "metrics")
        .expect("the exporter container");
    assert_eq!(
        monitor["spec"]["podMetricsEndpoints"][0]["port"],
        exporter["ports"][0]["name"]
    );
    assert!(find(&docs, "PrometheusRule", "redis-instances").is_some());
}

/// `kubectl apply` as the install tests use it: server-side, so that tests applying the same shared objects (the
/// namespace, the leader-election Role) at the same time never fail with AlreadyExists, as two client-side applies
/// creating one object do.
fn apply(info: &ClusterInfo) -> std::process::Command {
    let mut cmd = kubectl(info);
    cmd.args(["apply", "--server-side", "--force-conflicts"]);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_passes_server_side_dry_run() {
    let info = cluster();
    // A server-side dry run does not create the namespace, so the namespaced objects need it to exist.
    run_ok(
        apply(info).args(["-f", &format!("{REPO}/deploy/base/namespace.yaml")]),
        None,
    );
    let out = run_ok(
        // Server-side apply is create-or-update in one request, so the RBAC test creating the same objects at
        // the same time cannot make this dry run fail with AlreadyExists.
        kubectl(info).args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-k",
            &format!("{REPO}/deploy"),
        ]),
        None,
    );
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/redisinstances.redis-operator.github.io",
        "serviceaccount/redis-operator",
        "clusterrole.rbac.authorization.k8s.io/redis-operator",
        "clusterrolebinding.rbac.authorization.k8s.io/redis-operator",
        "role.rbac.authorization.k8s.io/redis-operator-leader-election",
        "rolebinding.rbac.authorization.k8s.io/redis-operator-leader-election",
        "service/redis-operator-metrics",
        "deployment.apps/redis-operator",
    ] {
        assert!(
            out.contains(object),
            "{object} missing from the dry run:\n{out}"
        );
    }
}

/// Applies the deploy/ RBAC (namespace, ServiceAccount, roles and bindings) for real and returns a kubeconfig
/// that authenticates with the ServiceAccount's token.
async fn service_account_kubeconfig(info: &ClusterInfo, client: &Client) -> PathBuf {
    let rbac: Vec<Value> = documents(&render("deploy"))
        .into_iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some(
                    "Namespace"
                        | "ServiceAccount"
                        | "ClusterRole"
                        | "ClusterRoleBinding"
                        | "Role"
                        | "RoleBinding"
                )
            )
        })
        .collect();
    let manifest = rbac
        .iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    run_ok(apply(info).args(["-f", "-"]), Some(&manifest));
    token_kubeconfig(info, client, "redis-operator").await
}

/// A kubeconfig that authenticates as ServiceAccount `account` of the namespace `redis-operator`.
async fn token_kubeconfig(info: &ClusterInfo, client: &Client, account: &str) -> PathBuf {
    // A bound token from the TokenRequest API, as a pod's projected `kube-api-access` volume gets (current
    // API servers no longer create token Secrets for ServiceAccounts).
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "redis-operator");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = wait_for("the ServiceAccount token", WAIT, || async {
        let answer = accounts
            .create_token_request(account, &PostParams::default(), &request)
            .await
            .ok()?;
        answer.status.map(|s| s.token).filter(|t| !t.is_empty())
    })
    .await;

    let admin = Kubeconfig::read_from(&info.kubeconfig).expect("admin kubeconfig");
    let cluster = admin.clusters[0].cluster.clone().expect("a cluster entry");
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": {
            "server": cluster.server,
            "certificate-authority-data": cluster.certificate_authority_data,
        }}],
        "users": [{"name": "redis-operator", "user": {"token": token}}],
        "contexts": [{"name": "redis-operator", "context": {"cluster": "cluster", "user": "redis-operator"}}],
        "current-context": "redis-operator",
    });
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sa-kubeconfig-{}.json", unique_suffix()));
    std::fs::write(&path, kubeconfig.to_string()).unwrap();
    path
}

/// Requests the ServiceAccount made in `namespaces` that the API server refused (from the audit log), and
/// every distinct `verb resource[/subresource]` it used there.
fn audit_of_operator(
    info: &ClusterInfo,
    namespaces: &[&str],
) -> Option<(Vec<String>, Vec<String>)> {
    audit_of(info, OPERATOR_USER, namespaces)
}

/// [`audit_of_operator`] for any user.
fn audit_of(
    info: &ClusterInfo,
    user: &str,
    namespaces: &[&str],
) -> Option<(Vec<String>, Vec<String>)> {
    let log = std::fs::read_to_string(info.audit_log.as_ref()?).ok()?;
    let mut forbidden = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    for entry in log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        if entry["stage"] != "ResponseComplete" || entry["user"]["username"] != user {
            continue;
        }
        let object = &entry["objectRef"];
        if !namespaces.iter().any(|ns| object["namespace"] == *ns) {
            continue;
        }
        let mut resource = format!(
            "{}/{}",
            object["apiGroup"].as_str().unwrap_or(""),
            object["resource"].as_str().unwrap_or_default()
        );
        if let Some(sub) = object["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        let request = format!("{} {resource}", entry["verb"].as_str().unwrap_or_default());
        if entry["responseStatus"]["code"] == 403 {
            forbidden.push(format!(
                "{request} {}",
                object["name"].as_str().unwrap_or_default()
            ));
        }
        used.insert(request);
    }
    Some((forbidden, used.into_iter().collect()))
}

/// `kubectl auth can-i ... --as` the operator's ServiceAccount: true for "yes".
fn operator_can(info: &ClusterInfo, args: &[&str]) -> bool {
    user_can(info, OPERATOR_USER, args)
}

/// [`operator_can`] for any user.
fn user_can(info: &ClusterInfo, user: &str, args: &[&str]) -> bool {
    let out = kubectl(info)
        .args(["auth", "can-i", "--as", user])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_with_deploy_rbac_runs_an_instance_and_can_do_nothing_more() {
    let info = cluster();
    let admin = admin_client(info).await;
    let sa_info = ClusterInfo {
        kubeconfig: service_account_kubeconfig(info, &admin).await,
        kubectl: info.kubectl.clone(),
        operator_context: None,
        audit_log: None,
    };
    let lease = format!("install-rbac-{}", unique_suffix());

    // Not ready while it cannot take part in the election: the Role allows Leases only in its own namespace.
    let env = env_with("rbac", |ns| {
        Operator::start(
            &sa_info,
            ns,
            &[
                "--lease-namespace",
                "default",
                "--lease-name",
                lease.as_str(),
            ],
        )
    })
    .await;
    wait_for("the forbidden election attempt", WAIT, || async {
        log_of(&env.operator)
            .contains("cannot take part in the election")
            .then_some(())
    })
    .await;
    assert_eq!(
        readyz(&env.operator).await,
        Some(503),
        "ready without taking part in the election"
    );

    // With the Lease in its namespace it leads, syncs its caches and becomes ready.
    let mut env = env;
    env.operator = Operator::start(
        &sa_info,
        &env.ns,
        &[
            "--lease-namespace",
            "redis-operator",
            "--lease-name",
            lease.as_str(),
        ],
    );
    let _log = env.create("cache", spec(1)).await;
    env.wait_running("cache").await;
    // Ready once it leads with synced caches.
    wait_for("/readyz 200", WAIT, || async {
        (readyz(&env.operator).await == Some(200)).then_some(())
    })
    .await;
    env.patch_spec("cache", serde_json::json!({"replicas": 2}))
        .await;
    let ri = env.wait_running("cache").await;
    assert_eq!(ri.status.unwrap().ready_replicas, 2);

    // Metrics after the scenario.
    let op = &env.operator;
    let ok = op
        .metric("redis_operator_reconciles_total{result=\"ok\"}")
        .await
        .unwrap_or_default();
    assert!(ok >= 2.0, "reconciles ok: {ok}");
    let timed = op
        .metric("redis_operator_reconcile_duration_seconds_count")
        .await
        .unwrap_or_default();
    assert!(timed >= ok, "duration count {timed} < reconciles {ok}");
    let (_, body) = op.http_get("/metrics").await.unwrap();
    for to in ["Creating", "Running", "Updating"] {
        let into = sum_of(
            &body,
            "redis_operator_phase_transitions_total",
            &format!("to=\"{to}\""),
        );
        assert!(into >= 1.0, "no transition into {to}:\n{body}");
    }
    // The gauge follows the cache, which sees the last status write a moment after it is made.
    wait_for("the Running gauge", WAIT, || async {
        (op.metric("redis_operator_instances{phase=\"Running\"}")
            .await
            == Some(1.0))
        .then_some(())
    })
    .await;
    assert_eq!(
        op.metric("redis_operator_instances{phase=\"Failed\"}")
            .await,
        Some(0.0)
    );
    let (_, body) = op.http_get("/metrics").await.unwrap();
    // No API error happened, and prometheus-client leaves a family without samples out of the exposition.
    assert!(
        !body.contains("redis_operator_api_errors_total{"),
        "unexpected API errors:\n{body}"
    );
    assert_eq!(
        op.http_get("/healthz").await.map(|(code, _)| code),
        Some(200)
    );

    // Deletion runs the finalizer with the same permissions.
    env.instances()
        .delete("cache", &DeleteParams::default())
        .await
        .unwrap();
    let gone = await_condition(env.instances(), "cache", conditions::is_deleted(""));
    tokio::time::timeout(WAIT, gone)
        .await
        .expect("instance is deleted")
        .unwrap();

    // The API server refused nothing it asked for.
    if let Some((forbidden, used)) = audit_of_operator(info, &[&env.ns, "redis-operator"]) {
        eprintln!("requests of {OPERATOR_USER}:\n  {}", used.join("\n  "));
        assert!(
            !used.is_empty(),
            "the audit log shows no request of {OPERATOR_USER}"
        );
        assert!(forbidden.is_empty(), "forbidden requests: {forbidden:#?}");
    }

    // And it can do nothing it does not need.
    let ns = env.ns.as_str();
    for denied in [
        // Secrets are read, created and applied, never updated or deleted.
        vec!["update", "secrets", "-n", ns],
        vec!["delete", "secrets", "-n", ns],
        vec!["delete", "namespaces"],
        vec!["create", "clusterroles"],
        vec!["create", "clusterrolebindings"],
        vec!["create", "rolebindings", "-n", ns],
        vec!["create", "roles", "-n", ns],
        vec!["create", "pods", "-n", ns],
        vec!["update", "nodes"],
        vec!["patch", "nodes"],
        vec!["delete", "poddisruptionbudgets.policy", "-n", ns],
        vec!["update", "networkpolicies.networking.k8s.io", "-n", ns],
        vec!["create", "persistentvolumeclaims", "-n", ns],
        vec!["update", "configmaps", "-n", ns],
        vec![
            "delete",
            "redisinstances.redis-operator.github.io",
            "-n",
            ns,
        ],
        vec![
            "update",
            "redisinstances.redis-operator.github.io",
            "-n",
            ns,
        ],
        // Backups: the operator writes their status, never their spec.
        vec!["patch", "redisbackups.redis-operator.github.io", "-n", ns],
        vec!["update", "redisbackups.redis-operator.github.io", "-n", ns],
        vec!["create", "leases.coordination.k8s.io", "-n", ns],
        vec!["create", "customresourcedefinitions.apiextensions.k8s.io"],
    ] {
        assert!(
            !operator_can(info, &denied),
            "the operator must not be able to {denied:?}"
        );
    }
    for allowed in [
        vec!["patch", "statefulsets.apps", "-n", ns],
        vec!["create", "configmaps", "-n", ns],
        vec!["get", "services", "-n", ns],
        // NAME-metrics, once the exporter is turned off.
        vec!["delete", "services", "-n", ns],
        // A data claim a pod would use that is not in the cache (someone else's?).
        vec!["get", "persistentvolumeclaims", "-n", ns],
        vec!["watch", "pods", "-n", ns],
        // A rolling update replaces pods one at a time, primary last.
        vec!["delete", "pods", "-n", ns],
        vec!["patch", "poddisruptionbudgets.policy", "-n", ns],
        vec!["watch", "networkpolicies.networking.k8s.io", "-n", ns],
        // The NetworkPolicy NAME, once spec.networkPolicy.enabled is false.
        vec!["delete", "networkpolicies.networking.k8s.io", "-n", ns],
        vec!["watch", "nodes"],
        vec!["watch", "events", "-n", ns],
        // The generated password and the Redis users; a user's password Secret is read.
        vec!["watch", "secrets", "-n", ns],
        vec!["create", "secrets", "-n", ns],
        vec!["patch", "secrets", "-n", ns],
        vec![
            "update",
            "redisinstances.redis-operator.github.io",
            "--subresource=status",
            "-n",
            ns,
        ],
        vec!["watch", "redisbackups.redis-operator.github.io", "-n", ns],
        // Scheduled backups, and retention.
        vec!["create", "redisbackups.redis-operator.github.io", "-n", ns],
        vec!["delete", "redisbackups.redis-operator.github.io", "-n", ns],
        vec![
            "patch",
            "redisbackups.redis-operator.github.io",
            "--subresource=status",
            "-n",
            ns,
        ],
        vec![
            "patch",
            "leases.coordination.k8s.io",
            "-n",
            "redis-operator",
        ],
    ] {
        assert!(
            operator_can(info, &allowed),
            "the operator must be able to {allowed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_leader_at_a_time_and_a_standby_takes_over() {
    let duration = LEASE_SECONDS.to_string();
    let args = |identity: &'static str| -> Vec<String> {
        [
            "--identity",
            identity,
            "--lease-duration-seconds",
            duration.as_str(),
        ]
        .map(String::from)
        .to_vec()
    };
    let start = |ns: &str, identity: &'static str| {
        let args = args(identity);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Operator::start(cluster(), ns, &args)
    };
    let mut env = env_with("leader", |ns| start(ns, "op-a")).await;
    let (client, ns) = (env.client.clone(), env.ns.clone());
    // The Lease defaults to the watched namespace when the pod's namespace is unknown.
    let holder = || lease_holder(&client, &ns, "redis-operator");
    wait_for("op-a to lead", WAIT, || async {
        (holder().await.as_deref() == Some("op-a")).then_some(())
    })
    .await;

    let standby = start(&env.ns, "op-b");
    wait_for("the standby to be ready", WAIT, || async {
        (readyz(&standby).await == Some(200)).then_some(())
    })
    .await;
    assert!(log_of(&standby).contains("waiting for the lease"));
    assert_eq!(holder().await.as_deref(), Some("op-a"));

    let _log = env.create("cache", spec(1)).await;
    env.wait_running("cache").await;
    assert!(env
        .operator
        .metric("redis_operator_reconciles_total{result=\"ok\"}")
        .await
        .is_some());
    assert_eq!(
        standby
            .metric("redis_operator_reconciles_total{result=\"ok\"}")
            .await,
        None,
        "the standby reconciled"
    );
    assert!(!log_of(&standby).contains("acquired the lease"));
    // What the operator-health alerts read: 1 in the process that leads, 0 in the standby.
    assert_eq!(
        env.operator.metric("redis_operator_leader").await,
        Some(1.0)
    );
    assert_eq!(standby.metric("redis_operator_leader").await, Some(0.0));

    // SIGKILL the leader (the harness kills on drop) and change the instance while nobody leads.
    let killed_at = Instant::now();
    drop(std::mem::replace(&mut env.operator, standby));
    env.patch_spec("cache", serde_json::json!({"replicas": 2}))
        .await;
    let limit = Duration::from_secs(LEASE_SECONDS + 5);
    wait_for("op-b to take over", limit, || async {
        (holder().await.as_deref() == Some("op-b")).then_some(())
    })
    .await;
    eprintln!("takeover after SIGKILL: {:?}", killed_at.elapsed());
    let ri = env.wait_running("cache").await;
    assert_eq!(ri.status.unwrap().ready_replicas, 2);
    wait_for("op-b reports leading", WAIT, || async {
        (env.operator.metric("redis_operator_leader").await == Some(1.0)).then_some(())
    })
    .await;

    // SIGTERM releases the lease: the next standby takes over well before the lease would expire.
    let next = start(&env.ns, "op-c");
    wait_for("op-c to be ready", WAIT, || async {
        (readyz(&next).await == Some(200)).then_some(())
    })
    .await;
    let mut leader = std::mem::replace(&mut env.operator, next);
    let stopped_at = Instant::now();
    leader.stop();
    assert!(
        log_of(&leader).contains("released the lease"),
        "log: {}",
        log_of(&leader)
    );
    let limit = Duration::from_secs(LEASE_SECONDS / 2);
    wait_for("op-c to take over", limit, || async {
        (holder().await.as_deref() == Some("op-c")).then_some(())
    })
    .await;
    eprintln!("takeover after SIGTERM: {:?}", stopped_at.elapsed());
    env.patch_spec("cache", serde_json::json!({"replicas": 1}))
        .await;
    env.wait_running("cache").await;
}

/// Deletes the in-cluster operator's Deployment when dropped, so that it reconciles nothing after its test.
/// The smoke scenario of an operator installed in the cluster (by kustomize or by Helm), watching `ns`: a 2-pod
/// instance `cache` with authentication on reaches Running with its replica linked; returns its primary.
pub(crate) async fn smoke(client: &Client, ns: &str) -> String {
    let instances: Api<RedisInstance> = Api::namespaced(client.clone(), ns);
    instances
        .create(
            &PostParams::default(),
            &RedisInstance::new("cache", spec(2)),
        )
        .await
        .unwrap();
    let converged = |ri: Option<&RedisInstance>| {
        ri.and_then(|r| r.status.as_ref()).is_some_and(|s| {
            s.status == redis_fsm::Phase::Running
                && s.ready_replicas == 2
                && s.current_primary.is_some()
                && s.pods.iter().filter(|p| p.link == "up").count() == 1
        })
    };
    let ri = tokio::time::timeout(WAIT, await_condition(instances, "cache", converged))
        .await
        .expect("the in-cluster operator brings the instance to Running")
        .unwrap()
        .unwrap();
    let primary = ri.status.unwrap().current_primary.unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let ip = pod_ip(&pods.get(&primary).await.unwrap());
    assert!(
        redis_command_as(&ip, None, &["PING"])
            .await
            .starts_with("-NOAUTH"),
        "authentication is on"
    );
    let info_replication = redis_command(&ip, &["INFO", "replication"]).await;
    assert!(
        info_replication.contains("connected_slaves:1"),
        "{info_replication}"
    );
    primary
}

struct InClusterOperator;

impl Drop for InClusterOperator {
    fn drop(&mut self) {
        let _ = kubectl(cluster())
            .args([
                "-n",
                "redis-operator",
                "delete",
                "deployment",
                "redis-operator",
                "--wait=false",
            ])
            .output();
    }
}

/// The deploy/ install as it is, with the locally built image and scoped to one namespace (so it leaves the
/// other tests' instances alone): two replicas on the real node, one leading; it fails over, rolls out, takes a
/// backup and restores it into a new instance.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the real node: DEVCLUSTER_NODE=real"]
async fn the_operator_runs_in_cluster_from_deploy_as_two_locked_down_replicas_and_hands_over() {
    assert!(real_node(), "needs the real node: DEVCLUSTER_NODE=real");
    let info = cluster();
    import_operator_image();
    let client = admin_client(info).await;
    let ns = format!("incluster-{}", unique_suffix());
    run_ok(kubectl(info).args(["create", "namespace", &ns]), None);

    let mut docs = documents(&render("deploy"));
    for doc in &mut docs {
        if doc["kind"] == "Deployment" {
            let container = &mut doc["spec"]["template"]["spec"]["containers"][0];
            container["image"] = Value::from("redis-operator:dev");
            let env = container["env"].as_sequence_mut().expect("env");
            env.push(
                serde_yaml::from_str(&format!("{{name: WATCH_NAMESPACE, value: {ns}}}")).unwrap(),
            );
        }
    }
    let manifest = docs
        .iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let _guard = InClusterOperator;
    run_ok(apply(info).args(["-f", "-"]), Some(&manifest));
    run_ok(
        kubectl(info).args([
            "-n",
            "redis-operator",
            "rollout",
            "status",
            "deployment/redis-operator",
            "--timeout=180s",
        ]),
        None,
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(client.clone(), "redis-operator");
    let list = pods
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/name=redis-operator"))
        .await
        .unwrap();
    let running: Vec<_> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    assert_eq!(running.len(), 2, "two operator pods");
    for pod in &running {
        // The kernel's view of the container: the non-root user, no capabilities, the seccomp filter, and a
        // read-only root filesystem.
        let pid = container_pid(pod, "operator");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        assert_eq!(field("Uid"), "65532 65532 65532 65532");
        assert_eq!(field("CapEff"), "0000000000000000");
        assert_eq!(field("NoNewPrivs"), "1");
        assert_eq!(field("Seccomp"), "2");
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        let root = mounts
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some("/"))
            .expect("a root mount");
        assert!(
            root.split_whitespace()
                .nth(5)
                .is_some_and(|o| o.split(',').any(|f| f == "ro")),
            "read-only root: {root}"
        );
    }

    // One leads; the other stands by (both ready).
    let names: Vec<String> = running.iter().map(|p| p.name_any()).collect();
    let leader = wait_for("a leader", WAIT, || async {
        lease_holder(&client, "redis-operator", "redis-operator")
            .await
            .filter(|h| names.contains(h))
    })
    .await;

    // The smoke scenario both installs run (see `smoke`), then more.
    smoke(&client, &ns).await;
    let instances: Api<RedisInstance> = Api::namespaced(client.clone(), &ns);
    let running_with = |replicas: i32| {
        move |ri: Option<&RedisInstance>| {
            ri.and_then(|r| r.status.as_ref()).is_some_and(|s| {
                s.status == redis_fsm::Phase::Running
                    && s.ready_replicas == replicas
                    && s.current_primary.is_some()
            })
        }
    };
    let redis_pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);

    // The leader's pod goes: the standby takes over within the lease duration (15 s) and a few seconds.
    let deleted_at = Instant::now();
    pods.delete(&leader, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let next = wait_for(
        "the standby to take over",
        Duration::from_secs(25),
        || async {
            lease_holder(&client, "redis-operator", "redis-operator")
                .await
                .filter(|h| *h != leader && names.contains(h))
        },
    )
    .await;
    eprintln!(
        "in-cluster takeover by {next} {:?} after deleting the leader's pod",
        deleted_at.elapsed()
    );
    instances
        .patch(
            "cache",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(instances.clone(), "cache", running_with(3)),
    )
    .await
    .expect("the new leader scales the instance")
    .unwrap();

    // The in-cluster operator fails over and rolls out: a key a replica confirmed survives a killed primary and
    // an image change (replicas first, a switchover, the old primary last).
    let pod_ip_of = |name: String| {
        let redis_pods = redis_pods.clone();
        async move { pod_ip(&redis_pods.get(&name).await.unwrap()) }
    };
    let current = |ri: &RedisInstance| ri.status.as_ref().and_then(|s| s.current_primary.clone());
    let old = current(&instances.get("cache").await.unwrap()).expect("a primary");
    let ip = pod_ip_of(old.clone()).await;
    assert_eq!(redis_command(&ip, &["SET", "kept", "yes"]).await, "+OK\r\n");
    let acknowledged = redis_command(&ip, &["WAIT", "2", "2000"]).await;
    assert!(
        acknowledged.starts_with(":2"),
        "both replicas confirm: {acknowledged}"
    );
    let pid = container_pid(&redis_pods.get(&old).await.unwrap(), "redis");
    run_ok(Command::new("kill").args(["-9", &pid.to_string()]), None);
    let failed_over = {
        let old = old.clone();
        move |ri: Option<&RedisInstance>| {
            running_with(3)(ri) && ri.and_then(current).is_some_and(|p| p != old)
        }
    };
    let after_failover = tokio::time::timeout(
        WAIT,
        await_condition(instances.clone(), "cache", failed_over),
    )
    .await
    .expect("the in-cluster operator fails over from the killed primary")
    .unwrap()
    .and_then(|ri| current(&ri))
    .expect("a new primary");

    instances
        .patch(
            "cache",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"image": "redis:7-rollout"}})),
        )
        .await
        .unwrap();
    let rolled = {
        let redis_pods = redis_pods.clone();
        move || {
            let redis_pods = redis_pods.clone();
            async move {
                let pods = redis_pods.list(&Default::default()).await.ok()?;
                let instance: Vec<_> = pods
                    .items
                    .iter()
                    .filter(|p| p.name_any().starts_with("cache-"))
                    .collect();
                (instance.len() == 3
                    && instance.iter().all(|p| {
                        p.spec
                            .as_ref()
                            .and_then(|s| s.containers[0].image.as_deref())
                            == Some("redis:7-rollout")
                    }))
                .then_some(())
            }
        }
    };
    wait_for("every pod on the new image", WAIT, rolled).await;
    let after_rollout = tokio::time::timeout(
        WAIT,
        await_condition(instances.clone(), "cache", running_with(3)),
    )
    .await
    .expect("the rolling update completes")
    .unwrap()
    .and_then(|ri| current(&ri))
    .expect("a primary");
    assert_ne!(
        after_rollout, after_failover,
        "the primary was updated last, after a switchover to an updated replica"
    );
    let ip = pod_ip_of(after_rollout).await;
    assert_eq!(redis_command(&ip, &["GET", "kept"]).await, "$3\r\nyes\r\n");

    // Backup and restore by the in-cluster operator: the snapshot goes to the local S3 server from the operator's
    // pod, and the copy's first pod is seeded by connecting back to the operator's pod address.
    let (endpoint, key, secret) = s3().expect("the local S3 server");
    create_bucket(&endpoint, &key, &secret, &ns);
    let credentials = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("s3".into()),
            ..Default::default()
        },
        string_data: Some(
            [
                ("accessKeyId".to_string(), key),
                ("secretAccessKey".to_string(), secret),
            ]
            .into(),
        ),
        ..Default::default()
    };
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &credentials)
        .await
        .unwrap();
    let backup_spec =
        serde_json::json!({"s3": {"endpoint": endpoint, "bucket": ns, "credentialsSecret": "s3"}});
    instances
        .patch(
            "cache",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"backup": backup_spec.clone()}})),
        )
        .await
        .unwrap();
    let backups: Api<redis_operator::api::RedisBackup> = Api::namespaced(client.clone(), &ns);
    backups
        .create(
            &PostParams::default(),
            &redis_operator::api::RedisBackup::new(
                "kept",
                redis_operator::api::RedisBackupSpec {
                    instance: "cache".into(),
                },
            ),
        )
        .await
        .unwrap();
    let done = wait_for("the backup to finish", WAIT, || async {
        let status = backups.get("kept").await.ok()?.status?;
        (status.phase == "Completed" || status.phase == "Failed").then_some(status)
    })
    .await;
    assert_eq!(done.phase, "Completed", "{done:?}");
    let mut copy: RedisInstance = serde_json::from_value(serde_json::json!({
        "apiVersion": "redis-operator.github.io/v1beta1",
        "kind": "RedisInstance",
        "metadata": {"name": "copy"},
        "spec": {"replicas": 1, "backup": backup_spec, "bootstrap": {"fromBackup": {"name": "kept"}}},
    }))
    .unwrap();
    copy.spec.auth = spec(1).auth;
    instances
        .create(&PostParams::default(), &copy)
        .await
        .unwrap();
    let restored = tokio::time::timeout(
        WAIT,
        await_condition(instances.clone(), "copy", running_with(1)),
    )
    .await
    .expect("the in-cluster operator restores the copy")
    .unwrap()
    .and_then(|ri| ri.status)
    .expect("a status");
    assert_eq!(
        restored.restore.map(|r| r.backup).as_deref(),
        Some("kept"),
        "status.restore"
    );
    let ip = pod_ip_of(restored.current_primary.expect("a primary")).await;
    assert_eq!(redis_command(&ip, &["GET", "kept"]).await, "$3\r\nyes\r\n");
}
