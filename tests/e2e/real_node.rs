//! What only a real node can show: the image's files, the security context as the kernel applies it, the
//! kubelet's probes, and clients that connect as applications do, by Service DNS name through kube-proxy.
//!
//! These tests need the local cluster's real node (`DEVCLUSTER_NODE=real`, see devcluster/README.md) and are
//! ignored otherwise; `scripts/test.sh` runs them there with `--include-ignored`.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::ResourceExt;

use crate::harness::*;
use crate::replication::{
    assert_one_master, finish_and_check, kill_primary_server, three_converged_with_a_writer,
    wait_failed_over, wait_writes,
};

const NEEDS: &str = "needs the real node: DEVCLUSTER_NODE=real";

fn require_real_node() {
    assert!(
        real_node(),
        "{NEEDS} (this cluster runs pods with the node agent)"
    );
}

/// `kubectl exec` into a container; returns (success, stdout + stderr).
fn exec(env: &TestEnv, pod: &str, container: &str, script: &str) -> (bool, String) {
    let out = kubectl(env.info)
        .args([
            "-n", &env.ns, "exec", pod, "-c", container, "--", "sh", "-c", script,
        ])
        .output()
        .expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The fields of `/proc/PID/status` that the security context sets.
fn process_status(pid: i32) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the container's process is visible on the host")
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

/// Asserts what the restricted security context means for a container's process on the host: its user and
/// group, no capabilities, no privilege escalation, the runtime's seccomp filter.
fn assert_restricted(pid: i32, uid: u32, what: &str) {
    let status = process_status(pid);
    let ids = format!("{uid} {uid} {uid} {uid}");
    assert_eq!(status["Uid"], ids, "{what}: user");
    assert_eq!(status["Gid"], ids, "{what}: group");
    assert_eq!(status["CapEff"], "0000000000000000", "{what}: capabilities");
    assert_eq!(status["CapPrm"], "0000000000000000", "{what}: capabilities");
    assert_eq!(status["NoNewPrivs"], "1", "{what}: no privilege escalation");
    assert_eq!(status["Seccomp"], "2", "{what}: seccomp filter mode");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the real node: DEVCLUSTER_NODE=real"]
async fn redis_and_its_exporter_run_as_containers_with_the_restricted_security_context() {
    require_real_node();
    let env = TestEnv::new("secctx").await;
    let mut s = spec(1);
    s.monitoring.exporter.enabled = true;
    env.create("cache", s).await;
    env.wait_running("cache").await;
    let pod = env.pods().get("cache-0").await.unwrap();

    assert_restricted(container_pid(&pod, "redis"), 999, "redis");
    assert_restricted(container_pid(&pod, "metrics"), 999, "exporter");

    // The image has what the pod spec runs, on the PATH.
    let (ok, out) = exec(
        &env,
        "cache-0",
        "redis",
        "command -v redis-server && command -v redis-cli && id -u",
    );
    assert!(ok, "redis-server, redis-cli and sh are in the image: {out}");
    assert!(out.trim_end().ends_with("999"), "runs as 999: {out}");
    // A read-only root; /data (the claim) is writable by the server's user.
    let (ok, out) = exec(&env, "cache-0", "redis", "echo x > /etc/written");
    assert!(!ok, "the root filesystem is read-only: {out}");
    assert!(out.contains("Read-only file system"), "{out}");
    let (ok, out) = exec(
        &env,
        "cache-0",
        "redis",
        "echo x > /data/written && cat /data/written",
    );
    assert!(ok && out.trim() == "x", "/data is writable: {out}");
    // The server persisted into its claim as that user (the probe and the operator's commands all passed).
    let ip = pod_ip(&pod);
    assert!(redis_command(&ip, &["SAVE"]).await.starts_with("+OK"));
    let (ok, out) = exec(&env, "cache-0", "redis", "ls -ln /data/dump.rdb");
    assert!(
        ok && out.contains(" 999 "),
        "dump.rdb belongs to 999: {out}"
    );

    // The kubelet ran the exec readiness probe (the pod is Ready) and the exporter serves its metrics.
    let metrics = crate::knobs::wait_scrape(&ip, 0.0).await;
    assert!(metrics.contains("redis_up 1"), "{metrics}");
}

/// An application pod: the Redis image's `redis-cli` in a loop, connecting to `host` by its Service name with
/// the password file of the instance's Secret mounted as an application would. Each line it prints is
/// `<n> <uptime seconds> <replies>`; a write is confirmed when `WAIT 1` acknowledged it.
fn client_pod(name: &str, host: &str, secret: &str) -> Pod {
    let script = format!(
        "pw=$(cat /etc/app/password); i=0; \
         while [ ! -f /tmp/stop ] && [ $i -lt 200000 ]; do i=$((i+1)); \
         out=$(printf 'AUTH %s\\nSET app%s %s\\nWAIT 1 1000\\n' \"$pw\" $i $i | \
               timeout 3 redis-cli -h {host} --no-auth-warning 2>&1 | tr '\\n' ' '); \
         read up rest </proc/uptime; echo \"$i $up $out\"; done; echo done"
    );
    one_off_pod(name, &script, Some(secret))
}

/// A pod that runs `script` once (the Redis image: busybox and `redis-cli`) as an unprivileged application,
/// with the Secret `secret`, if any, mounted at `/etc/app`.
fn one_off_pod(name: &str, script: &str, secret: Option<&str>) -> Pod {
    let mut pod = serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app",
                "image": "redis:7.2",
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
            }]
        }
    });
    if let Some(secret) = secret {
        pod["spec"]["containers"][0]["volumeMounts"] =
            serde_json::json!([{"name": "password", "mountPath": "/etc/app", "readOnly": true}]);
        pod["spec"]["volumes"] =
            serde_json::json!([{"name": "password", "secret": {"secretName": secret}}]);
    }
    serde_json::from_value(pod).expect("a one-off pod")
}

