//! The end-to-end harness: brings up (or reuses) a cluster once per test process, installs the CRD, and
//! gives every test its own namespace with its own operator process scoped to it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, ResourceQuota};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::await_condition;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Config, ResourceExt};
use redis_fsm::Phase;
use redis_operator::api::{RedisInstance, RedisInstanceSpec, RedisInstanceStatus};

/// Default time a test waits for a condition.
pub const WAIT: Duration = Duration::from_secs(120);

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Where the suite runs: the kubeconfig, the operator's context, and the API server's audit log if known.
pub struct ClusterInfo {
    pub kubeconfig: PathBuf,
    /// The kubectl of the cluster's own release (the local cluster's), else the one on PATH.
    pub kubectl: PathBuf,
    pub operator_context: Option<String>,
    pub audit_log: Option<PathBuf>,
}

/// Runs a command with `stdin` as its input (none when `None`) and returns what it printed and its status.
pub fn run_captured(cmd: &mut Command, stdin: Option<&str>) -> std::process::Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs a command, panicking with its output unless it succeeds; returns stdout.
pub fn run_ok(cmd: &mut Command, stdin: Option<&str>) -> String {
    let out = run_captured(cmd, stdin);
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts the local cluster (or takes `REDIS_OPERATOR_E2E_KUBECONFIG`) and installs the CRD, once.
pub fn cluster() -> &'static ClusterInfo {
    static CLUSTER: OnceLock<ClusterInfo> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let info = match std::env::var_os("REDIS_OPERATOR_E2E_KUBECONFIG") {
            Some(path) => ClusterInfo {
                kubeconfig: path.into(),
                kubectl: "kubectl".into(),
                operator_context: None,
                audit_log: std::env::var_os("REDIS_OPERATOR_E2E_AUDIT_LOG").map(Into::into),
            },
            None => {
                run_ok(
                    Command::new("bash")
                        .arg(format!("{REPO}/devcluster/cluster.sh"))
                        .arg("up"),
                    None,
                );
                let dir = devcluster_dir();
                ClusterInfo {
                    kubeconfig: dir.join("kubeconfig"),
                    kubectl: dir.join("bin/kubectl"),
                    operator_context: Some("redis-operator".into()),
                    audit_log: Some(dir.join("audit.log")),
                }
            }
        };
        install_crd(&info);
        info
    })
}

/// Applies `crds/redisinstance.yaml` and `crds/redisbackup.yaml` and waits until the API server serves them.
pub fn install_crd(info: &ClusterInfo) {
    apply_crds(
        info,
        &format!("{REPO}/crds"),
        "",
        redis_operator::names::API_GROUP,
    );
    wait_published(info);
}

/// Applies the CRDs of the API group before 0.2 (`redis.github.com/v1`, kept in `tests/data/legacy`) and waits
/// until they are Established.
pub fn install_legacy_crds(info: &ClusterInfo) {
    apply_crds(
        info,
        &format!("{REPO}/tests/data/legacy"),
        "-crd",
        redis_operator::names::LEGACY_API_GROUP,
    );
}

