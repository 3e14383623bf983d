//! The Helm chart (`deploy/helm/redis-operator`): it lints, renders the same objects as the kustomize install at
//! its defaults (and as the namespaced and monitoring overlays with the matching values), carries the same CRDs,
//! and, installed with `helm install` on the real node, runs an instance; `helm uninstall` keeps the instances.

use std::process::Command;

use kube::Api;
use redis_operator::api::RedisInstance;
use serde_yaml::Value;

use super::{documents, find, render, unique_suffix, REPO};
use crate::doc_anchors::anchors;
use crate::harness::*;

const CHART: &str = "deploy/helm/redis-operator";

/// The cluster's helm (devcluster/cluster.sh builds it next to kubectl).
fn helm() -> Command {
    let helm = cluster().kubectl.with_file_name("helm");
    assert!(
        helm.exists(),
        "{} is missing: bash devcluster/cluster.sh up builds it",
        helm.display()
    );
    let mut cmd = Command::new(helm);
    cmd.env("KUBECONFIG", &cluster().kubeconfig);
    cmd
}

/// `helm template redis-operator CHART -n redis-operator` with `values` (`--set` words).
fn template(values: &[&str]) -> Vec<Value> {
    let mut cmd = helm();
    cmd.args([
        "template",
        "redis-operator",
        &format!("{REPO}/{CHART}"),
        "--namespace",
        "redis-operator",
    ]);
    for value in values {
        cmd.args(["--set", value]);
    }
    documents(&run_ok(&mut cmd, None))
}

/// The part of an object that says what it does (not its labels, which Helm extends).
fn substance(doc: &Value) -> Value {
    let mut out = serde_yaml::Mapping::new();
    for key in ["spec", "rules", "roleRef", "subjects", "data"] {
        if let Some(value) = doc.get(key) {
            out.insert(key.into(), value.clone());
        }
    }
    Value::Mapping(out)
}

/// Every object of `kustomized` but Namespaces and CRDs is in `helmed`, alike in what it does, with at least its
/// labels.
fn assert_same_objects(kustomized: &[Value], helmed: &[Value], what: &str) {
    let mut compared = 0;
    for doc in kustomized {
        let kind = doc["kind"].as_str().unwrap();
        if ["Namespace", "CustomResourceDefinition"].contains(&kind) {
            continue;
        }
        let name = doc["metadata"]["name"].as_str().unwrap();
        let twin = helmed
            .iter()
            .find(|h| {
                h["kind"] == doc["kind"]
                    && h["metadata"]["name"] == doc["metadata"]["name"]
                    && h["metadata"]["namespace"] == doc["metadata"]["namespace"]
            })
            .unwrap_or_else(|| panic!("{what}: the chart renders no {kind} {name}"));
        assert_eq!(substance(twin), substance(doc), "{what}: {kind} {name}");
        for (key, value) in doc["metadata"]["labels"].as_mapping().into_iter().flatten() {
            assert_eq!(
                &twin["metadata"]["labels"][key], value,
                "{what}: {kind} {name} label {key:?}"
            );
        }
        compared += 1;
    }
    assert!(compared >= 8, "{what}: compared only {compared} objects");
}

#[test]
fn the_chart_lints_and_renders_what_the_kustomize_install_does() {
    run_ok(
        helm().args(["lint", "--strict", &format!("{REPO}/{CHART}")]),
        None,
    );
    for crd in ["redisinstance.yaml", "redisbackup.yaml"] {
        let generated = std::fs::read(format!("{REPO}/crds/{crd}")).unwrap();
        let copy = std::fs::read(format!("{REPO}/{CHART}/crds/{crd}")).unwrap();
        assert!(
            generated == copy,
            "{CHART}/crds/{crd} differs from crds/{crd}: copy it"
        );
    }
    let rules = std::fs::read(format!(
        "{REPO}/deploy/monitoring/rules/prometheusrule.yaml"
    ))
    .unwrap();
    let copy = std::fs::read(format!("{REPO}/{CHART}/files/prometheusrule.yaml")).unwrap();
    assert!(
        rules == copy,
        "{CHART}/files/prometheusrule.yaml differs from deploy/monitoring/rules"
    );
    let dashboard = std::fs::read(format!(
        "{REPO}/deploy/monitoring/dashboards/redis-operator.json"
    ))
    .unwrap();
    let copy = std::fs::read(format!("{REPO}/{CHART}/files/dashboard.json")).unwrap();
    assert!(
        dashboard == copy,
        "{CHART}/files/dashboard.json differs from deploy/monitoring/dashboards"
    );

    // The defaults: the kustomize install, with the image the chart's appVersion names.
    let mut kustomized = documents(&render("deploy"));
    let helmed = template(&[]);
    let image = find(&helmed, "Deployment", "redis-operator").unwrap()["spec"]["template"]["spec"]
        ["containers"][0]["image"]
        .clone();
    assert_eq!(image, Value::from("redis-operator:0.1.0"));
    for doc in kustomized.iter_mut().filter(|d| d["kind"] == "Deployment") {
        assert_eq!(
            doc["spec"]["template"]["spec"]["containers"][0]["image"],
            image
        );
    }
    assert_same_objects(&kustomized, &helmed, "defaults");
    assert!(
        helmed
            .iter()
            .all(|d| d["kind"] != "CustomResourceDefinition"),
        "CRDs are in crds/"
    );

    // One namespace: the namespaced overlay (a Role where it manages instances, no cluster-wide permission).
    let namespaced = template(&["watchNamespace=redis"]);
    assert!(namespaced
        .iter()
        .all(|d| d["kind"] != "ClusterRole" && d["kind"] != "ClusterRoleBinding"));
    assert_same_objects(
        &documents(&render("deploy/overlays/namespaced")),
        &namespaced,
        "namespaced",
    );

    // Monitoring: the ServiceMonitor overlay's object and the alert rules.
    let monitored = template(&[
        "metrics.serviceMonitor.enabled=true",
        "prometheusRule.enabled=true",
        "grafanaDashboard.enabled=true",
    ]);
    let dashboards = documents(&render("deploy/monitoring/dashboards"));
    assert_eq!(
        substance(find(&monitored, "ConfigMap", "redis-operator-dashboard").unwrap()),
        substance(find(&dashboards, "ConfigMap", "redis-operator-dashboard").unwrap())
    );
    let overlay = documents(&render("deploy/overlays/servicemonitor"));
    assert_eq!(
        substance(find(&monitored, "ServiceMonitor", "redis-operator").unwrap()),
        substance(find(&overlay, "ServiceMonitor", "redis-operator").unwrap())
    );
    let rule = documents(&render("deploy/monitoring/rules"));
    assert_eq!(
        substance(find(&monitored, "PrometheusRule", "redis-instances").unwrap()),
        substance(&rule[0])
    );
}

