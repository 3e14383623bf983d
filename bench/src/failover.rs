//! Failover time of the operator (real `redis-server` pods, process pod mode): one instance of 3 replicas, a
//! writer confirming every write with `WAIT 1 1000` through the pod that carries the primary label, and per
//! trial: converged → `kill -9` of the primary's server → first confirmed write on another pod (the failover
//! time) → the killed pod rejoins as a replica → every write confirmed so far is on the primary. The Sentinel
//! anchor (`sentinel.rs`) runs the same trial on plain servers; the report puts them side by side.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use redis_operator::api::{RedisInstance, RedisInstanceSpec};

use crate::converge::create_namespace;
use crate::instance::{
    container_id, primary_target, process_id, wait_topology, RoleLabels, INSTANCE,
};
use crate::operator::{Launch, Operator};
use crate::report::percentile;
use crate::watch::Watch;
use crate::writer::{missing_keys, Confirmed, Resolve, Writer, WriterStats};

/// Confirmed writes on the primary that make a topology count as converged (the writer really writes there).
pub const WRITES_TO_CONVERGE: usize = 20;

/// What every trial run needs, whatever the system.
#[derive(Clone, Debug)]
pub struct TrialSettings {
    /// Trials per configuration.
    pub trials: usize,
    /// Pause of the writer after each confirmed write.
    pub write_interval: Duration,
    /// Longest wait from the kill to the first confirmed write on another server.
    pub failover_timeout: Duration,
    /// Longest wait for the topology to converge (before the first trial, and for the rejoin).
    pub converge_timeout: Duration,
    /// Stall trials after the kills (operator only): the primary's server stopped (`SIGSTOP`) for
    /// [`STALL_SHARE`] of the delay while the host is busy, then continued. None should fail over.
    pub stalls: usize,
}

/// How much of the detection delay a stall trial stops the primary's server for.
pub const STALL_SHARE: f64 = 0.8;
/// Busy loops run on the host during a stall trial (one per core of the benchmark machine).
pub const STALL_BUSY_LOOPS: usize = 2;

/// One stall of the primary's server shorter than the delay, and what followed.
#[derive(Clone, Debug, Default)]
pub struct Stall {
    /// How long the server was stopped.
    pub stopped: Duration,
    /// Whether another pod took over the primary role (a false failover).
    pub failed_over: bool,
    /// Last confirmed write before the stop → first confirmed write after it.
    pub gap: Duration,
}

/// One kill and what followed.
#[derive(Clone, Debug, Default)]
pub struct Trial {
    /// Kill → first write confirmed by another server.
    pub failover: Duration,
    /// The killed primary.
    pub from: String,
    /// The server that confirmed the first write after the kill.
    pub to: String,
    /// Steps seen on the way, from the kill (first occurrence each).
    pub milestones: Vec<(String, Duration)>,
    /// Last confirmed write before the kill → first confirmed write after it.
    pub gap: Duration,
    /// Kill → converged again (the killed server back as an in-sync replica, the writer confirming).
    pub rejoin: Duration,
    /// Confirmed writes missing on the primary at the check after this trial (not missing at earlier checks).
    pub lost: usize,
    /// Anything unusual seen during the trial.
    pub notes: Vec<String>,
}

/// Which system a configuration measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// The operator with `failoverDelaySeconds`.
    Operator,
    /// Three Sentinels with `down-after-milliseconds`.
    Sentinel,
}

/// One configuration's trials.
#[derive(Clone, Debug)]
pub struct ConfigResult {
    /// Operator or Sentinel.
    pub system: System,
    /// The detection delay setting (`failoverDelaySeconds` or `down-after-milliseconds`).
    pub delay: Duration,
    /// Human-readable setting, e.g. `failoverDelaySeconds: 10`.
    pub setting: String,
    /// Completed trials.
    pub trials: Vec<Trial>,
    /// Completed stall trials.
    pub stalls: Vec<Stall>,
    /// The writer's counters over the whole configuration.
    pub writer: WriterStats,
    /// Confirmed writes over the whole configuration.
    pub confirmed: usize,
    /// Confirmed writes missing on the final primary (the final check); `None` when it could not run.
    pub lost_final: Option<usize>,
    /// Observations over the whole configuration.
    pub notes: Vec<String>,
    /// Why the configuration stopped early, if it did.
    pub error: Option<String>,
}