/// Applies `DIR/redisinstanceSUFFIX.yaml` and `DIR/redisbackupSUFFIX.yaml` and waits until both CRDs of
/// `group` are Established.
fn apply_crds(info: &ClusterInfo, dir: &str, suffix: &str, group: &str) {
    for crd in ["redisinstance", "redisbackup"] {
        let file = format!("{dir}/{crd}{suffix}.yaml");
        run_ok(kubectl(info).args(["apply", "-f", &file]), None);
    }
    // Polled rather than `kubectl wait`, which fails at once while a new CRD has no conditions yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for crd in ["redisinstances", "redisbackups"] {
        loop {
            let established = run_captured(
                kubectl(info).args([
                    "get",
                    &format!("crd/{crd}.{group}"),
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
                ]),
                None,
            );
            if String::from_utf8_lossy(&established.stdout).trim() == "True" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the CRD {crd}.{group} was not Established within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Waits until the API server publishes the CRD's schema in both OpenAPI documents: that happens a moment after
/// the CRD is Established, and `kubectl explain` (v3 by default, v2 on request) fails until then.
fn wait_published(info: &ClusterInfo) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for output in ["plaintext", "plaintext-openapiv2"] {
        loop {
            let out = kubectl(info)
                .args([
                    "explain",
                    "redisinstance.spec",
                    &format!("--output={output}"),
                ])
                .stdin(Stdio::null())
                .output()
                .expect("kubectl runs");
            if out.status.success() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the RedisInstance schema is not published in OpenAPI ({output}) after 60 s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Creates a ResourceQuota `name` allowing zero of `resource` in the test's namespace and waits until it is
/// enforced (admission reads the quota's status, which the quota controller computes a moment later).
pub async fn zero_quota(env: &TestEnv, name: &str, resource: &str) -> Api<ResourceQuota> {
    let quotas: Api<ResourceQuota> = Api::namespaced(env.client.clone(), &env.ns);
    let quota: ResourceQuota = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"hard": {resource: "0"}}
    }))
    .expect("a ResourceQuota");
    quotas
        .create(&PostParams::default(), &quota)
        .await
        .expect("the quota is created");
    let enforced = |q: Option<&ResourceQuota>| {
        q.and_then(|q| q.status.as_ref())
            .and_then(|s| s.hard.as_ref())
            .is_some_and(|hard| hard.contains_key(resource))
    };
    let enforced = await_condition(quotas.clone(), name, enforced);
    tokio::time::timeout(WAIT, enforced)
        .await
        .expect("the quota is enforced in time")
        .expect("the quota watch works");
    quotas
}

/// `kubectl` against the suite's cluster as admin.
///
/// Its discovery cache is this process's own: kubectl keeps the one under `~/.kube/cache` for hours, keyed by
/// the API server's address, which every lab cluster shares; a cache written by an earlier run (another version
/// of the CRDs, a legacy group that also had the short name `ri`) would otherwise decide what `ri` means here.
pub fn kubectl(info: &ClusterInfo) -> Command {
    let mut cmd = Command::new(&info.kubectl);
    cmd.env("KUBECONFIG", &info.kubeconfig).env(
        "KUBECACHEDIR",
        std::env::temp_dir().join(format!(
            "redis-operator-kubectl-cache-{}",
            std::process::id()
        )),
    );
    cmd
}

/// An admin client for the suite's cluster (one per test: clients are bound to their runtime).
pub async fn admin_client(info: &ClusterInfo) -> Client {
    let kubeconfig = Kubeconfig::read_from(&info.kubeconfig).expect("kubeconfig is readable");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is valid");
    Client::try_from(config).expect("client builds")
}

/// The state directory of the local cluster the suite runs on (`DEVCLUSTER_DIR`, else the repository's).
pub fn devcluster_dir() -> PathBuf {
    std::env::var_os("DEVCLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(REPO).join(".devcluster"))
}

/// Whether the suite runs on the local cluster's real node (a kubelet with containerd), not the node agent.
pub fn real_node() -> bool {
    std::env::var_os("REDIS_OPERATOR_E2E_KUBECONFIG").is_none()
        && std::fs::read_to_string(devcluster_dir().join("node-mode"))
            .is_ok_and(|mode| mode.trim() == "real")
}

/// Builds the operator's image from this test build's binary and imports it into the real node's containerd
/// (devcluster/images.sh; the archive is cached, an unchanged image is not imported again).
#[allow(dead_code)] // the install suite's in-cluster test uses it
pub fn import_operator_image() {
    // Once per test process: tests running side by side would build and import the same archive at once.
    static IMPORTED: OnceLock<()> = OnceLock::new();
    IMPORTED.get_or_init(|| {
        let socket = std::fs::read_to_string(devcluster_dir().join("containerd-socket"))
            .expect("the real node records its containerd socket");
        run_ok(
            Command::new("bash")
                .arg(format!("{REPO}/devcluster/images.sh"))
                .args(["import", socket.trim(), "redis-operator"])
                .env(
                    "DEVCLUSTER_OPERATOR_BINARY",
                    env!("CARGO_BIN_EXE_redis-operator"),
                ),
            None,
        );
    });
}

/// The host PID of a pod container's main process. The node agent reports `process://PID`; a container of the
/// real node (`containerd://ID`) is found by its cgroup, as the process that is PID 1 of its own PID namespace
/// (probes and `exec` sessions share the cgroup, not that PID).
pub fn container_pid(pod: &Pod, container: &str) -> i32 {
    let id = container_status_id(pod, container);
    if let Some(pid) = id.strip_prefix("process://") {
        return pid.parse().expect("the node agent reports process://PID");
    }
    let id = id
        .strip_prefix("containerd://")
        .unwrap_or_else(|| panic!("unknown container runtime in {id}"));
    let pids = std::fs::read_dir("/proc")
        .expect("/proc is readable")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok());
    let mut found = pids.filter(|pid| {
        let in_container = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|cgroups| cgroups.contains(id));
        in_container
            && std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("NSpid:"))
                    .and_then(|pids| pids.split_whitespace().last())
                    == Some("1")
            })
    });
    found.next().unwrap_or_else(|| {
        panic!(
            "no process of container {id} ({container} of {})",
            pod.name_any()
        )
    })
}

