//! Production knobs: the `redis_exporter` sidecar really scraping Redis, the `NAME-metrics` Service, scheduling
//! and metadata changes rolling the pods, and a refused operator-label override touching nothing.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::{Api, ResourceExt};
use redis_fsm::{Phase, Reason};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// The body of `GET /metrics` on `ip:9121`, or `None` while nothing answers there.
async fn scrape(ip: &str) -> Option<String> {
    let connect = tokio::net::TcpStream::connect((ip, 9121));
    let mut stream = tokio::time::timeout(Duration::from_secs(2), connect)
        .await
        .ok()?
        .ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .ok()?
        .ok()?;
    response.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// The value of an unlabelled sample in a scrape.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Scrapes `ip` until `redis_up` is 1 and `redis_connected_slaves` is `replicas` (the replicas need a moment to
/// connect after the primary is confirmed).
pub(crate) async fn wait_scrape(ip: &str, replicas: f64) -> String {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    loop {
        if let Some(body) = scrape(ip).await {
            if sample(&body, "redis_up") == Some(1.0)
                && sample(&body, "redis_connected_slaves") == Some(replicas)
            {
                return body;
            }
            last = Some(body);
        }
        assert!(
            Instant::now() < deadline,
            "the exporter on {ip} never showed redis_up 1 and {replicas} connected replicas; last scrape: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exporter_scrapes_redis_and_the_metrics_service_follows_it() {
    let env = TestEnv::new("exporter").await;
    let mut s = spec(3);
    s.monitoring.exporter.enabled = true;
    env.create("cache", s).await;
    let ri = env
        .wait_status("cache", "Running with a confirmed primary", |s| {
            s.status == Phase::Running
                && s.current_primary.is_some()
                && s.pods.iter().filter(|p| p.label == "replica").count() == 2
        })
        .await;
    let primary = ri.status.unwrap().current_primary.unwrap();
    let pods = env.pods_of("cache").await;
    for pod in &pods {
        let containers = &pod.spec.as_ref().unwrap().containers;
        assert_eq!(
            containers
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["redis", "metrics"]
        );
        let statuses = pod.status.as_ref().unwrap().container_statuses.clone();
        assert!(
            statuses.unwrap_or_default().iter().all(|s| s.ready),
            "every container of {} is ready",
            pod.name_any()
        );
    }
    let primary_pod = pods.iter().find(|p| p.name_any() == primary).unwrap();
    let body = wait_scrape(&pod_ip(primary_pod), 2.0).await;
    assert!(body.contains("redis_instance_info{"), "{body}");
    for replica in pods.iter().filter(|p| p.name_any() != primary) {
        let body = wait_scrape(&pod_ip(replica), 0.0).await;
        // `redis_master_link_up{master_host="...",master_port="6379"} 1`
        let link_up = body
            .lines()
            .any(|l| l.starts_with("redis_master_link_up{") && l.ends_with("} 1"));
        assert!(link_up, "{}: {body}", replica.name_any());
    }

    let services: Api<Service> = Api::namespaced(env.client.clone(), &env.ns);
    let metrics = services
        .get("cache-metrics")
        .await
        .expect("the metrics Service exists");
    assert_eq!(
        metrics
            .labels()
            .get("app.kubernetes.io/component")
            .map(String::as_str),
        Some("metrics")
    );
    let port = &metrics.spec.unwrap().ports.unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port),
        (Some("http-metrics"), 9121)
    );

    // The operator's own per-instance phase gauge.
    let series = format!(
        "redis_operator_instance_phase{{namespace=\"{}\",name=\"cache\",phase=\"Running\"}}",
        env.ns
    );
    env.operator.wait_metric_at_least(&series, 1.0).await;

    // Off again: the sidecar and the metrics Service go.
    env.patch_spec(
        "cache",
        json!({"monitoring": {"exporter": {"enabled": false}}}),
    )
    .await;
    env.wait_running("cache").await;
    for pod in env.pods_of("cache").await {
        assert_eq!(pod.spec.unwrap().containers.len(), 1);
    }
    let deadline = Instant::now() + WAIT;
    while services.get_opt("cache-metrics").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "cache-metrics was never deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduling_metadata_and_service_changes_roll_the_pods() {
    let env = TestEnv::new("knobs").await;
    env.create("cache", spec(2)).await;
    env.wait_running("cache").await;
    let sts = env.statefulsets().get("cache").await.unwrap();
    let template = sts.spec.unwrap().template;
    let anti = template
        .spec
        .as_ref()
        .and_then(|p| p.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .expect("the default anti-affinity");
    assert!(anti
        .required_during_scheduling_ignored_during_execution
        .is_none());
    assert!(anti
        .preferred_during_scheduling_ignored_during_execution
        .is_some());
    let before: Vec<String> = env
        .pods_of("cache")
        .await
        .iter()
        .filter_map(|p| p.uid())
        .collect();
    assert_eq!(before.len(), 2);

    let toleration =
        json!({"key": "dedicated", "operator": "Equal", "value": "redis", "effect": "NoSchedule"});
    env.patch_spec(
        "cache",
        json!({
            "tolerations": [toleration],
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "preference": {"matchExpressions": [
                    {"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}},
            "podMetadata": {"labels": {"team": "cache"}},
            "service": {"type": "NodePort", "annotations": {"example.com/lb": "internal"}}
        }),
    )
    .await;
    env.wait_running("cache").await;

    let sts = env.statefulsets().get("cache").await.unwrap();
    let template = sts.spec.unwrap().template;
    let pod_spec = template.spec.unwrap();
    let affinity = pod_spec.affinity.clone().unwrap();
    assert!(affinity.node_affinity.is_some(), "the user's node affinity");
    assert!(
        affinity.pod_anti_affinity.is_some(),
        "a node affinity alone keeps the default anti-affinity"
    );
    let tolerations = pod_spec.tolerations.unwrap_or_default();
    assert_eq!(
        tolerations
            .iter()
            .map(|t| t.key.as_deref())
            .collect::<Vec<_>>(),
        [Some("dedicated")]
    );
    assert_eq!(template.metadata.unwrap().labels.unwrap()["team"], "cache");
    let pods = env.pods_of("cache").await;
    assert_eq!(pods.len(), 2);
    for pod in &pods {
        assert!(
            !before.contains(&pod.uid().unwrap()),
            "{} was not replaced",
            pod.name_any()
        );
        let tolerations = pod
            .spec
            .as_ref()
            .unwrap()
            .tolerations
            .clone()
            .unwrap_or_default();
        assert!(
            tolerations
                .iter()
                .any(|t| t.key.as_deref() == Some("dedicated")),
            "{} lacks the toleration",
            pod.name_any()
        );
        assert_eq!(pod.labels()["team"], "cache");
    }
    let services: Api<Service> = Api::namespaced(env.client.clone(), &env.ns);
    for name in ["cache", "cache-replicas"] {
        let service = services.get(name).await.unwrap();
        assert_eq!(
            service.annotations()["example.com/lb"],
            "internal",
            "{name}"
        );
        assert_eq!(
            service.spec.unwrap().type_.as_deref(),
            Some("NodePort"),
            "{name}"
        );
    }

    // Removing the toleration and the annotation is applied too (a subset comparison alone would miss it).
    env.patch_spec(
        "cache",
        json!({"tolerations": null, "service": {"type": "ClusterIP", "annotations": null}}),
    )
    .await;
    env.wait_running("cache").await;
    let sts = env.statefulsets().get("cache").await.unwrap();
    assert!(sts
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .tolerations
        .is_none());
    let service = services.get("cache").await.unwrap();
    assert!(!service.annotations().contains_key("example.com/lb"));
    assert_eq!(service.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_label_override_is_refused_and_touches_nothing() {
    let env = TestEnv::new("labels").await;
    env.create("cache", spec(1)).await;
    env.wait_running("cache").await;
    let before = env.statefulsets().get("cache").await.unwrap();
    let pods_before: Vec<String> = env
        .pods_of("cache")
        .await
        .iter()
        .filter_map(|p| p.uid())
        .collect();

    env.patch_spec(
        "cache",
        json!({"podMetadata": {"labels": {"app.kubernetes.io/instance": "other"}}}),
    )
    .await;
    let ri = env
        .wait_status("cache", "Failed", |s| s.status == Phase::Failed)
        .await;
    let status = ri.status.unwrap();
    assert_eq!(status.reason, Reason::InvalidSpec.as_str());
    assert!(
        status
            .last_condition_message
            .contains("spec.podMetadata.labels.app.kubernetes.io/instance")
            && status
                .last_condition_message
                .contains("cannot be overridden"),
        "{status:#?}"
    );
    let after = env.statefulsets().get("cache").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "the StatefulSet was touched"
    );
    let pods_after: Vec<String> = env
        .pods_of("cache")
        .await
        .iter()
        .filter_map(|p| p.uid())
        .collect();
    assert_eq!(pods_after, pods_before);
}
