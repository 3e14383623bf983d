//! One task per pod: prepares it, runs its main container's process and one process per further container
//! ([`crate::pods::sidecar`]), restarts them with back-off, reports an honest status and tears everything down
//! when the pod is deleted.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio::process::Child;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::backoff::{restart_delay, BACKOFF_RESET_AFTER};
use crate::config::PodMode;
use crate::error::{Error, Result};
use crate::pods::env::{argv, base_env, container_env};
use crate::pods::process::{self, Launch, Mount};
use crate::pods::refresh::VolumeRefresh;
use crate::pods::sidecar::Sidecar;
use crate::pods::status::{pod_status, ConditionClock, Exit, MainState, Observed, SidecarState};
use crate::pods::volumes;
use crate::pods::Context;
use crate::resp;

/// The latest version of the pod; `None` once it was deleted outright.
pub type PodUpdates = watch::Receiver<Option<Pod>>;

/// How often readiness is checked, unless the agent only PINGs (`--readiness ping`).
const PING_PERIOD: Duration = Duration::from_secs(1);
const RETRY_PREPARE_AFTER: Duration = Duration::from_secs(2);
/// How often a failed pod status write is retried.
const PUBLISH_RETRY: Duration = Duration::from_secs(2);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
const LOG_TAIL_LINES: usize = 20;

/// Why the supervisor stops waiting.
enum Interrupt {
    /// The pod got a deletion timestamp: stop within its grace period, then confirm the deletion.
    Deleting(Duration),
    /// The pod object is gone: stop and clean up.
    Removed,
    /// The agent shuts down: stop the process, leave the pod as it is.
    Shutdown,
}

/// Runs the pod until it is deleted or the agent shuts down.
pub async fn supervise(ctx: Arc<Context>, updates: PodUpdates, shutdown: watch::Receiver<bool>) {
    let Some(pod) = updates.borrow().clone() else {
        return;
    };
    let mut supervisor = match Supervisor::new(ctx, pod, updates, shutdown) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot supervise pod");
            return;
        }
    };
    let interrupt = supervisor.run().await;
    for sidecar in std::mem::take(&mut supervisor.sidecars) {
        sidecar.stop().await;
    }
    supervisor.finish(interrupt).await;
}

struct Supervisor {
    ctx: Arc<Context>,
    pod: Pod,
    uid: String,
    api: Api<Pod>,
    updates: PodUpdates,
    shutdown: watch::Receiver<bool>,
    observed: Observed,
    clock: ConditionClock,
    last_written: Option<serde_json::Value>,
    /// The last status write failed: it is retried until it succeeds.
    publish_failed: bool,
    pod_dir: PathBuf,
    consecutive_exits: u32,
    /// The containers after the first, once started.
    sidecars: Vec<Sidecar>,
    volume_refresh: VolumeRefresh,
}

