//! Convergence of N instances created at once, the API cost of it and of idle resyncs, and the footprint.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use redis_fsm::Phase;
use redis_operator::api::{RedisInstance, RedisInstanceSpec};

use crate::audit::{AuditLog, RequestCounts};
use crate::operator::{Footprint, Launch, Operator, RedisCost};
use crate::watch::Watch;

/// The audited user name of the operator (the `redis-operator` context of the devcluster kubeconfig).
pub const OPERATOR_USER: &str = "redis-operator";
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// What one size of the benchmark needs.
pub struct Setup<'a> {
    /// Admin client.
    pub client: &'a Client,
    /// How to start the operator.
    pub launch: &'a Launch,
    /// The API server's audit log.
    pub audit: &'a AuditLog,
    /// Creates in flight at once.
    pub create_concurrency: usize,
    /// Longest wait for convergence.
    pub timeout: Duration,
    /// Namespaces are called `<prefix>-n<N>` (`<prefix>-n<N>x<replicas>` for more than one pod each).
    pub namespace_prefix: &'a str,
    /// `spec.config` of every instance (e.g. `hz 1` for a crowded host, as a user would tune it).
    pub config: BTreeMap<String, String>,
    /// How long a converged operator is watched idle (API writes, CPU, Redis-side cost); at least one timer
    /// resync of every instance is waited for as well.
    pub idle: Duration,
}

/// When (since the first create) every instance had reached a milestone, and per-instance delays.
#[derive(Debug, Default, Clone)]
pub struct Milestones {
    /// All instances created (client side).
    pub created: Duration,
    /// All StatefulSets seen (the operator applied them).
    pub statefulsets: Duration,
    /// All pods Ready (StatefulSet controller + node agent).
    pub pods_ready: Duration,
    /// All StatefulSets report readyReplicas == replicas (StatefulSet controller).
    pub statefulsets_ready: Duration,
    /// All instances Running with Ready=True (the operator): the convergence time.
    pub running: Duration,
    /// Per instance: create response → its StatefulSet seen (operator reaction to a new instance).
    pub create_to_statefulset: Vec<Duration>,
    /// Per instance: StatefulSet ready seen → instance Running seen (operator reaction to readiness).
    pub ready_to_running: Vec<Duration>,
    /// Per instance: StatefulSet seen → StatefulSet ready seen (controller-manager and node agent).
    pub statefulset_to_ready: Vec<Duration>,
}

/// Results of one size N.
#[derive(Debug, Default, Clone)]
pub struct SizeResult {
    /// Number of instances.
    pub n: usize,
    /// Pods per instance (`spec.replicas`).
    pub replicas: i32,
    /// The operator's Redis-side cost from the first create to convergence.
    pub redis_converge: RedisCost,
    /// The operator's Redis-side cost over the idle window.
    pub redis_idle: RedisCost,
    /// The idle window measured.
    pub idle_window: Duration,
    /// Operator CPU seconds over the idle window.
    pub idle_cpu_seconds: f64,
    /// Convergence timeline.
    pub milestones: Milestones,
    /// Seconds spent in reconciles during convergence (histogram sum).
    pub reconcile_seconds: f64,
    /// Reconciles during convergence.
    pub reconciles: f64,
    /// Reconciles that failed during convergence.
    pub failed_reconciles: f64,
    /// Operator CPU seconds used for convergence.
    pub converge_cpu_seconds: f64,
    /// Operator requests from start to convergence (plus a quiet period).
    pub converge_requests: RequestCounts,
    /// Reconciles counted in the idle-resync window.
    pub idle_reconciles: f64,
    /// Operator requests while every instance was resynced by the timer.
    pub idle_requests: RequestCounts,
    /// Footprint after convergence and one idle resync of all N.
    pub footprint: Footprint,
    /// Whether the converging operator exited on SIGTERM.
    pub stopped_on_sigterm: bool,
    /// Reconciles a freshly restarted operator finished (it should reach N).
    pub restart_reconciles: f64,
    /// Whether the restarted operator finished at least N reconciles in time.
    pub restart_complete: bool,
    /// Whether the restarted operator exited on SIGTERM.
    pub restarted_stopped_on_sigterm: bool,
    /// Requests of a freshly restarted operator reconciling all N idle instances.
    pub restart_requests: RequestCounts,
    /// Footprint of the restarted operator after its first pass over all N.
    pub restart_footprint: Footprint,
}

#[derive(Default)]
struct Progress {
    created: Option<Instant>,
    statefulset: Option<Instant>,
    pod_ready: Option<Instant>,
    statefulset_ready: Option<Instant>,
    running: Option<Instant>,
}

fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn statefulset_is_ready(sts: &StatefulSet) -> bool {
    let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    sts.status
        .as_ref()
        .is_some_and(|s| s.ready_replicas.unwrap_or_default() >= want && s.replicas >= want)
}