/// Creates `pod` in `namespace`, waits until it has finished, and returns its phase and its output; the pod is
/// deleted afterwards.
async fn run_to_completion(env: &TestEnv, namespace: &str, pod: &Pod) -> (Option<String>, String) {
    let name = pod.name_any();
    let pods: kube::Api<Pod> = kube::Api::namespaced(env.client.clone(), namespace);
    pods.create(&PostParams::default(), pod)
        .await
        .expect("the one-off pod is created");
    let done = await_condition(pods.clone(), &name, |pod: Option<&Pod>| {
        matches!(
            pod.and_then(|p| p.status.as_ref()?.phase.clone())
                .as_deref(),
            Some("Succeeded" | "Failed")
        )
    });
    let phase = tokio::time::timeout(WAIT, done)
        .await
        .expect("the one-off pod finishes")
        .unwrap()
        .and_then(|p| p.status?.phase);
    let out = run_ok(
        kubectl(env.info).args(["-n", namespace, "logs", &name]),
        None,
    );
    pods.delete(&name, &DeleteParams::default()).await.ok();
    (phase, out)
}

/// What a client pod printed: the keys it saw confirmed and the longest time between two confirmed writes.
struct ClientLog {
    confirmed: BTreeSet<u64>,
    attempts: usize,
    longest_gap: Duration,
}

fn parse_client_log(log: &str) -> ClientLog {
    let mut confirmed = BTreeSet::new();
    let mut attempts = 0;
    let mut last: Option<f64> = None;
    let mut longest = 0.0f64;
    for line in log.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(n), Some(at)) = (
            fields.first().and_then(|f| f.parse::<u64>().ok()),
            fields.get(1).and_then(|f| f.parse::<f64>().ok()),
        ) else {
            continue;
        };
        attempts += 1;
        // AUTH's OK, SET's OK, then WAIT's count of replicas that acknowledged.
        let acked = fields.len() == 5
            && fields[2] == "OK"
            && fields[3] == "OK"
            && fields[4].parse::<u32>().is_ok_and(|acks| acks >= 1);
        if acked {
            if let Some(previous) = last {
                longest = longest.max(at - previous);
            }
            last = Some(at);
            confirmed.insert(n);
        }
    }
    ClientLog {
        confirmed,
        attempts,
        longest_gap: Duration::from_secs_f64(longest),
    }
}

fn pod_log(env: &TestEnv, pod: &str) -> String {
    run_ok(kubectl(env.info).args(["-n", &env.ns, "logs", pod]), None)
}