/// The container id a pod's status reports for one of its containers (`containerd://ID`, or the node agent's
/// `process://PID`).
fn container_status_id(pod: &Pod, container: &str) -> String {
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|statuses| statuses.iter().find(|c| c.name == container))
        .unwrap_or_else(|| panic!("{} has no status for container {container}", pod.name_any()));
    status
        .container_id
        .clone()
        .unwrap_or_else(|| panic!("container {container} of {} is not running", pod.name_any()))
}

/// The real node's container runtime id of a pod's container, for `crictl`.
#[allow(dead_code)] // the real-node tests use it
pub fn container_id(pod: &Pod, container: &str) -> String {
    let id = container_status_id(pod, container);
    id.strip_prefix("containerd://")
        .unwrap_or_else(|| panic!("not a container of the real node: {id}"))
        .to_string()
}

/// `crictl` against the real node's containerd (the socket real-node.sh records in the state directory).
#[allow(dead_code)] // the real-node tests use it
pub fn crictl() -> Command {
    let dir = devcluster_dir();
    let socket = std::fs::read_to_string(dir.join("containerd-socket"))
        .expect("the real node records its containerd socket");
    let mut cmd = Command::new(dir.join("bin/crictl"));
    cmd.args(["--runtime-endpoint", &format!("unix://{}", socket.trim())])
        .args(["--timeout", "30s"]);
    cmd
}

/// `devcluster/cluster.sh` of this checkout (it takes the cluster's `DEVCLUSTER_*` settings from the
/// environment the tests run in).
#[allow(dead_code)] // the exclusive tests use it
pub fn cluster_sh() -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(format!("{REPO}/devcluster/cluster.sh"));
    cmd
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running operator process, killed when dropped.
pub struct Operator {
    child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Operator {
    /// Starts `redis-operator run` scoped to `namespace`, with extra arguments.
    pub fn start(info: &ClusterInfo, namespace: &str, extra: &[&str]) -> Operator {
        let metrics_port = free_port();
        let log_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-logs");
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let log = log_dir.join(format!("{namespace}-{metrics_port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        // `REDIS_OPERATOR_E2E_OPERATOR_BIN` runs another build (e.g. an older commit's, to see a new test fail
        // on it) under the same tests.
        let binary = std::env::var_os("REDIS_OPERATOR_E2E_OPERATOR_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_redis-operator").into());
        let mut cmd = Command::new(binary);
        cmd.env("KUBECONFIG", &info.kubeconfig)
            .args([
                "run",
                "--namespace",
                namespace,
                "--log-level",
                "info,redis_operator=debug",
            ])
            .arg("--metrics-address")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        if let Some(context) = &info.operator_context {
            cmd.args(["--context", context]);
        }
        let child = cmd.spawn().expect("operator starts");
        Operator {
            child,
            metrics_port,
            log,
        }
    }

    /// The process id (for its /proc entry).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process (SIGTERM, then waits).
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// Kills the process with SIGKILL (no chance to finish anything), then reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Fetches `path` from the operator's HTTP endpoint.
    pub async fn http_get(&self, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
            .await
            .ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())?;
        Some((code, body))
    }

    /// The value of a metric sample (exact series text, e.g. `redis_operator_reconciles_total{result="ok"}`).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics").await?;
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    }
}