impl Supervisor {
    fn new(
        ctx: Arc<Context>,
        pod: Pod,
        updates: PodUpdates,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self> {
        let uid = pod.uid().unwrap_or_default();
        let namespace = pod.namespace().unwrap_or_default();
        let pod_ip = ctx.pod_ip(&uid, previous_ip(&pod))?;
        let status = pod.status.clone().unwrap_or_default();
        let main_status = status.container_statuses.as_ref().and_then(|s| s.first());
        let observed = Observed {
            pod_ip,
            start_time: status
                .start_time
                .as_ref()
                .map_or_else(Timestamp::now, |t| t.0),
            main: MainState::Creating {
                message: String::new(),
            },
            last_exit: None,
            restart_count: main_status.map_or(0, |s| s.restart_count),
            ready: false,
            sidecars: Default::default(),
        };
        Ok(Self {
            api: Api::namespaced(ctx.client.clone(), &namespace),
            pod_dir: ctx.config.state_dir.join("pods").join(&uid),
            clock: ConditionClock::from_pod(&pod),
            ctx,
            pod,
            uid,
            updates,
            shutdown,
            observed,
            last_written: None,
            publish_failed: false,
            consecutive_exits: 0,
            sidecars: Vec::new(),
            volume_refresh: VolumeRefresh::default(),
        })
    }

    fn describe(&self) -> String {
        format!(
            "{}/{}",
            self.pod.namespace().unwrap_or_default(),
            self.pod.name_any()
        )
    }

    async fn run(&mut self) -> Interrupt {
        if let Some(interrupt) = self.pending_interrupt() {
            return interrupt;
        }
        let phase = self.pod.status.as_ref().and_then(|s| s.phase.clone());
        if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
            // A finished pod stays finished; wait for its deletion.
            return self.wait(None).await.unwrap_or(Interrupt::Shutdown);
        }
        if self.ctx.config.pod_mode == PodMode::Simulated {
            self.observed.main = MainState::Running {
                started_at: Timestamp::now(),
                container_id: format!("simulated://{}", self.uid),
            };
            self.observed.ready = true;
            let containers = self
                .pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter().skip(1));
            for container in containers {
                let running = SidecarState {
                    running: Some((Timestamp::now(), format!("simulated://{}", self.uid))),
                    ready: true,
                    ..SidecarState::default()
                };
                self.observed
                    .sidecars
                    .insert(container.name.clone(), running);
            }
            self.publish().await;
            return self.wait(None).await.unwrap_or(Interrupt::Shutdown);
        }
        loop {
            let prepared = match self.prepare().await {
                Ok(launch) => self.start_sidecars().await.map(|()| launch),
                Err(e) => Err(e),
            };
            let launch = match prepared {
                Ok(launch) => launch,
                Err(e) => {
                    self.observed.main = MainState::Creating {
                        message: e.to_string(),
                    };
                    self.publish().await;
                    if let Some(interrupt) = self.wait(Some(RETRY_PREPARE_AFTER)).await {
                        return interrupt;
                    }
                    continue;
                }
            };
            let started_at = Timestamp::now();
            let started = Instant::now();
            let log_start = process::log_offset(&launch.log_path);
            let outcome = match process::spawn(&launch) {
                Ok(child) => {
                    self.watch_process(child, started_at, &launch, log_start)
                        .await
                }
                Err(e) => Err(self.exit(
                    started_at,
                    128,
                    None,
                    "StartError",
                    e.to_string(),
                    "none".into(),
                )),
            };
            let exit = match outcome {
                Ok(interrupt) => return interrupt,
                Err(exit) => exit,
            };
            info!(pod = %self.describe(), code = exit.exit_code, "container exited");
            if started.elapsed() >= BACKOFF_RESET_AFTER {
                self.consecutive_exits = 0;
            }
            self.consecutive_exits += 1;
            self.observed.ready = false;
            if !self.restarts_after(&exit) {
                self.observed.main = MainState::Terminated(exit);
                self.publish().await;
                return self.wait(None).await.unwrap_or(Interrupt::Shutdown);
            }
            let delay = restart_delay(self.ctx.config.restart_backoff, self.consecutive_exits);
            let name = self
                .main_container()
                .map(|c| c.name.clone())
                .unwrap_or_default();
            self.observed.main = MainState::CrashLoopBackOff {
                message: format!(
                    "back-off {}s restarting failed container={name} pod={}",
                    delay.as_secs(),
                    self.pod.name_any()
                ),
            };
            self.observed.last_exit = Some(exit);
            self.observed.restart_count += 1;
            self.publish().await;
            if let Some(interrupt) = self.wait(Some(delay)).await {
                return interrupt;
            }
        }
    }

    /// Runs until the process exits (`Err` with how) or something interrupts (`Ok`, process already stopped).
    async fn watch_process(
        &mut self,
        mut child: Child,
        started_at: Timestamp,
        launch: &Launch,
        log_start: u64,
    ) -> std::result::Result<Interrupt, Exit> {
        let container_id = format!("process://{}", child.id().unwrap_or_default());
        info!(pod = %self.describe(), %container_id, ip = %self.observed.pod_ip, "started container");
        self.observed.main = MainState::Running {
            started_at,
            container_id: container_id.clone(),
        };
        self.observed.ready = false;
        self.publish().await;
        let address = SocketAddr::from((self.observed.pod_ip, self.main_port()));
        let mut readiness = tokio::time::interval(self.readiness_period());
        readiness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The volumes were just written; the first refresh is one period away.
        let period = self.ctx.config.volume_refresh;
        let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                status = child.wait() => {
                    let (code, signal) = match status {
                        Ok(status) => exit_code(status),
                        Err(_) => (255, None),
                    };
                    // Like the kubelet's FallbackToLogsOnError: the output tail explains failures only.
                    let (reason, message) = if code == 0 {
                        ("Completed", String::new())
                    } else {
                        ("Error", process::tail(&launch.log_path, log_start, LOG_TAIL_LINES))
                    };
                    return Err(self.exit(started_at, code, signal, reason, message, container_id));
                }
                _ = readiness.tick() => {
                    let ready = match self.exec_readiness() {
                        Some((command, timeout)) => {
                            process::probe(&command, &launch.env, timeout, child.id()).await
                        }
                        None => resp::ping(address, Duration::from_millis(800)).await.is_some_and(|r| r.is_ready()),
                    };
                    self.observed.ready = ready;
                    for sidecar in &self.sidecars {
                        sidecar.probe(self.observed.pod_ip).await;
                    }
                    // Unchanged status is not written again; a write that failed (API server down) is retried.
                    self.publish().await;
                }
                _ = refresh.tick() => {
                    let ip = self.observed.pod_ip;
                    self.volume_refresh.run(&self.ctx.client, &self.pod, &self.pod_dir, ip).await;
                }
                interrupt = self.next_interrupt() => {
                    let grace = match &interrupt {
                        Interrupt::Deleting(grace) => *grace,
                        Interrupt::Removed => DEFAULT_GRACE.min(self.spec_grace()),
                        Interrupt::Shutdown => SHUTDOWN_GRACE,
                    };
                    info!(pod = %self.describe(), "stopping container");
                    process::stop(&mut child, grace).await;
                    return Ok(interrupt);
                }
            }
        }
    }

    fn exit(
        &self,
        started_at: Timestamp,
        code: i32,
        signal: Option<i32>,
        reason: &str,
        message: String,
        id: String,
    ) -> Exit {
        Exit {
            exit_code: code,
            signal,
            reason: reason.to_string(),
            message,
            started_at,
            finished_at: Timestamp::now(),
            container_id: id,
        }
    }

    fn restarts_after(&self, exit: &Exit) -> bool {
        let policy = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref());
        match policy {
            Some("Never") => false,
            Some("OnFailure") => exit.exit_code != 0,
            _ => true,
        }
    }

    /// Volumes, mounts, env and argv of the main container.
    async fn prepare(&mut self) -> Result<Launch> {
        let container = self
            .main_container()
            .cloned()
            .ok_or_else(|| Error::NotReadyToStart("pod has no containers".into()))?;
        self.prepare_container(&container, "pid").await
    }

    /// Starts a process for every container after the first, once per pod (they keep running across restarts
    /// of the main container, as the kubelet's containers do).
    async fn start_sidecars(&mut self) -> Result<()> {
        if !self.sidecars.is_empty() {
            return Ok(());
        }
        let containers: Vec<Container> = self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().skip(1).cloned())
            .collect();
        let previous = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        let mut launches = Vec::new();
        for container in &containers {
            let launch = self
                .prepare_container(container, &format!("pid-{}", container.name))
                .await?;
            launches.push(launch);
        }
        for (container, launch) in containers.into_iter().zip(launches) {
            let port = container
                .ports
                .as_ref()
                .and_then(|p| p.first())
                .and_then(|p| u16::try_from(p.container_port).ok());
            let restarts = previous
                .iter()
                .find(|s| s.name == container.name)
                .map_or(0, |s| s.restart_count);
            self.sidecars.push(Sidecar::start(
                container.name,
                launch,
                port,
                self.ctx.config.restart_backoff,
                restarts,
            ));
        }
        Ok(())
    }

    /// Volumes, mounts, env and argv of one container; its pid goes to `pid_file` in the pod directory.
    async fn prepare_container(&mut self, container: &Container, pid_file: &str) -> Result<Launch> {
        std::fs::create_dir_all(&self.pod_dir)
            .map_err(|e| Error::io("creating the pod directory", e))?;
        let ip = self.observed.pod_ip;
        let dirs = volumes::materialise(&self.ctx.client, &self.pod, &self.pod_dir, ip).await?;
        let mut mounts = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let Some(dir) = dirs.get(&mount.name) else {
                return Err(Error::NotReadyToStart(format!(
                    "volume {:?} is not defined",
                    mount.name
                )));
            };
            let sub_path = mount.sub_path.as_deref().filter(|p| !p.is_empty());
            mounts.push(Mount {
                source: sub_path.map_or_else(|| dir.clone(), |p| dir.join(p)),
                target: PathBuf::from(&mount.mount_path),
                read_only: mount.read_only.unwrap_or(false),
            });
        }
        let base = base_env(&self.pod, &self.ctx.api_host, self.ctx.api_port);
        let env = container_env(&self.ctx.client, &self.pod, container, ip, base).await?;
        let vars: HashMap<String, String> = env.iter().cloned().collect();
        Ok(Launch {
            argv: argv(container, &vars),
            env,
            mounts,
            working_dir: container
                .working_dir
                .as_deref()
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            log_path: self.pod_dir.join(format!("{}.log", container.name)),
            pid_path: self.pod_dir.join(pid_file),
        })
    }

    fn main_container(&self) -> Option<&Container> {
        self.pod.spec.as_ref().and_then(|s| s.containers.first())
    }

    /// The container's `exec` readiness probe, if it has one and the agent runs them: the command and its
    /// timeout (the kubelet's default of 1 s when unset). Without one, readiness is a `PING`.
    fn exec_readiness(&self) -> Option<(Vec<String>, Duration)> {
        if !self.ctx.config.exec_probes {
            return None;
        }
        let probe = self.main_container()?.readiness_probe.as_ref()?;
        let command = probe.exec.as_ref()?.command.clone()?;
        let timeout = probe.timeout_seconds.unwrap_or(1).max(1).unsigned_abs();
        Some((command, Duration::from_secs(u64::from(timeout))))
    }

    /// How often readiness is checked: every [`PING_PERIOD`], which the tests' timing relies on (a faster pace than
    /// the kubelet's); with `--readiness ping`, at the readiness probe's `periodSeconds` (10 s when unset), as the
    /// kubelet does.
    fn readiness_period(&self) -> Duration {
        let probe = self
            .main_container()
            .and_then(|c| c.readiness_probe.as_ref());
        match probe {
            Some(probe) if !self.ctx.config.exec_probes => Duration::from_secs(u64::from(
                probe.period_seconds.unwrap_or(10).max(1).unsigned_abs(),
            )),
            _ => PING_PERIOD,
        }
    }

    /// The port the readiness `PING` goes to: the first declared container port, else Redis' default.
    fn main_port(&self) -> u16 {
        self.main_container()
            .and_then(|c| c.ports.as_ref()?.first())
            .and_then(|p| u16::try_from(p.container_port).ok())
            .unwrap_or(6379)
    }

    fn spec_grace(&self) -> Duration {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .map_or(DEFAULT_GRACE, |s| {
                Duration::from_secs(s.max(0).unsigned_abs())
            })
    }

    /// Writes the status when it differs from the last one written.
    async fn publish(&mut self) {
        for sidecar in &self.sidecars {
            self.observed
                .sidecars
                .insert(sidecar.name.clone(), sidecar.state());
        }
        let status = pod_status(&self.pod, &self.observed, &mut self.clock, Timestamp::now());
        let body = json!({ "status": status });
        if self.last_written.as_ref() == Some(&body) {
            return;
        }
        match self
            .api
            .patch_status(
                &self.pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .await
        {
            Ok(_) => {
                self.last_written = Some(body);
                self.publish_failed = false;
            }
            Err(e) => {
                warn!(pod = %self.describe(), error = %e, "status update failed; retrying");
                self.publish_failed = true;
            }
        }
    }

    /// An interrupt already visible in the latest pod version, if any.
    fn pending_interrupt(&mut self) -> Option<Interrupt> {
        if *self.shutdown.borrow() {
            return Some(Interrupt::Shutdown);
        }
        let latest = self.updates.borrow_and_update().clone();
        match latest {
            None => Some(Interrupt::Removed),
            Some(pod) => {
                let deleting = pod.metadata.deletion_timestamp.is_some();
                let grace = pod.metadata.deletion_grace_period_seconds;
                self.pod = pod;
                deleting.then(|| {
                    Interrupt::Deleting(grace.map_or(self.spec_grace(), |s| {
                        Duration::from_secs(s.max(0).unsigned_abs())
                    }))
                })
            }
        }
    }

    /// Waits for the next interrupt; ordinary pod updates are absorbed.
    async fn next_interrupt(&mut self) -> Interrupt {
        loop {
            tokio::select! {
                changed = self.updates.changed() => if changed.is_err() {
                    return Interrupt::Removed;
                },
                _ = self.shutdown.changed() => {}
            }
            if let Some(interrupt) = self.pending_interrupt() {
                return interrupt;
            }
        }
    }

    /// Waits `timeout` (forever when `None`) unless interrupted first. Meanwhile a status write that failed is
    /// retried every [`PUBLISH_RETRY`], so an API server outage never leaves a stale status behind.
    async fn wait(&mut self, timeout: Option<Duration>) -> Option<Interrupt> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let round = match (self.publish_failed, deadline) {
                (true, Some(deadline)) => Some(
                    deadline
                        .saturating_duration_since(tokio::time::Instant::now())
                        .min(PUBLISH_RETRY),
                ),
                (true, None) => Some(PUBLISH_RETRY),
                (false, Some(deadline)) => {
                    Some(deadline.saturating_duration_since(tokio::time::Instant::now()))
                }
                (false, None) => None,
            };
            let interrupt = match round {
                Some(round) => tokio::time::timeout(round, self.next_interrupt())
                    .await
                    .ok(),
                None => Some(self.next_interrupt().await),
            };
            if interrupt.is_some() {
                return interrupt;
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return None;
            }
            self.publish().await;
        }
    }

    /// Cleans up after the pod; a deleting pod's deletion is confirmed with a zero grace period.
    async fn finish(self, interrupt: Interrupt) {
        if matches!(interrupt, Interrupt::Shutdown) {
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.pod_dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(pod = %self.describe(), error = %e, "cannot remove the pod directory");
            }
        }
        self.ctx.release_ip(&self.uid);
        if matches!(interrupt, Interrupt::Deleting(_)) {
            let params = DeleteParams::default()
                .grace_period(0)
                .preconditions(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                });
            match self.api.delete(&self.pod.name_any(), &params).await {
                Ok(_) => info!(pod = %self.describe(), "pod deleted"),
                Err(e) if crate::error::is_status(&e, 404) || crate::error::is_status(&e, 409) => {}
                Err(e) => {
                    warn!(pod = %self.describe(), error = %e, "confirming the deletion failed")
                }
            }
        }
    }
}

fn previous_ip(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_ref()?.parse().ok()
}

fn exit_code(status: std::process::ExitStatus) -> (i32, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (code, None),
        (None, Some(signal)) => (128 + signal, Some(signal)),
        (None, None) => (255, None),
    }
}