/// The pod's log so far, empty while its container has not started.
fn pod_log_so_far(env: &TestEnv, pod: &str) -> String {
    let out = kubectl(env.info)
        .args(["-n", &env.ns, "logs", pod])
        .output()
        .expect("kubectl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the client pod has printed `more` confirmed writes beyond `seen`; returns the new count.
async fn wait_client_writes(env: &TestEnv, pod: &str, seen: usize, more: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let count = parse_client_log(&pod_log_so_far(env, pod)).confirmed.len();
        if count >= seen + more {
            return count;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the client pod confirmed {} writes in 120 s, waiting for {}",
            count - seen.min(count),
            more
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the real node: DEVCLUSTER_NODE=real"]
async fn an_app_pod_writes_by_service_name_across_a_failover_and_a_rolling_update() {
    require_real_node();
    let env = TestEnv::new("svcclient").await;
    // A writer from the host by pod IP (the suite's usual one) beside the app pod, for the two gaps.
    let (_, writer) = three_converged_with_a_writer(&env, spec(3)).await;
    let pods = env.pods();
    pods.create(
        &PostParams::default(),
        &client_pod("app", "cache", "cache-auth"),
    )
    .await
    .expect("the client pod is created");
    let mut seen = wait_client_writes(&env, "app", 0, 20).await;

    // Failover: the Redis process inside the container is killed; the kubelet restarts the container.
    let old = kill_primary_server(&env).await;
    wait_failed_over(&env, &old, "failed over after the killed server").await;
    seen = wait_client_writes(&env, "app", seen, 20).await;
    wait_writes(&writer, 20).await;

    // Rolling update: replicas first, a switchover, the old primary last.
    env.patch_spec("cache", serde_json::json!({"image": "redis:7-rollout"}))
        .await;
    env.wait_running("cache").await;
    for pod in env.pods_of("cache").await {
        let image = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers[0].image.clone());
        assert_eq!(
            image.as_deref(),
            Some("redis:7-rollout"),
            "{}",
            pod.name_any()
        );
    }
    wait_client_writes(&env, "app", seen, 20).await;
    assert_one_master(&env).await;

    // Stop the client and read what it saw.
    let (ok, out) = exec(&env, "app", "app", "touch /tmp/stop");
    assert!(ok, "the client pod stops on request: {out}");
    let finished = await_condition(pods.clone(), "app", |pod: Option<&Pod>| {
        pod.and_then(|p| p.status.as_ref()?.phase.clone())
            .as_deref()
            == Some("Succeeded")
    });
    tokio::time::timeout(WAIT, finished)
        .await
        .expect("the client pod finishes")
        .unwrap();
    let log = parse_client_log(&pod_log(&env, "app"));
    let by_ip_gap = finish_and_check(&env, writer, "by pod IP, failover and rolling update").await;
    eprintln!(
        "by Service name (app pod, DNS + kube-proxy): {} attempts, {} confirmed writes, longest write gap {:?}; \
         by pod IP from the host: longest write gap {by_ip_gap:?}",
        log.attempts,
        log.confirmed.len(),
        log.longest_gap
    );

    // Every write the app saw confirmed is on the final primary (its keys are its own: `app<n>`), and the
    // replicas' Service name answers reads.
    let confirmed: Vec<u64> = log.confirmed.iter().copied().collect();
    crate::replication::assert_confirmed_keys_on_the_primary(&env, "app", &confirmed).await;
    let newest = log.confirmed.iter().next_back().copied().expect("writes");
    let (ok, out) = exec_client_read(&env, newest).await;
    assert!(ok, "the replicas Service answers by name: {out}");
    pods.delete("app", &DeleteParams::default()).await.ok();
}

/// Failures through the container runtime rather than inside the container: containerd kills the primary's
/// Redis container (no grace), then stops the new primary's whole pod sandbox (the kubelet makes a new sandbox and
/// starts the pod's containers in it again, with a new network namespace). Each time the operator fails over,
/// the old primary rejoins as a replica, and no confirmed write is lost.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the real node: DEVCLUSTER_NODE=real"]
async fn failovers_after_the_runtime_kills_the_primary_container_and_its_sandbox_lose_no_confirmed_write(
) {
    require_real_node();
    let env = TestEnv::new("runtimekill").await;
    let (first, writer) = three_converged_with_a_writer(&env, spec(3)).await;

    let old = first.current_primary.clone().expect("a primary");
    let pod = env.pods().get(&old).await.unwrap();
    run_ok(
        crictl().args(["stop", "--timeout", "0", &container_id(&pod, "redis")]),
        None,
    );
    let second = wait_failed_over(
        &env,
        &old,
        "failed over after the runtime killed the container",
    )
    .await
    .status
    .unwrap();
    assert_rejoined_as_replica(&env, &old).await;
    wait_writes(&writer, 20).await;

    let old = second.current_primary.clone().expect("a primary");
    let pod = env.pods().get(&old).await.unwrap();
    let uid = pod.metadata.uid.clone().expect("a pod uid");
    let sandboxes = run_ok(
        crictl().args([
            "pods",
            "-q",
            "--label",
            &format!("io.kubernetes.pod.uid={uid}"),
        ]),
        None,
    );
    let sandbox = sandboxes
        .lines()
        .next()
        .expect("the pod's sandbox")
        .trim()
        .to_string();
    run_ok(crictl().args(["stopp", &sandbox]), None);
    wait_failed_over(
        &env,
        &old,
        "failed over after the runtime stopped the sandbox",
    )
    .await;
    assert_rejoined_as_replica(&env, &old).await;
    wait_writes(&writer, 20).await;

    assert_one_master(&env).await;
    finish_and_check(&env, writer, "the runtime killing containers").await;
}

/// The pod `old` serves as a replica again: the status says so and the pod carries the label (patched right
/// after the status write).
async fn assert_rejoined_as_replica(env: &TestEnv, old: &str) {
    crate::replication::wait_converged(env, "cache", 3).await;
    let replicas = crate::replication::labelled(env, "cache", "replica").await;
    assert!(
        replicas.iter().any(|p| p.name_any() == old),
        "{old} rejoined as a replica: {:#?}",
        env.instances().get("cache").await.unwrap().status
    );
}

/// Reads key `k<n>` through `cache-replicas` from a one-off pod, as an application's read path would.
async fn exec_client_read(env: &TestEnv, n: u64) -> (bool, String) {
    // A new pod's first connections may be refused until the NetworkPolicy enforcer has its address (kube-router
    // follows pod events): it retries, as an application does.
    let script = format!(
        "pw=$(cat /etc/app/password); i=0; while [ $i -lt 30 ]; do i=$((i+1)); \
         out=$(printf 'AUTH %s\\nGET app{n}\\n' \"$pw\" | \
               timeout 3 redis-cli -h cache-replicas.{ns}.svc.cluster.local --no-auth-warning 2>&1); \
         case \"$out\" in OK*) echo \"$out\"; exit 0;; esac; sleep 0.5; done; echo \"$out\"; exit 1",
        ns = env.ns
    );
    let pod = one_off_pod("reader", &script, Some("cache-auth"));
    let (phase, out) = run_to_completion(env, &env.ns, &pod).await;
    let ok = phase.as_deref() == Some("Succeeded") && out.lines().nth(1) == Some(&n.to_string());
    (ok, out)
}

#[test]
fn the_client_log_counts_only_writes_that_a_replica_acknowledged() {
    let log =
        "1 10.00 OK OK 1 \n2 10.50 OK OK 0 \n3 12.25 Could not connect \n4 13.00 OK OK 2 \ndone\n";
    let parsed = parse_client_log(log);
    assert_eq!(parsed.attempts, 4);
    assert_eq!(parsed.confirmed, BTreeSet::from([1, 4]));
    assert_eq!(parsed.longest_gap, Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the real node: DEVCLUSTER_NODE=real"]
async fn an_image_that_cannot_be_pulled_fails_with_its_reason_and_the_fixed_image_recovers() {
    require_real_node();
    let env = TestEnv::new("noimage").await;
    let mut s = spec(1);
    // No registry is reachable from the local cluster: an image that was not imported cannot be pulled.
    s.image = "redis:not-built-here".into();
    env.create("cache", s).await;
    let failed = env
        .wait_status("cache", "Failed/PodsFailing", |s| {
            s.status == redis_fsm::Phase::Failed && s.reason == "PodsFailing"
        })
        .await;
    let message = failed.status.unwrap().last_condition_message;
    assert!(
        message.contains("cache-0")
            && (message.contains("ErrImagePull") || message.contains("ImagePullBackOff")),
        "the message names the pod and the pull error: {message}"
    );
    env.patch_spec("cache", serde_json::json!({"image": "redis:7.2"}))
        .await;
    env.wait_running("cache").await;
}

/// A pod the scheduler cannot place (it asks for more CPU than the node has) leaves the instance `Pending`,
/// and the message carries the scheduler's own reason; asking for what fits lets it run.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the real node: DEVCLUSTER_NODE=real"]
async fn an_unschedulable_pod_is_pending_with_the_schedulers_reason_until_the_spec_fits() {
    require_real_node();
    let env = TestEnv::new("unsched").await;
    let mut s = spec(1);
    s.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
        requests: Some([("cpu".to_string(), Quantity("1000".into()))].into()),
        ..Default::default()
    });
    env.create("cache", s).await;
    let pending = env
        .wait_status("cache", "Pending, naming the unschedulable pod", |s| {
            s.status == redis_fsm::Phase::Pending
                && s.last_condition_message.contains("cannot be scheduled")
        })
        .await;
    let message = pending.status.unwrap().last_condition_message;
    assert!(
        message.contains("cache-0 cannot be scheduled") && message.contains("Insufficient cpu"),
        "the message names the pod and the scheduler's reason: {message}"
    );
    env.patch_spec(
        "cache",
        serde_json::json!({"resources": {"requests": {"cpu": "10m"}}}),
    )
    .await;
    env.wait_running("cache").await;
}

/// Runs `script` in a one-off pod of `namespace` and returns what it printed.
async fn probe_from(env: &TestEnv, namespace: &str, name: &str, script: &str) -> String {
    run_to_completion(env, namespace, &one_off_pod(name, script, None))
        .await
        .1
}

/// The instance's NetworkPolicy as an enforcing CNI applies it (the real node with kube-router's policy
/// controller): a pod of the instance's namespace reaches Redis through the Service, a pod of another namespace
/// is refused, and the exporter's port admits nobody the spec does not name. The operator, on the node, keeps
/// managing the instance (the rest of the suite runs with these policies too).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the real node: DEVCLUSTER_NODE=real"]
async fn the_network_policy_admits_the_namespace_and_refuses_other_namespaces() {
    require_real_node();
    let enforcer =
        std::fs::read_to_string(devcluster_dir().join("network-policy")).unwrap_or_default();
    assert_eq!(
        enforcer.trim(),
        "kube-router",
        "needs NetworkPolicies enforced: DEVCLUSTER_NETWORK_POLICY=kube-router"
    );
    let env = TestEnv::new("netpol").await;
    let mut s = spec(2);
    s.monitoring.exporter.enabled = true;
    env.create("cache", s).await;
    env.wait_running("cache").await;
    let host = format!("cache.{}.svc.cluster.local", env.ns);
    // Each probe tries for about 15 s: a new pod's first connections may be refused until kube-router, which
    // follows pod events, has its address; the pod of the instance's namespace gets in within that time.
    let ping = format!(
        "i=0; while [ $i -lt 30 ]; do i=$((i+1)); out=$(timeout 2 redis-cli -h {host} PING 2>&1); \
         case \"$out\" in *NOAUTH*|*PONG*) echo \"$out\"; exit 0;; esac; sleep 0.5; done; echo \"$out\""
    );
    let inside = probe_from(&env, &env.ns, "inside", &ping).await;
    assert!(
        inside.contains("NOAUTH"),
        "the namespace's pod reaches Redis: {inside}"
    );

    let other = format!("{}-other", env.ns);
    run_ok(
        kubectl(env.info).args(["create", "namespace", &other]),
        None,
    );
    let outside = probe_from(&env, &other, "outside", &ping).await;
    run_ok(
        kubectl(env.info).args(["delete", "namespace", &other, "--wait=false"]),
        None,
    );
    assert!(
        !outside.contains("NOAUTH") && !outside.contains("PONG"),
        "a pod of another namespace is refused: {outside}"
    );

    let pod = env.pods().get("cache-0").await.unwrap();
    let metrics = format!(
        "i=0; while [ $i -lt 20 ]; do i=$((i+1)); \
         if timeout 2 wget -q -O- http://{}:9121/metrics >/dev/null 2>&1; then echo exit=0; exit 0; fi; \
         sleep 0.5; done; echo exit=1",
        pod_ip(&pod)
    );
    let scraped = probe_from(&env, &env.ns, "scraper", &metrics).await;
    assert!(
        !scraped.contains("exit=0"),
        "the exporter's port admits nobody unnamed: {scraped}"
    );
}

/// The connection value an app pod reads from `NAME-connection` (mounted at `/etc/app`), and the counter it
/// increments through the `NAME` Service with the `uri` it finds there, read on the primary.
async fn app_counter(env: &TestEnv) -> i64 {
    let status = env.instances().get("cache").await.unwrap().status.unwrap();
    let primary = env
        .pods()
        .get(status.current_primary.as_deref().unwrap())
        .await
        .unwrap();
    let reply = redis_command(&pod_ip(&primary), &["GET", "app:counter"]).await;
    reply
        .lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the app has counted `more` further increments (through the Service, whatever pod is primary).
async fn app_counts(env: &TestEnv, more: i64, what: &str) {
    let start = app_counter(env).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    while app_counter(env).await < start + more {
        assert!(
            std::time::Instant::now() < deadline,
            "the app stopped counting {what} (at {})",
            app_counter(env).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An app that knows only `NAME-connection` (mounted, its `uri` read before every command: host by Service DNS
/// name, credentials, scheme) connects, goes on across a password rotation (the Secret follows once the new
/// password is in force everywhere; the kubelet refreshes the mounted file) and across a failover.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the real node: DEVCLUSTER_NODE=real"]
async fn an_app_bound_to_the_connection_secret_survives_a_rotation_and_a_failover() {
    require_real_node();
    let env = TestEnv::new("binding").await;
    crate::security::put_secret(&env, "app-creds", &[("password", "first-password-1")]).await;
    let mut s = spec(2);
    s.replication.failover_delay_seconds = 2;
    s.auth.secret_ref = Some(redis_operator::api::SecretKeyRef {
        name: "app-creds".into(),
        key: "password".into(),
    });
    env.create("cache", s).await;
    env.wait_running("cache").await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(env.client.clone(), &env.ns);
    let entry = |secret: &k8s_openapi::api::core::v1::Secret, key: &str| {
        String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
    };
    let binding = await_condition(
        secrets.clone(),
        "cache-connection",
        |s: Option<&k8s_openapi::api::core::v1::Secret>| s.is_some(),
    );
    let binding = tokio::time::timeout(Duration::from_secs(60), binding)
        .await
        .expect("NAME-connection is created")
        .unwrap()
        .unwrap();
    assert_eq!(binding.type_.as_deref(), Some("servicebinding.io/redis"));
    assert_eq!(entry(&binding, "type"), "redis");
    assert_eq!(entry(&binding, "host"), format!("cache.{}.svc", env.ns));
    assert_eq!(entry(&binding, "password"), "first-password-1");
    assert_eq!(
        entry(&binding, "uri"),
        format!("redis://default:first-password-1@cache.{}.svc:6379", env.ns)
    );

    let script = "while true; do timeout 3 redis-cli -u \"$(cat /etc/app/uri)\" --no-auth-warning \
                  INCR app:counter; sleep 0.1; done";
    let mut app = one_off_pod("app", script, Some("cache-connection"));
    app.spec.as_mut().unwrap().restart_policy = Some("Always".into());
    env.pods()
        .create(&PostParams::default(), &app)
        .await
        .expect("the app pod is created");
    app_counts(&env, 20, "at first").await;

    // Rotation: the new password, the old one still accepted; the binding follows once it is in force.
    let rotated = crate::security::put_secret(
        &env,
        "app-creds",
        &[
            ("password", "second-password-2"),
            ("previousPassword", "first-password-1"),
        ],
    )
    .await;
    crate::security::wait_applied(&env, &rotated.resource_version().unwrap()).await;
    let follows = await_condition(
        secrets.clone(),
        "cache-connection",
        |s: Option<&k8s_openapi::api::core::v1::Secret>| {
            s.and_then(|s| s.data.as_ref()?.get("password").cloned())
                .is_some_and(|p| p.0 == b"second-password-2")
        },
    );
    tokio::time::timeout(Duration::from_secs(60), follows)
        .await
        .expect("NAME-connection carries the new password")
        .unwrap();
    // The kubelet refreshes the mounted file; then the old password is withdrawn and the app goes on.
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    loop {
        let (_, uri) = exec(&env, "app", "app", "cat /etc/app/uri");
        if uri.contains("second-password-2") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the mounted binding never changed: {uri}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let withdrawn =
        crate::security::put_secret(&env, "app-creds", &[("password", "second-password-2")]).await;
    crate::security::wait_applied(&env, &withdrawn.resource_version().unwrap()).await;
    app_counts(&env, 20, "after the rotation").await;

    // A failover: the Service moves to the new primary and the app, by DNS name, follows.
    let old = kill_primary_server(&env).await;
    env.wait_status("cache", "failed over", move |s| {
        s.current_primary.as_ref().is_some_and(|p| *p != old)
    })
    .await;
    app_counts(&env, 20, "after the failover").await;
}