impl ConfigResult {
    /// An empty result for `system` at `delay`.
    pub fn new(system: System, delay: Duration, setting: String) -> ConfigResult {
        ConfigResult {
            system,
            delay,
            setting,
            trials: Vec::new(),
            stalls: Vec::new(),
            writer: WriterStats::default(),
            confirmed: 0,
            lost_final: None,
            notes: Vec::new(),
            error: None,
        }
    }

    /// Failover times of the completed trials.
    pub fn failovers(&self) -> Vec<Duration> {
        self.trials.iter().map(|t| t.failover).collect()
    }

    /// Ends the configuration's writer: the final lost-write check on `primary` (when one is known; a failed
    /// check is a note), then the writer's totals.
    pub async fn finish_writer(&mut self, writer: Writer, primary: Option<(&str, u16)>) {
        if let Some((host, port)) = primary {
            match check_lost(&writer, host, port, &mut BTreeSet::new()).await {
                Ok(lost) => self.lost_final = Some(lost),
                Err(e) => self
                    .notes
                    .push(format!("final lost-write check failed: {e}")),
            }
        }
        self.confirmed = writer.count();
        self.writer = writer.finish().await;
    }

    /// Lost confirmed writes: the per-trial checks, and the final check.
    pub fn lost(&self) -> usize {
        let per_trial: usize = self.trials.iter().map(|t| t.lost).sum();
        per_trial.max(self.lost_final.unwrap_or(0))
    }
}