fn instance_is_running(ri: &RedisInstance) -> bool {
    ri.status
        .as_ref()
        .is_some_and(|s| s.status == Phase::Running && s.ready == "True")
}

fn first(slot: &mut Option<Instant>, at: Instant) {
    slot.get_or_insert(at);
}

/// Latest time any instance reached a milestone, measured from `start`.
fn all_by(
    progress: &HashMap<String, Progress>,
    start: Instant,
    pick: impl Fn(&Progress) -> Option<Instant>,
) -> Duration {
    progress
        .values()
        .filter_map(&pick)
        .max()
        .map(|t| t.saturating_duration_since(start))
        .unwrap_or_default()
}

fn per_instance(
    progress: &HashMap<String, Progress>,
    from: impl Fn(&Progress) -> Option<Instant>,
    to: impl Fn(&Progress) -> Option<Instant>,
) -> Vec<Duration> {
    progress
        .values()
        .filter_map(|p| Some(to(p)?.saturating_duration_since(from(p)?)))
        .collect()
}

/// Creates a namespace.
pub async fn create_namespace(client: &Client, name: &str) -> Result<(), String> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let mut namespace = k8s_openapi::api::core::v1::Namespace::default();
    namespace.metadata.name = Some(name.to_string());
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .map_err(|e| format!("create namespace {name}: {e}"))?;
    Ok(())
}

/// Waits until the operator's reconcile counter has not moved for `quiet`, at most `limit`.
async fn wait_quiet(operator: &Operator, quiet: Duration, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = operator.metrics().await.reconciles();
    let mut since = Instant::now();
    while Instant::now() < deadline && since.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = operator.metrics().await.reconciles();
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}