/// Deletes the release's namespace and cluster-wide objects when the test ends, however it ends.
struct Release(String, String);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = helm()
            .args([
                "uninstall",
                &self.0,
                "-n",
                &self.1,
                "--wait",
                "--timeout",
                "60s",
            ])
            .output();
        let _ = kubectl(cluster())
            .args(["delete", "namespace", &self.1, "--wait=false"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the real node: DEVCLUSTER_NODE=real"]
async fn the_operator_installed_with_helm_runs_an_instance_and_uninstalling_keeps_it() {
    assert!(real_node(), "needs the real node: DEVCLUSTER_NODE=real");
    let info = cluster();
    import_operator_image();
    let client = admin_client(info).await;
    let suffix = unique_suffix();
    let (release, operator_ns, ns) = (
        format!("helm-op-{suffix}"),
        format!("helm-op-{suffix}"),
        format!("helm-{suffix}"),
    );
    run_ok(kubectl(info).args(["create", "namespace", &ns]), None);
    let _release = Release(release.clone(), operator_ns.clone());
    // The CRDs are the suite's already (Helm installs crds/ only when they are missing, and never changes them).
    run_ok(
        helm().args([
            "install",
            &release,
            &format!("{REPO}/{CHART}"),
            "--namespace",
            &operator_ns,
            "--create-namespace",
            "--set",
            "image.repository=redis-operator",
            "--set",
            "image.tag=dev",
            "--set",
            &format!("watchNamespace={ns}"),
            "--wait",
            "--timeout",
            "180s",
        ]),
        None,
    );
    let primary = super::smoke(&client, &ns).await;
    let instances: Api<RedisInstance> = Api::namespaced(client.clone(), &ns);

    // Uninstalled: the operator goes, the instance stays and serves.
    run_ok(
        helm().args(["uninstall", &release, "--namespace", &operator_ns, "--wait"]),
        None,
    );
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &operator_ns);
    assert!(
        deployments.get_opt(&release).await.unwrap().is_none(),
        "the operator is gone"
    );
    assert!(
        instances.get_opt("cache").await.unwrap().is_some(),
        "the instance stays"
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, &ns);
    let pod = pods.get(&primary).await.unwrap();
    let reply = redis_command(&pod_ip(&pod), &["SET", "after-uninstall", "1"]).await;
    assert_eq!(reply, "+OK\r\n", "the primary serves without the operator");
    run_ok(
        kubectl(info).args(["delete", "namespace", &ns, "--wait=false"]),
        None,
    );
}

#[test]
fn with_a_docs_address_every_alert_links_its_runbook_section() {
    let base = "https://docs.example.com/redis-operator/user-guide.md";
    let rendered = template(&[
        "prometheusRule.enabled=true",
        &format!("prometheusRule.runbookBaseURL={base}"),
    ]);
    let guide = std::fs::read_to_string(format!("{REPO}/docs/user-guide.md")).unwrap();
    let anchors = anchors(&guide);
    let rule = find(&rendered, "PrometheusRule", "redis-instances").unwrap();
    let mut linked = 0;
    for group in rule["spec"]["groups"].as_sequence().unwrap() {
        for alert in group["rules"].as_sequence().unwrap() {
            let name = alert["alert"].as_str().unwrap();
            let url = alert["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no runbook_url"));
            let anchor = url
                .strip_prefix(&format!("{base}#"))
                .unwrap_or_else(|| panic!("{name}: {url}"));
            assert!(
                anchors.iter().any(|a| a == anchor),
                "{name}: no section #{anchor} in the user guide"
            );
            linked += 1;
        }
    }
    assert!(linked >= 10, "{linked} alerts");
    // Without another address: the rules as the kustomize install has them (the project's repository).
    let plain = template(&["prometheusRule.enabled=true"]);
    let rule = find(&plain, "PrometheusRule", "redis-instances").unwrap();
    let file: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!(
            "{REPO}/deploy/monitoring/rules/prometheusrule.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(rule["spec"], file["spec"]);
}