/// Waits for the first write confirmed by a server other than `old` at or after `killed`, calling `pump`
/// (watch and event consumers) all along. Returns that write.
pub async fn wait_failover(
    writer: &Writer,
    from: usize,
    old: &str,
    killed: Instant,
    timeout: Duration,
    mut pump: impl FnMut(),
) -> Result<Confirmed, String> {
    let mut index = from;
    loop {
        pump();
        let fresh = writer.since(index);
        index += fresh.len();
        if let Some(first) = fresh
            .into_iter()
            .find(|c| c.target != old && c.at >= killed)
        {
            return Ok(first);
        }
        if killed.elapsed() > timeout {
            return Err(format!(
                "no write confirmed by a server other than {old} within {timeout:?} of the kill"
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Checks every write confirmed so far against `host:port`; returns the keys missing that were not in
/// `known` (and adds them to it).
pub async fn check_lost(
    writer: &Writer,
    host: &str,
    port: u16,
    known: &mut BTreeSet<u64>,
) -> Result<usize, String> {
    let keys = writer.keys();
    let missing = missing_keys(host, port, writer.password().as_deref(), &keys).await?;
    let fresh = missing.iter().filter(|k| !known.contains(k)).count();
    if fresh > 0 {
        eprintln!(
            "[bench] failover: {fresh} confirmed writes missing on {host}:{port}: {:?}",
            missing.iter().take(20).collect::<Vec<_>>()
        );
    }
    known.extend(missing);
    Ok(fresh)
}

/// Sends SIGKILL to `pid`.
pub fn kill9(pid: u32) -> Result<(), String> {
    signal(pid, "9")
}

/// How the killed primary's pod comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Rejoin {
    /// Delete the pod once the failover is measured: the StatefulSet re-creates it at once, skipping the
    /// node agent's crash-loop back-off (which doubles with every kill of the same pod), so every trial starts
    /// from the same first back-off.
    Delete,
    /// Wait for the node agent to restart the killed server (after its crash-loop back-off).
    Restart,
}

/// The operator's side of the benchmark.
pub struct OperatorSetup<'a> {
    /// Admin client.
    pub client: &'a Client,
    /// How to start the operator.
    pub launch: &'a Launch,
    /// Namespaces are `<prefix>-d<delay>-<stamp>`.
    pub namespace_prefix: &'a str,
    /// Trial counts and timeouts.
    pub settings: &'a TrialSettings,
    /// How the killed pod rejoins.
    pub rejoin: Rejoin,
}

/// Watches of the instance and its pods, stamping the steps of a failover and every role label change.
struct Observer {
    instances: Watch<RedisInstance>,
    pods: Watch<Pod>,
    /// Role labels as last seen, and every change.
    labels: RoleLabels,
    /// The trial being observed: the killed primary, its container id, and the steps seen since the kill.
    old: String,
    old_uid: Option<String>,
    old_container: Option<String>,
    steps: Vec<(String, Instant)>,
}

impl Observer {
    async fn start(client: &Client, ns: &str) -> Observer {
        Observer {
            instances: Watch::start(Api::namespaced(client.clone(), ns)).await,
            pods: Watch::start(Api::namespaced(client.clone(), ns)).await,
            labels: RoleLabels::default(),
            old: String::new(),
            old_uid: None,
            old_container: None,
            steps: Vec::new(),
        }
    }

    fn step(&mut self, name: &str, at: Instant) {
        if !self.old.is_empty() && !self.steps.iter().any(|(n, _)| n == name) {
            self.steps.push((name.to_string(), at));
        }
    }

    /// Consumes every event received so far.
    fn pump(&mut self) {
        while let Ok((at, ri)) = self.instances.events.try_recv() {
            let Some(status) = ri.status.as_ref() else {
                continue;
            };
            let old = self.old.clone();
            if status.current_primary.as_deref() == Some(&old)
                && status.primary_failing_since.is_some()
            {
                self.step("primary failing recorded", at);
            }
            if status.target_primary.as_deref() == Some("Pending") {
                self.step("failover started (targetPrimary: Pending)", at);
            }
            if let Some(target) = status.target_primary.as_deref() {
                if target != "Pending" && target != old {
                    self.step("target recorded", at);
                }
            }
            if status.current_primary.as_deref().is_some_and(|p| p != old) {
                self.step("new primary confirmed (currentPrimary)", at);
            }
        }
        while let Ok((at, pod)) = self.pods.events.try_recv() {
            let name = pod.name_any();
            let (before, role) = self.labels.see(at, &pod);
            if name != self.old && role == "primary" {
                self.step("primary label on the new pod", at);
            }
            if before != role {
                if name == self.old && before == "primary" {
                    self.step("primary label removed from the killed pod", at);
                }
                if name != self.old && before == "replica" && role.is_empty() {
                    self.step("a surviving replica lost its replica label", at);
                }
            }
            if name == self.old && container_id(&pod).is_some() {
                if pod.metadata.uid != self.old_uid {
                    self.step("killed pod re-created and running", at);
                } else if container_id(&pod) != self.old_container {
                    self.step(
                        "killed server restarted in its pod (kubelet or node agent)",
                        at,
                    );
                }
            }
        }
    }

    /// Starts observing a trial: forgets earlier steps.
    fn begin(&mut self, old: &Pod) {
        self.pump();
        self.old = old.name_any();
        self.old_uid = old.metadata.uid.clone();
        self.old_container = container_id(old);
        self.steps.clear();
    }
}

/// Waits until the topology converged ([`wait_topology`]) and the writer confirmed [`WRITES_TO_CONVERGE`]
/// writes on its primary; returns the primary's name.
async fn wait_converged(
    instances: &Api<RedisInstance>,
    pods: &Api<Pod>,
    writer: &Writer,
    observer: &mut Observer,
    replicas: usize,
    timeout: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let primary = wait_topology(instances, pods, replicas, timeout, || observer.pump()).await?;
    let left = deadline.saturating_duration_since(Instant::now());
    writer
        .wait_confirmed_on(&primary, writer.count(), WRITES_TO_CONVERGE, left)
        .await?;
    Ok(primary)
}

fn stamp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() % 100_000)
        .unwrap_or_default()
}

/// Runs the trials against the operator with `failoverDelaySeconds: delay`.
pub async fn measure_operator(setup: &OperatorSetup<'_>, delay: u32) -> ConfigResult {
    let mut result = ConfigResult::new(
        System::Operator,
        Duration::from_secs(delay.into()),
        format!("failoverDelaySeconds: {delay}"),
    );
    if let Err(e) = run_operator(setup, delay, &mut result).await {
        eprintln!("[bench] failover (operator, delay {delay} s): {e}");
        result.error = Some(e);
    }
    result
}

async fn run_operator(
    setup: &OperatorSetup<'_>,
    delay: u32,
    result: &mut ConfigResult,
) -> Result<(), String> {
    let settings = setup.settings;
    let ns = format!("{}-d{delay}-{}", setup.namespace_prefix, stamp());
    create_namespace(setup.client, &ns).await?;
    let operator = Operator::start(setup.launch, &ns).await?;
    eprintln!(
        "[bench] failover: operator pid {} in {ns}, failoverDelaySeconds {delay}, {} trials",
        operator.pid(),
        settings.trials
    );
    let instances: Api<RedisInstance> = Api::namespaced(setup.client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(setup.client.clone(), &ns);
    let mut observer = Observer::start(setup.client, &ns).await;
    let mut spec = RedisInstanceSpec {
        replicas: 3,
        ..Default::default()
    };
    spec.replication.failover_delay_seconds = i32::try_from(delay).map_err(|e| e.to_string())?;
    instances
        .create(&PostParams::default(), &RedisInstance::new(INSTANCE, spec))
        .await
        .map_err(|e| format!("create {INSTANCE}: {e}"))?;

    let resolve_pods = pods.clone();
    let resolve: Resolve = Arc::new(move |_failed| {
        let pods = resolve_pods.clone();
        Box::pin(async move { primary_target(&pods).await })
    });
    let writer = Writer::start(resolve, settings.write_interval);
    let outcome = trials(setup, &instances, &pods, &writer, &mut observer, result).await;

    // The final check runs whatever happened, on whatever pod carries the label now.
    let primary = primary_target(&pods).await;
    result
        .finish_writer(writer, primary.as_ref().map(|p| (p.host.as_str(), p.port)))
        .await;
    observer.pump();
    if observer.labels.double_primary > 0 {
        result.notes.push(format!(
            "two pods carried the primary label at once {} times (pod watch)",
            observer.labels.double_primary
        ));
    }
    let stopped = operator.stop().await;
    if !stopped {
        result
            .notes
            .push("the operator did not exit within 10 s of SIGTERM".into());
    }
    outcome
}

async fn trials(
    setup: &OperatorSetup<'_>,
    instances: &Api<RedisInstance>,
    pods: &Api<Pod>,
    writer: &Writer,
    observer: &mut Observer,
    result: &mut ConfigResult,
) -> Result<(), String> {
    let settings = setup.settings;
    let mut known_missing = BTreeSet::new();
    let mut primary = wait_converged(
        instances,
        pods,
        writer,
        observer,
        3,
        settings.converge_timeout,
    )
    .await?;
    for i in 0..settings.trials {
        let pod = pods
            .get(&primary)
            .await
            .map_err(|e| format!("get {primary}: {e}"))?;
        let pid = process_id(&pod)?;
        let from = writer.count();
        let last_before = writer.last().map(|c| c.at);
        observer.begin(&pod);
        let changes_before = observer.labels.changes.len();
        let killed = Instant::now();
        kill9(pid)?;
        let first = wait_failover(
            writer,
            from,
            &primary,
            killed,
            settings.failover_timeout,
            || observer.pump(),
        )
        .await?;
        let mut trial = Trial {
            failover: first.at.duration_since(killed),
            from: primary.clone(),
            to: first.target.clone(),
            gap: last_before.map_or(Duration::ZERO, |t| first.at.duration_since(t)),
            ..Default::default()
        };
        eprintln!(
            "[bench] failover trial {}/{}: {} → {} in {:.2} s",
            i + 1,
            settings.trials,
            trial.from,
            trial.to,
            trial.failover.as_secs_f64()
        );
        if setup.rejoin == Rejoin::Delete {
            // The node agent restarts a killed server after a back-off that doubles with every kill of the same
            // pod; a re-created pod starts at once, with a fresh back-off. The failover is over, so this only
            // speeds up the rejoin and keeps every trial alike.
            pods.delete(&primary, &DeleteParams::default())
                .await
                .map_err(|e| format!("delete {primary}: {e}"))?;
        }
        let next = wait_converged(
            instances,
            pods,
            writer,
            observer,
            3,
            settings.converge_timeout,
        )
        .await?;
        trial.rejoin = killed.elapsed();
        trial.milestones = observer
            .steps
            .iter()
            .map(|(n, at)| (n.clone(), at.saturating_duration_since(killed)))
            .collect();
        let gains: Vec<String> = observer
            .labels
            .primary_gains(changes_before)
            .iter()
            .map(|(at, pod)| {
                format!(
                    "{pod} at {:.2} s",
                    at.saturating_duration_since(killed).as_secs_f64()
                )
            })
            .collect();
        if gains.len() != 1 {
            trial.notes.push(format!(
                "primary label gained {} times: {}",
                gains.len(),
                gains.join(", ")
            ));
        }
        if next != trial.to {
            trial.notes.push(format!(
                "first confirmed write on {} but converged on {next}",
                trial.to
            ));
        }
        let target = primary_target(pods)
            .await
            .ok_or("no pod carries the primary label after converging")?;
        trial.lost = check_lost(writer, &target.host, target.port, &mut known_missing).await?;
        result.trials.push(trial);
        primary = next;
    }
    for i in 0..settings.stalls {
        let stall = stall_trial(
            setup,
            instances,
            pods,
            writer,
            observer,
            &primary,
            result.delay,
        )
        .await?;
        eprintln!(
            "[bench] stall trial {}/{}: {primary} stopped {:.2} s, {}, write gap {:.2} s",
            i + 1,
            settings.stalls,
            stall.stopped.as_secs_f64(),
            if stall.failed_over {
                "FAILED OVER"
            } else {
                "kept its role"
            },
            stall.gap.as_secs_f64()
        );
        let failed_over = stall.failed_over;
        result.stalls.push(stall);
        if failed_over {
            primary = wait_converged(
                instances,
                pods,
                writer,
                observer,
                3,
                settings.converge_timeout,
            )
            .await?;
        }
    }
    Ok(())
}

/// Sends `signal` (`9`, `STOP`, `CONT`) to `pid`.
fn signal(pid: u32, signal: &str) -> Result<(), String> {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .map_err(|e| format!("kill: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("kill -{signal} {pid} failed ({status})"))
}

/// Stops the primary's server for [`STALL_SHARE`] of `delay` with [`STALL_BUSY_LOOPS`] busy loops on the host,
/// continues it, and watches until the delay and 5 s more have passed since the stop: a failover then is a false
/// one (the server came back before the delay ran out).
async fn stall_trial(
    setup: &OperatorSetup<'_>,
    instances: &Api<RedisInstance>,
    pods: &Api<Pod>,
    writer: &Writer,
    observer: &mut Observer,
    primary: &str,
    delay: Duration,
) -> Result<Stall, String> {
    let pod = pods
        .get(primary)
        .await
        .map_err(|e| format!("get {primary}: {e}"))?;
    let pid = process_id(&pod)?;
    let stop_for = delay.mul_f64(STALL_SHARE);
    let mut busy: Vec<std::process::Child> = (0..STALL_BUSY_LOOPS)
        .filter_map(|_| {
            std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .ok()
        })
        .collect();
    let last_before = writer.last().map(|c| c.at);
    let from = writer.count();
    let stopped = Instant::now();
    let outcome = async {
        signal(pid, "STOP")?;
        tokio::time::sleep(stop_for).await;
        signal(pid, "CONT")?;
        Ok::<_, String>(())
    }
    .await;
    if outcome.is_err() {
        let _ = signal(pid, "CONT");
    }
    for child in &mut busy {
        let _ = child.kill();
        let _ = child.wait();
    }
    outcome?;
    let mut failed_over = false;
    while stopped.elapsed() < delay + Duration::from_secs(5) {
        observer.pump();
        if primary_target(pods)
            .await
            .is_some_and(|t| t.name != primary)
        {
            failed_over = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = wait_converged(
        instances,
        pods,
        writer,
        observer,
        3,
        setup.settings.converge_timeout,
    )
    .await?;
    failed_over |= after != primary;
    let first_after = writer.since(from).first().map(|c| c.at);
    Ok(Stall {
        stopped: stop_for,
        failed_over,
        gap: match (last_before, first_after) {
            (Some(before), Some(after)) => after.duration_since(before),
            _ => Duration::ZERO,
        },
    })
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// The markdown report of the failover benchmark.
pub fn markdown(environment: &[(String, String)], results: &[ConfigResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### Environment\n\n| | |\n|---|---|");
    for (key, value) in environment {
        let _ = writeln!(out, "| {key} | {value} |");
    }
    let _ = writeln!(
        out,
        "\n### Failover time: kill -9 of the primary → first write confirmed (`SET` + `WAIT 1 1000`) by another server\n\n\
         | system | detection delay setting | trials | p50 s | p99 s | max s | min s | longest write gap s | rejoin p50 s | confirmed writes | unconfirmed / errors | lost confirmed writes |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in results {
        let f = r.failovers();
        let rejoin: Vec<Duration> = r.trials.iter().map(|t| t.rejoin).collect();
        let system = match r.system {
            System::Operator => "operator",
            System::Sentinel => "Sentinel (3 sentinels)",
        };
        let _ = writeln!(
            out,
            "| {system} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
            r.setting,
            r.trials.len(),
            secs(percentile(&f, 50.0)),
            secs(percentile(&f, 99.0)),
            secs(percentile(&f, 100.0)),
            secs(f.iter().min().copied().unwrap_or_default()),
            secs(r.writer.longest_gap),
            secs(percentile(&rejoin, 50.0)),
            r.confirmed,
            r.writer.unconfirmed,
            r.writer.errors,
            match r.lost_final {
                Some(_) => r.lost().to_string(),
                None => format!("{} (final check did not run)", r.lost()),
            },
        );
    }
    let _ = writeln!(
        out,
        "\np99 is the nearest rank: with 20 trials it is the slowest trial. Lost = confirmed keys missing on the primary at the check after any trial, or at the final check."
    );

    let _ = writeln!(
        out,
        "\n### Targets\n\n| target | measured | |\n|---|---|---|"
    );
    for ours in results.iter().filter(|r| r.system == System::Operator) {
        let anchor = results
            .iter()
            .find(|r| r.system == System::Sentinel && r.delay == ours.delay);
        let p99 = percentile(&ours.failovers(), 99.0).as_secs_f64();
        match anchor {
            Some(s) if !s.trials.is_empty() && !ours.trials.is_empty() => {
                let sp99 = percentile(&s.failovers(), 99.0).as_secs_f64();
                let ratio = p99 / sp99.max(1e-9);
                let _ = writeln!(
                    out,
                    "| operator p99 ≤ Sentinel p99 at the same detection delay ({} s) | {p99:.2} s vs {sp99:.2} s = {ratio:.2}× | {} |",
                    ours.delay.as_secs(),
                    if ratio <= 1.0 { "met" } else { "**missed**" }
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "| operator p99 ≤ Sentinel p99 at the same detection delay ({} s) | no complete Sentinel run at that delay | **not measured** |",
                    ours.delay.as_secs()
                );
            }
        }
    }
    for ours in results.iter().filter(|r| r.system == System::Operator) {
        let p99 = percentile(&ours.failovers(), 99.0);
        let bound = ours.delay + Duration::from_millis(500);
        let complete = !ours.trials.is_empty();
        let _ = writeln!(
            out,
            "| operator p99 ≤ failoverDelaySeconds + 0.5 s ({} s) | {:.2} s over {} trials | {} |",
            ours.delay.as_secs(),
            p99.as_secs_f64(),
            ours.trials.len(),
            match (complete, p99 <= bound) {
                (false, _) => "**not measured**",
                (true, true) => "met",
                (true, false) => "**missed**",
            }
        );
    }
    for r in results {
        let lost = r.lost();
        let _ = writeln!(
            out,
            "| 0 confirmed writes lost in every trial ({}, {}) | {lost} lost over {} trials | {} |",
            match r.system {
                System::Operator => "operator",
                System::Sentinel => "Sentinel",
            },
            r.setting,
            r.trials.len(),
            if lost == 0 && r.lost_final.is_some() {
                "met"
            } else {
                "**missed**"
            }
        );
    }

    if results.iter().any(|r| !r.stalls.is_empty()) {
        let _ = writeln!(
            out,
            "\n### False failovers: the primary's server stopped (`SIGSTOP`) for {:.0} % of the delay with {STALL_BUSY_LOOPS} \
             busy loops on the host, then continued\n\n\
             | system | detection delay setting | stalls | server stopped s | failed over | longest write gap s |\n\
             |---|---|---|---|---|---|",
            STALL_SHARE * 100.0
        );
        for r in results.iter().filter(|r| !r.stalls.is_empty()) {
            let gap = r.stalls.iter().map(|s| s.gap).max().unwrap_or_default();
            let _ = writeln!(
                out,
                "| operator | {} | {} | {} | **{}** | {} |",
                r.setting,
                r.stalls.len(),
                secs(r.stalls[0].stopped),
                r.stalls.iter().filter(|s| s.failed_over).count(),
                secs(gap),
            );
        }
    }

    for r in results {
        let system = match r.system {
            System::Operator => "Operator",
            System::Sentinel => "Sentinel",
        };
        let _ = writeln!(out, "\n### {system}, {}: steps after the kill\n", r.setting);
        let mut names: Vec<String> = Vec::new();
        for t in &r.trials {
            for (n, _) in &t.milestones {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        let _ = writeln!(
            out,
            "| step | trials | p50 s | p99 s | max s |\n|---|---|---|---|---|"
        );
        for n in &names {
            let v: Vec<Duration> = r
                .trials
                .iter()
                .filter_map(|t| t.milestones.iter().find(|(m, _)| m == n).map(|(_, d)| *d))
                .collect();
            let _ = writeln!(
                out,
                "| {n} | {} | {} | {} | {} |",
                v.len(),
                secs(percentile(&v, 50.0)),
                secs(percentile(&v, 99.0)),
                secs(percentile(&v, 100.0))
            );
        }
        let f = r.failovers();
        let _ = writeln!(
            out,
            "| **first write confirmed by another server** | {} | {} | {} | {} |",
            f.len(),
            secs(percentile(&f, 50.0)),
            secs(percentile(&f, 99.0)),
            secs(percentile(&f, 100.0))
        );
        let _ = writeln!(
            out,
            "\n<details><summary>per trial (ms from the kill)</summary>\n\n| # | from → to | failover | write gap | rejoin | lost | notes |\n|---|---|---|---|---|---|---|"
        );
        for (i, t) in r.trials.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} → {} | {} | {} | {} | {} | {} |",
                i + 1,
                t.from,
                t.to,
                ms(t.failover),
                ms(t.gap),
                ms(t.rejoin),
                t.lost,
                t.notes.join("; ")
            );
        }
        let _ = writeln!(out, "\n</details>");
        let mut notes = r.notes.clone();
        if let Some(e) = &r.error {
            notes.insert(0, format!("**stopped early**: {e}"));
        }
        if !notes.is_empty() {
            let _ = writeln!(out);
            for n in notes {
                let _ = writeln!(out, "- {n}");
            }
        }
    }
    out
}