/// Waits until the operator's reconcile counter reaches `target`, at most `limit`.
async fn wait_reconciles(operator: &Operator, target: f64, limit: Duration) -> Result<f64, String> {
    let deadline = Instant::now() + limit;
    loop {
        let now = operator.metrics().await.reconciles();
        if now >= target {
            return Ok(now);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "reconcile counter at {now} after {limit:?}, expected {target}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Audit log writes are synchronous with the request, but give stragglers a moment.
async fn audit_settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Runs one size: create N instances of `replicas` pods at once in a fresh namespace, wait for convergence,
/// watch the idle operator (at least one timer resync of every instance) and a restart of the operator.
pub async fn measure(setup: &Setup<'_>, n: usize, replicas: i32) -> Result<SizeResult, String> {
    let ns = if replicas == 1 {
        format!("{}-n{n}", setup.namespace_prefix)
    } else {
        format!("{}-n{n}x{replicas}", setup.namespace_prefix)
    };
    let spec = RedisInstanceSpec {
        replicas,
        config: setup.config.clone(),
        ..RedisInstanceSpec::default()
    };
    create_namespace(setup.client, &ns).await?;
    let instances: Api<RedisInstance> = Api::namespaced(setup.client.clone(), &ns);
    let mut instance_watch = Watch::start(instances.clone()).await;
    let mut sts_watch =
        Watch::start(Api::<StatefulSet>::namespaced(setup.client.clone(), &ns)).await;
    let mut pod_watch = Watch::start(Api::<Pod>::namespaced(setup.client.clone(), &ns)).await;
    let operator = Operator::start(setup.launch, &ns).await?;
    let mut result = SizeResult {
        n,
        replicas,
        ..Default::default()
    };

    eprintln!("[bench] N={n}: creating {n} instances of {replicas} pods in {ns}");
    let cpu_before = operator.footprint().cpu_seconds;
    let redis_before = operator.metrics().await.redis_cost();
    let start_mark = setup.audit.mark();
    let start = Instant::now();
    let names: Vec<String> = (0..n).map(|i| format!("r{i:04}")).collect();
    let mut creates = stream::iter(names.iter().cloned())
        .map(|name| {
            let api = instances.clone();
            let spec = spec.clone();
            async move {
                let created = api
                    .create(&PostParams::default(), &RedisInstance::new(&name, spec))
                    .await;
                (name, created.map(|_| Instant::now()))
            }
        })
        .buffer_unordered(setup.create_concurrency.max(1));
    let mut progress: HashMap<String, Progress> = names
        .iter()
        .map(|n| (n.clone(), Progress::default()))
        .collect();
    while let Some((name, created)) = creates.next().await {
        let at = created.map_err(|e| format!("create {name}: {e}"))?;
        if let Some(p) = progress.get_mut(&name) {
            p.created = Some(at);
        }
    }
    drop(creates);
    result.milestones.created = start.elapsed();

    let deadline = tokio::time::Instant::now() + setup.timeout;
    let mut running = 0;
    while running < n {
        tokio::select! {
            Some((at, ri)) = instance_watch.events.recv() => {
                if let Some(p) = progress.get_mut(&ri.name_any()) {
                    if p.running.is_none() && instance_is_running(&ri) {
                        p.running = Some(at);
                        running += 1;
                    }
                }
            }
            Some((at, sts)) = sts_watch.events.recv() => {
                if let Some(p) = sts.labels().get(INSTANCE_LABEL).and_then(|i| progress.get_mut(i)) {
                    first(&mut p.statefulset, at);
                    if statefulset_is_ready(&sts) {
                        first(&mut p.statefulset_ready, at);
                    }
                }
            }
            Some((at, pod)) = pod_watch.events.recv() => {
                if let Some(p) = pod.labels().get(INSTANCE_LABEL).and_then(|i| progress.get_mut(i)) {
                    if pod_is_ready(&pod) {
                        first(&mut p.pod_ready, at);
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(format!("N={n}: only {running}/{n} Running after {:?}", setup.timeout));
            }
        }
    }
    let m = &mut result.milestones;
    m.running = start.elapsed();
    m.statefulsets = all_by(&progress, start, |p| p.statefulset);
    m.pods_ready = all_by(&progress, start, |p| p.pod_ready);
    m.statefulsets_ready = all_by(&progress, start, |p| p.statefulset_ready);
    m.create_to_statefulset = per_instance(&progress, |p| p.created, |p| p.statefulset);
    m.ready_to_running = per_instance(&progress, |p| p.statefulset_ready, |p| p.running);
    m.statefulset_to_ready = per_instance(&progress, |p| p.statefulset, |p| p.statefulset_ready);
    eprintln!(
        "[bench] N={n}: all Running after {:.2} s",
        m.running.as_secs_f64()
    );
    let metrics = operator.metrics().await;
    result.reconcile_seconds = metrics.reconcile_seconds();
    result.reconciles = metrics.reconciles();
    result.failed_reconciles = metrics.failed_reconciles();
    result.converge_cpu_seconds = operator.footprint().cpu_seconds - cpu_before;
    result.redis_converge = metrics.redis_cost().since(redis_before);
    drop((instance_watch, sts_watch, pod_watch));

    // Late events of the converge (e.g. StatefulSet status after readiness) still belong to it.
    wait_quiet(&operator, Duration::from_secs(3), Duration::from_secs(60)).await;
    audit_settle().await;
    let converged_mark = setup.audit.mark();
    result.converge_requests = setup
        .audit
        .count(start_mark, converged_mark, OPERATOR_USER, &ns)?;

    eprintln!(
        "[bench] N={n}: watching the idle operator for {} s (and the timer resync of all {n} instances)",
        setup.idle.as_secs()
    );
    let idle_start = Instant::now();
    let idle_metrics = operator.metrics().await;
    let idle_cpu = operator.footprint().cpu_seconds;
    let before = idle_metrics.reconciles();
    let resync_limit = Duration::from_secs(setup.launch.resync_seconds * 2 + 60);
    wait_reconciles(&operator, before + n as f64, resync_limit).await?;
    // The rest of the window is measurement time: nothing is waited for, the idle operator is watched.
    tokio::time::sleep(setup.idle.saturating_sub(idle_start.elapsed())).await;
    let idle_end = operator.metrics().await;
    result.idle_window = idle_start.elapsed();
    result.idle_cpu_seconds = operator.footprint().cpu_seconds - idle_cpu;
    result.redis_idle = idle_end.redis_cost().since(idle_metrics.redis_cost());
    audit_settle().await;
    let idle_mark = setup.audit.mark();
    result.idle_reconciles = idle_end.reconciles() - before;
    result.idle_requests = setup
        .audit
        .count(converged_mark, idle_mark, OPERATOR_USER, &ns)?;
    result.footprint = operator.footprint();

    eprintln!("[bench] N={n}: restarting the operator");
    result.stopped_on_sigterm = operator.stop().await;
    let restart_mark = setup.audit.mark();
    let operator = Operator::start(setup.launch, &ns).await?;
    let restart_limit = Duration::from_secs(60.max(setup.launch.resync_seconds * 2));
    match wait_reconciles(&operator, n as f64, restart_limit).await {
        Ok(_) => result.restart_complete = true,
        Err(e) => eprintln!("[bench] N={n}: restarted operator: {e}"),
    }
    wait_quiet(&operator, Duration::from_secs(3), Duration::from_secs(60)).await;
    audit_settle().await;
    result.restart_reconciles = operator.metrics().await.reconciles();
    result.restart_requests =
        setup
            .audit
            .count(restart_mark, setup.audit.mark(), OPERATOR_USER, &ns)?;
    result.restart_footprint = operator.footprint();
    result.restarted_stopped_on_sigterm = operator.stop().await;
    eprintln!(
        "[bench] N={n}: converged in {:.2} s, {} object writes and {} Events to converge, {} writes on idle resync, RSS {} KiB",
        result.milestones.running.as_secs_f64(),
        result.converge_requests.object_writes(),
        result.converge_requests.event_writes(),
        result.idle_requests.object_writes() + result.idle_requests.event_writes(),
        result.footprint.rss_kib
    );
    Ok(result)
}