impl Operator {
    /// Waits until the metric sample reaches `target`; returns its value.
    pub async fn wait_metric_at_least(&self, series: &str, target: f64) -> f64 {
        let wait = async {
            loop {
                let value = self.metric(series).await.unwrap_or_default();
                if value >= target {
                    return value;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("{series} did not reach {target}"))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One test's world: a fresh namespace, an admin client, and an operator watching only that namespace.
pub struct TestEnv {
    pub info: &'static ClusterInfo,
    pub client: Client,
    pub ns: String,
    pub operator: Operator,
}

impl TestEnv {
    /// Creates the namespace and starts the operator.
    pub async fn new(test: &str) -> TestEnv {
        Self::with_operator_args(test, &[]).await
    }

    /// Like [`TestEnv::new`] with extra operator arguments.
    pub async fn with_operator_args(test: &str, args: &[&str]) -> TestEnv {
        let info = cluster();
        let client = admin_client(info).await;
        let suffix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() % 100_000)
            .unwrap_or_default();
        let ns = format!("e2e-{test}-{suffix}");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(ns.clone());
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace is created");
        let operator = Operator::start(info, &ns, args);
        TestEnv {
            info,
            client,
            ns,
            operator,
        }
    }

    pub fn instances(&self) -> Api<RedisInstance> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn statefulsets(&self) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn claims(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates an instance and starts recording every status it goes through.
    pub async fn create(&self, name: &str, spec: RedisInstanceSpec) -> StatusLog {
        let log = StatusLog::start(self.instances(), name);
        self.instances()
            .create(&PostParams::default(), &RedisInstance::new(name, spec))
            .await
            .expect("instance is created");
        log
    }

    /// Merge-patches the spec of an instance and returns its new generation.
    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) -> i64 {
        let patch = serde_json::json!({ "spec": spec });
        let ri = self
            .instances()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("spec patch is accepted");
        ri.metadata.generation.expect("generation")
    }

    /// Waits until the instance's status satisfies `condition`, returning the instance.
    pub async fn wait_status(
        &self,
        name: &str,
        what: &str,
        condition: impl Fn(&RedisInstanceStatus) -> bool,
    ) -> RedisInstance {
        let condition = &condition;
        let cond = move |ri: Option<&RedisInstance>| {
            ri.and_then(|r| r.status.as_ref()).is_some_and(condition)
        };
        // A watch that ends with an error (410 Expired on a busy API server) is started again: only the time
        // limit fails the wait.
        let wait = async {
            loop {
                match await_condition(self.instances(), name, cond).await {
                    Ok(found) => return Ok(found),
                    Err(error) => {
                        eprintln!("watching {name} for {what}: {error}; watching again");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        };
        match tokio::time::timeout(WAIT, wait).await {
            Ok(Ok::<_, kube::runtime::wait::Error>(Some(ri))) => ri,
            other => {
                let current = self.instances().get_opt(name).await.ok().flatten();
                panic!(
                    "timed out waiting for {name} to be {what}: {other:?}\ncurrent status: {:#?}\noperator log: {}",
                    current.and_then(|r| r.status),
                    self.operator.log.display()
                )
            }
        }
    }

    /// Deletes the instance and waits until it is gone (its finalizer done).
    pub async fn delete_and_wait_gone(&self, name: &str) {
        let uid = self
            .instances()
            .get(name)
            .await
            .expect("the instance exists")
            .metadata
            .uid
            .expect("a uid");
        self.instances()
            .delete(name, &Default::default())
            .await
            .expect("the instance is deleted");
        let gone = await_condition(
            self.instances(),
            name,
            kube::runtime::wait::conditions::is_deleted(&uid),
        );
        tokio::time::timeout(WAIT, gone)
            .await
            .expect("the instance goes in time")
            .expect("the instance watch works");
    }

    /// Waits until the instance is Running, Ready, and has observed its latest generation.
    pub async fn wait_running(&self, name: &str) -> RedisInstance {
        let generation = self
            .instances()
            .get(name)
            .await
            .expect("instance")
            .metadata
            .generation;
        self.wait_status(name, "Running and Ready", move |s| {
            s.status == Phase::Running
                && s.ready == "True"
                && s.observed_generation == generation
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .await
    }

    /// The UIDs of the instance's pods, in name order: a pod replaced shows as a new UID.
    pub async fn pod_uids(&self, name: &str) -> Vec<String> {
        self.pods_of(name)
            .await
            .iter()
            .map(|p| p.uid().unwrap())
            .collect()
    }

    /// The instance's pods, by name.
    pub async fn pods_of(&self, name: &str) -> Vec<Pod> {
        let params = ListParams::default().labels(&format!("app.kubernetes.io/instance={name}"));
        let mut pods = self.pods().list(&params).await.expect("pods list").items;
        pods.sort_by_key(|p| p.name_any());
        pods
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.operator.stop();
        if std::env::var_os("REDIS_OPERATOR_E2E_KEEP").is_none() {
            let _ = kubectl(self.info)
                .args(["delete", "namespace", &self.ns, "--wait=false"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Every status an instance went through, as seen by a watch started before the change.
#[derive(Clone)]
pub struct StatusLog {
    entries: Arc<Mutex<Vec<RedisInstanceStatus>>>,
    _task: Arc<tokio::task::JoinHandle<()>>,
}

impl StatusLog {
    /// Starts watching `name`.
    pub fn start(api: Api<RedisInstance>, name: &str) -> StatusLog {
        let entries: Arc<Mutex<Vec<RedisInstanceStatus>>> = Arc::default();
        let sink = entries.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, config).applied_objects().boxed();
            while let Ok(Some(ri)) = stream.try_next().await {
                if let Some(status) = ri.status {
                    let mut entries = sink.lock().unwrap();
                    if entries.last() != Some(&status) {
                        entries.push(status);
                    }
                }
            }
        });
        StatusLog {
            entries,
            _task: Arc::new(task),
        }
    }

    /// Every distinct status seen so far, oldest first.
    pub fn entries(&self) -> Vec<RedisInstanceStatus> {
        self.entries.lock().unwrap().clone()
    }

    /// The phases seen so far, without repeats.
    pub fn phases(&self) -> Vec<Phase> {
        let mut phases: Vec<Phase> = Vec::new();
        for status in self.entries.lock().unwrap().iter() {
            if phases.last() != Some(&status.status) {
                phases.push(status.status);
            }
        }
        phases
    }

    /// The first status computed from `generation` or later, waiting until this log's watch has seen one
    /// (it runs independently of the watch a test waited on).
    pub async fn first_for_generation(&self, generation: i64) -> RedisInstanceStatus {
        let find = || {
            self.entries
                .lock()
                .unwrap()
                .iter()
                .find(|s| s.observed_generation.is_some_and(|g| g >= generation))
                .cloned()
        };
        let wait = async {
            loop {
                if let Some(status) = find() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("no status for generation {generation} was seen"))
    }

    /// The phases of every status seen for `generation` or later, without repeats.
    pub fn phases_since(&self, generation: i64) -> Vec<Phase> {
        let mut phases: Vec<Phase> = Vec::new();
        let entries = self.entries.lock().unwrap();
        let since = entries
            .iter()
            .filter(|s| s.observed_generation.is_some_and(|g| g >= generation));
        for status in since {
            if phases.last() != Some(&status.status) {
                phases.push(status.status);
            }
        }
        phases
    }

    /// The phases seen so far, without repeats, once a status with `phase` has been seen.
    pub async fn phases_through(&self, phase: Phase) -> Vec<Phase> {
        let wait = async {
            loop {
                let phases = self.phases();
                if phases.contains(&phase) {
                    return phases;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("{phase} was never seen: {:?}", self.phases()))
    }
}

impl Drop for StatusLog {
    fn drop(&mut self) {
        if Arc::strong_count(&self._task) == 1 {
            self._task.abort();
        }
    }
}

/// A minimal spec with `replicas` pods. Authentication is on (the default), with every command allowed to the
/// application user so that tests can inspect and disturb servers (`CONFIG`, `CLIENT KILL`, `SAVE`) with the
/// password from `NAME-auth`; tests/e2e/security.rs checks the default least-privilege rules.
pub fn spec(replicas: i32) -> RedisInstanceSpec {
    let mut spec = RedisInstanceSpec {
        replicas,
        ..Default::default()
    };
    if let Some(image) = server_image() {
        spec.image = image;
    }
    spec.auth.default_user_rules = "~* &* +@all".into();
    spec
}

/// The server image the suite runs, `REDIS_OPERATOR_E2E_IMAGE` (e.g. `valkey/valkey:9`, which
/// `devcluster/images.sh` builds for the real node and the node agent runs as `valkey-server`); `None` for the
/// operator's default Redis image.
pub fn server_image() -> Option<String> {
    std::env::var("REDIS_OPERATOR_E2E_IMAGE")
        .ok()
        .filter(|image| !image.is_empty())
}

/// Another tag of the suite's server image, for a test that changes the image: `redis:7-SUFFIX`, or with
/// `REDIS_OPERATOR_E2E_IMAGE` set, that image's tag with `-SUFFIX` (`valkey/valkey:9-rollout`).
pub fn rolled_image(suffix: &str) -> String {
    match server_image() {
        Some(image) => format!("{image}-{suffix}"),
        None => format!("redis:7-{suffix}"),
    }
}

/// The application password of the instance whose pod has address `ip` (the key of `spec.auth.secretRef`, or
/// `password` of `NAME-auth`), looked up through the API: `None` when there is none or authentication is off
/// (Redis refuses `AUTH <password>` when the `default` user has no password).
pub async fn password_for(ip: &str) -> Option<String> {
    let client = admin_client(cluster()).await;
    let pods: Api<Pod> = Api::all(client.clone());
    let found = pods
        .list(&ListParams::default().fields(&format!("status.podIP={ip}")))
        .await
        .ok()?;
    // An address can be listed on more than one pod: one that has ended (its status keeps the address) and the
    // one now running there. Every live candidate is tried; the first whose instance has a password wins.
    for pod in found.items.into_iter().filter(|p| {
        p.metadata.deletion_timestamp.is_none()
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    }) {
        if let Some(password) = instance_password(&client, &pod).await {
            return Some(password);
        }
    }
    None
}

async fn instance_password(client: &Client, pod: &Pod) -> Option<String> {
    let ns = pod.namespace()?;
    let instance = pod.labels().get("app.kubernetes.io/instance")?.clone();
    let ri = Api::<RedisInstance>::namespaced(client.clone(), &ns)
        .get(&instance)
        .await
        .ok()?;
    if !ri.spec.auth.enabled {
        return None;
    }
    let (secret, key) = match &ri.spec.auth.secret_ref {
        Some(r) => (r.name.clone(), r.key.clone()),
        None => (format!("{instance}-auth"), "password".to_string()),
    };
    secret_value(client, &ns, &secret, &key).await
}

/// The value of `key` in Secret `name`, if both exist.
pub async fn secret_value(client: &Client, ns: &str, name: &str, key: &str) -> Option<String> {
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()?;
    let bytes = secret.data?.get(key)?.0.clone();
    String::from_utf8(bytes).ok()
}

/// The pod's IP, once it has one.
pub fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_else(|| panic!("pod {} has no IP", pod.name_any()))
}

/// Sends one Redis command to `ip:6379` and returns the raw reply. A server that asks for authentication
/// (`NOAUTH`) gets the application password of its instance (see [`password_for`]) first.
pub async fn redis_command(ip: &str, args: &[&str]) -> String {
    let reply = redis_command_as(ip, None, args).await;
    if !reply.starts_with("-NOAUTH") {
        return reply;
    }
    let password = password_for(ip)
        .await
        .unwrap_or_else(|| panic!("{ip} asks for a password and its instance has none"));
    redis_command_as(ip, Some(("default", &password)), args).await
}

/// One RESP request.
pub fn resp(args: &[&str]) -> String {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    request
}

/// Sends one Redis command to `ip:6379`, after `AUTH user password` when `login` is given (its reply must be
/// `+OK`, else that reply is returned), and returns the raw reply.
pub async fn redis_command_as(ip: &str, login: Option<(&str, &str)>, args: &[&str]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect((ip, 6379))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to redis at {ip}: {e}"));
    let mut buf = vec![0u8; 4096];
    if let Some((user, password)) = login {
        stream
            .write_all(resp(&["AUTH", user, password]).as_bytes())
            .await
            .expect("send");
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("redis answers in time")
            .expect("read");
        let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
        if reply != "+OK\r\n" {
            return reply;
        }
    }
    stream.write_all(resp(args).as_bytes()).await.expect("send");
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("redis answers in time")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Counts write requests (create, update, patch, delete) the operator's user made in `namespace`, from the
/// API server's audit log (`None` when the audit log is not available). Renewals of the operator's
/// leader-election Lease (in the test's namespace) are not writes about instances and are left out.
pub fn audit_writes(info: &ClusterInfo, user: &str, namespace: &str) -> Option<Vec<String>> {
    let log = std::fs::read_to_string(info.audit_log.as_ref()?).ok()?;
    Some(
        log.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|e| e["stage"] == "ResponseComplete")
            .filter(|e| e["user"]["username"] == user)
            .filter(|e| e["objectRef"]["namespace"] == namespace)
            .filter(|e| e["objectRef"]["resource"] != "leases")
            .filter(|e| {
                matches!(
                    e["verb"].as_str(),
                    Some("create" | "update" | "patch" | "delete" | "deletecollection")
                )
            })
            .map(|e| {
                format!(
                    "{} {}/{} {}",
                    e["verb"].as_str().unwrap_or_default(),
                    e["objectRef"]["resource"].as_str().unwrap_or_default(),
                    e["objectRef"]["name"].as_str().unwrap_or_default(),
                    e["objectRef"]["subresource"].as_str().unwrap_or_default()
                )
            })
            .collect(),
    )
}

/// The local S3 server: endpoint, access key id, secret; `None` against an existing cluster.
pub fn s3() -> Option<(String, String, String)> {
    if std::env::var_os("REDIS_OPERATOR_E2E_KUBECONFIG").is_some() {
        return None;
    }
    // The local cluster is started (once) before its S3 server's keys are read.
    cluster();
    let file = devcluster_dir().join("s3/env");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "the local cluster has no S3 server ({}: {e})",
            file.display()
        )
    });
    let vars: std::collections::BTreeMap<&str, &str> =
        text.lines().filter_map(|l| l.split_once('=')).collect();
    let var = |name: &str| {
        vars.get(name)
            .map(|v| v.to_string())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    Some((
        var("DEVCLUSTER_S3_ENDPOINT"),
        var("DEVCLUSTER_S3_ACCESS_KEY_ID"),
        var("DEVCLUSTER_S3_SECRET_ACCESS_KEY"),
    ))
}

/// Creates bucket `bucket` (curl signs the request).
pub fn create_bucket(endpoint: &str, key: &str, secret: &str, bucket: &str) {
    run_ok(
        std::process::Command::new("curl").args([
            "-sSf",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            &format!("{key}:{secret}"),
            "-X",
            "PUT",
            &format!("{endpoint}/{bucket}"),
        ]),
        None,
    );
}
