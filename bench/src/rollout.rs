//! Rolling image update of the operator (real `redis-server` pods, process pod mode): per trial one
//! `RedisInstance` of 3 replicas in a fresh namespace, its primary moved to the middle ordinal when it is not
//! there, a writer confirming every write with `WAIT 1 1000` through the pod that carries the primary label,
//! then `spec.image` changes and the benchmark waits until the instance is `Running` again with every pod at
//! the new revision. Per trial: the longest gap between confirmed writes, writes confirmed, confirmed writes
//! missing on the final primary, primary changes and the rollout time. Two configurations take turns trial by
//! trial: the operator's own primary-last rollout and the plain StatefulSet rolling update
//! (`REDIS_OPERATOR_ROLLOUT=statefulset`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use redis_fsm::Phase;
use redis_operator::api::{RedisInstance, RedisInstanceSpec};

use crate::converge::create_namespace;
use crate::failover::{check_lost, kill9, WRITES_TO_CONVERGE};
use crate::instance::{
    container_id, converged_primary, poll, primary_target, process_id, RoleLabels, INSTANCE,
};
use crate::operator::{Launch, Operator};
use crate::report::percentile;
use crate::watch::Watch;
use crate::writer::{Resolve, Writer};
use redis_operator::names::INSTANCE_LABEL;

/// Pods of the benchmarked instance.
const REPLICAS: usize = 3;
/// The ordinal the primary is moved to before the update: a middle one, so a plain rolling update (highest
/// ordinal first) replaces it between the two replicas.
const MIDDLE_ORDINAL: u32 = 1;
/// The label the StatefulSet controller puts on each pod naming its revision.
const REVISION_LABEL: &str = "controller-revision-hash";
/// The environment switch of the operator that leaves the rollout to the StatefulSet controller.
const ROLLOUT_ENV: &str = "REDIS_OPERATOR_ROLLOUT";
/// Longest wait for a trial's namespace to be gone.
const NAMESPACE_GONE_TIMEOUT: Duration = Duration::from_secs(120);

/// How the operator rolls pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Rollout {
    /// The operator's default: replicas first, a switchover, the old primary last.
    PrimaryLast,
    /// `REDIS_OPERATOR_ROLLOUT=statefulset`: the StatefulSet controller's `RollingUpdate`, highest ordinal first.
    Statefulset,
}

impl Rollout {
    /// The configuration's name in the report.
    pub fn label(self) -> &'static str {
        match self {
            Rollout::PrimaryLast => "primary-last (operator default)",
            Rollout::Statefulset => {
                "StatefulSet RollingUpdate (`REDIS_OPERATOR_ROLLOUT=statefulset`)"
            }
        }
    }

    /// Short name used in namespaces.
    fn slug(self) -> &'static str {
        match self {
            Rollout::PrimaryLast => "pl",
            Rollout::Statefulset => "sts",
        }
    }

    /// The operator's extra environment.
    fn env(self) -> Vec<(String, String)> {
        match self {
            Rollout::PrimaryLast => Vec::new(),
            Rollout::Statefulset => vec![(ROLLOUT_ENV.into(), "statefulset".into())],
        }
    }
}

/// What every trial needs.
pub struct Settings {
    /// Admin client.
    pub client: Client,
    /// How to start the operator (its `env` is replaced per configuration).
    pub launch: Launch,
    /// Namespaces are `<prefix>-<configuration>-<trial>-<stamp>`.
    pub namespace_prefix: String,
    /// The image the instance is created with.
    pub image_from: String,
    /// The image it is updated to.
    pub image_to: String,
    /// Failovers tried to move the primary to [`MIDDLE_ORDINAL`] before a trial takes it where it is.
    pub placement_attempts: usize,
    /// Pause of the writer after each confirmed write.
    pub write_interval: Duration,
    /// Longest wait for the instance to settle (created, after a placement failover).
    pub settle_timeout: Duration,
    /// Longest wait from the image change to the instance settled at the new image.
    pub rollout_timeout: Duration,
}

/// One rolling update and what the writer saw.
#[derive(Clone, Debug, Default)]
pub struct Trial {
    /// The primary when the image changed.
    pub primary_before: String,
    /// The primary once the instance settled at the new image.
    pub primary_after: String,
    /// Longest time between two consecutive confirmed writes (the writer runs from before the change until it
    /// confirmed writes on the settled primary).
    pub longest_gap: Duration,
    /// Writes confirmed.
    pub confirmed: usize,
    /// Writes accepted but not acknowledged by a replica within 1 s.
    pub unconfirmed: u64,
    /// Failed attempts (refused, dropped, timed out).
    pub errors: u64,
    /// Confirmed writes missing on the final primary; `None` when the check could not run.
    pub lost: Option<usize>,
    /// Times a pod gained the primary label during the update.
    pub primary_changes: usize,
    /// Image change → settled at the new image (→ given up, for an incomplete trial).
    pub rollout: Duration,
    /// Why the instance did not settle at the new image, or the writer did not resume, in time: the gap and
    /// rollout time are then lower bounds.
    pub incomplete: Option<String>,
    /// Anything unusual.
    pub notes: Vec<String>,
}

/// One configuration's trials.
#[derive(Clone, Debug)]
pub struct ConfigResult {
    /// The rollout mode.
    pub rollout: Rollout,
    /// Trials whose image changed, complete or not.
    pub trials: Vec<Trial>,
    /// Trials that failed before the image changed, with why.
    pub failed: Vec<String>,
}

impl ConfigResult {
    fn gaps(&self) -> Vec<Duration> {
        self.trials.iter().map(|t| t.longest_gap).collect()
    }

    fn lost(&self) -> usize {
        self.trials.iter().filter_map(|t| t.lost).sum()
    }

    /// Trials that did not settle, or whose lost-write check did not run, or that never started.
    fn incomplete(&self) -> usize {
        self.failed.len()
            + self
                .trials
                .iter()
                .filter(|t| t.incomplete.is_some() || t.lost.is_none())
                .count()
    }
}

/// Why the instance has not settled at `image` yet: `None` when its phase is `Running` for the current
/// generation, the StatefulSet controller has observed its spec, and exactly `replicas` pods exist, none
/// terminating, each running `image` at the StatefulSet's update revision.
pub fn not_settled(
    instance: &RedisInstance,
    sts: &StatefulSet,
    pods: &[Pod],
    image: &str,
    replicas: usize,
) -> Option<String> {
    let status = instance.status.clone().unwrap_or_default();
    if status.observed_generation != instance.metadata.generation {
        return Some(format!(
            "generation {:?} not observed yet (status has {:?})",
            instance.metadata.generation, status.observed_generation
        ));
    }
    if status.status != Phase::Running {
        return Some(format!("phase {} ({})", status.status, status.reason));
    }
    let sts_status = sts.status.clone().unwrap_or_default();
    if sts_status.observed_generation != sts.metadata.generation {
        return Some("the StatefulSet controller has not observed the spec yet".into());
    }
    let Some(revision) = sts_status.update_revision else {
        return Some("the StatefulSet has no update revision".into());
    };
    if pods.len() != replicas {
        return Some(format!("{} pods, want {replicas}", pods.len()));
    }
    for pod in pods {
        let name = pod.name_any();
        if pod.metadata.deletion_timestamp.is_some() {
            return Some(format!("{name} is terminating"));
        }
        if pod.labels().get(REVISION_LABEL) != Some(&revision) {
            return Some(format!("{name} is not at revision {revision}"));
        }
        let running = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.as_deref());
        if running != Some(image) {
            return Some(format!("{name} runs {running:?}, want {image}"));
        }
        if container_id(pod).is_none() {
            return Some(format!("{name} has no running container"));
        }
    }
    None
}

/// The instance, its StatefulSet and pods of one namespace.
struct Instance {
    instances: Api<RedisInstance>,
    statefulsets: Api<StatefulSet>,
    pods: Api<Pod>,
}

impl Instance {
    fn new(client: &Client, ns: &str) -> Instance {
        Instance {
            instances: Api::namespaced(client.clone(), ns),
            statefulsets: Api::namespaced(client.clone(), ns),
            pods: Api::namespaced(client.clone(), ns),
        }
    }

    /// One look: `Ok(primary)` once settled at `image` ([`not_settled`]) with a converged topology.
    async fn settled(&self, image: &str) -> Result<String, String> {
        let instance = self
            .instances
            .get(INSTANCE)
            .await
            .map_err(|e| format!("get {INSTANCE}: {e}"))?;
        let sts = self
            .statefulsets
            .get(INSTANCE)
            .await
            .map_err(|e| format!("get statefulset {INSTANCE}: {e}"))?;
        let params = ListParams::default().labels(&format!("{INSTANCE_LABEL}={INSTANCE}"));
        let pods = self
            .pods
            .list(&params)
            .await
            .map_err(|e| format!("list pods: {e}"))?
            .items;
        if let Some(why) = not_settled(&instance, &sts, &pods, image, REPLICAS) {
            return Err(why);
        }
        converged_primary(&self.instances, &self.pods, REPLICAS).await
    }

    /// Waits until [`Instance::settled`] answers, calling `pump` all along; returns the primary.
    async fn wait_settled(
        &self,
        image: &str,
        timeout: Duration,
        pump: impl FnMut(),
    ) -> Result<String, String> {
        poll(timeout, Duration::from_millis(100), pump, || {
            self.settled(image)
        })
        .await
        .map_err(|seen| format!("not settled at {image} within {timeout:?}: {seen}"))
    }

    async fn pod(&self, name: &str) -> Result<Pod, String> {
        self.pods
            .get(name)
            .await
            .map_err(|e| format!("get {name}: {e}"))
    }

    /// Moves the primary off `primary` by a failover: `kill -9` of its server, a wait until another pod is the
    /// confirmed primary, then the killed pod is deleted so that the StatefulSet re-creates it at once (as in
    /// the failover benchmark) and the instance settles again. Returns the new primary.
    async fn fail_over(
        &self,
        primary: &str,
        image: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let pod = self.pod(primary).await?;
        let uid = pod.metadata.uid.clone();
        kill9(process_id(&pod)?)?;
        let deadline = Instant::now() + timeout;
        loop {
            let current = self
                .instances
                .get(INSTANCE)
                .await
                .ok()
                .and_then(|ri| ri.status?.current_primary);
            if current.as_deref().is_some_and(|p| p != primary) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no failover from {primary} within {timeout:?} of its kill"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.pods
            .delete(primary, &DeleteParams::default())
            .await
            .map_err(|e| format!("delete {primary}: {e}"))?;
        loop {
            let back = self.pods.get_opt(primary).await.ok().flatten();
            if back.is_some_and(|p| p.metadata.uid != uid && container_id(&p).is_some()) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{primary} not re-created and running within {timeout:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        self.wait_settled(image, left, || {}).await
    }
}

/// The benchmark's watch of the instance's pods and the role labels it saw.
struct LabelWatch {
    watch: Watch<Pod>,
    labels: RoleLabels,
}

impl LabelWatch {
    /// Consumes every pod version received so far.
    fn pump(&mut self) {
        while let Ok((at, pod)) = self.watch.events.try_recv() {
            self.labels.see(at, &pod);
        }
    }
}

fn ordinal(pod: &str) -> Option<u32> {
    pod.rsplit_once('-')?.1.parse().ok()
}

fn stamp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() % 100_000)
        .unwrap_or_default()
}

/// Runs `trials` trials of each configuration, taking turns so that both see the same conditions.
pub async fn measure(
    settings: &Settings,
    rollouts: &[Rollout],
    trials: usize,
) -> Vec<ConfigResult> {
    let mut results: Vec<ConfigResult> = rollouts
        .iter()
        .map(|&rollout| ConfigResult {
            rollout,
            trials: Vec::new(),
            failed: Vec::new(),
        })
        .collect();
    for i in 0..trials {
        for result in &mut results {
            let rollout = result.rollout;
            match trial(settings, rollout, i).await {
                Ok(t) => {
                    eprintln!(
                        "[bench] rollout trial {}/{trials} ({}): {} → {}, longest gap {:.2} s, lost {}, {} primary changes, rollout {:.1} s{}",
                        i + 1,
                        rollout.slug(),
                        t.primary_before,
                        t.primary_after,
                        t.longest_gap.as_secs_f64(),
                        lost_text(t.lost),
                        t.primary_changes,
                        t.rollout.as_secs_f64(),
                        t.incomplete.as_ref().map_or(String::new(), |e| format!(" — incomplete: {e}"))
                    );
                    result.trials.push(t);
                }
                Err(e) => {
                    eprintln!(
                        "[bench] rollout trial {}/{trials} ({}) failed: {e}",
                        i + 1,
                        rollout.slug()
                    );
                    result.failed.push(format!("trial {}: {e}", i + 1));
                }
            }
        }
    }
    results
}

/// One trial in its own namespace with its own operator; the namespace is deleted whatever happened.
async fn trial(settings: &Settings, rollout: Rollout, index: usize) -> Result<Trial, String> {
    let ns = format!(
        "{}-{}-{}-{}",
        settings.namespace_prefix,
        rollout.slug(),
        index + 1,
        stamp()
    );
    create_namespace(&settings.client, &ns).await?;
    let launch = Launch {
        env: rollout.env(),
        ..settings.launch.clone()
    };
    let outcome = match Operator::start(&launch, &ns).await {
        Ok(operator) => {
            let outcome = run_trial(settings, &ns).await;
            // The instance's finalizer needs the operator: it runs until the namespace is gone.
            let gone = delete_namespace(&settings.client, &ns).await;
            let stopped = operator.stop().await;
            outcome.map(|mut t| {
                if let Err(e) = gone {
                    t.notes.push(e);
                }
                if !stopped {
                    t.notes
                        .push("the operator did not exit within 10 s of SIGTERM".into());
                }
                t
            })
        }
        Err(e) => {
            let _ = delete_namespace(&settings.client, &ns).await;
            Err(e)
        }
    };
    outcome
}

async fn delete_namespace(client: &Client, ns: &str) -> Result<(), String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(ns, &DeleteParams::default())
        .await
        .map_err(|e| format!("delete namespace {ns}: {e}"))?;
    let deadline = Instant::now() + NAMESPACE_GONE_TIMEOUT;
    while namespaces.get_opt(ns).await.ok().flatten().is_some() {
        if Instant::now() > deadline {
            return Err(format!(
                "namespace {ns} still there {NAMESPACE_GONE_TIMEOUT:?} after its deletion"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

async fn run_trial(settings: &Settings, ns: &str) -> Result<Trial, String> {
    let instance = Instance::new(&settings.client, ns);
    let spec = RedisInstanceSpec {
        replicas: REPLICAS as i32,
        image: settings.image_from.clone(),
        ..Default::default()
    };
    instance
        .instances
        .create(&PostParams::default(), &RedisInstance::new(INSTANCE, spec))
        .await
        .map_err(|e| format!("create {INSTANCE}: {e}"))?;
    let mut notes = Vec::new();
    let mut primary = instance
        .wait_settled(&settings.image_from, settings.settle_timeout, || {})
        .await?;
    let mut attempts = 0;
    while ordinal(&primary) != Some(MIDDLE_ORDINAL) && attempts < settings.placement_attempts {
        attempts += 1;
        primary = instance
            .fail_over(&primary, &settings.image_from, settings.settle_timeout)
            .await?;
    }
    if ordinal(&primary) != Some(MIDDLE_ORDINAL) {
        notes.push(format!(
            "primary {primary} (not ordinal {MIDDLE_ORDINAL} after {attempts} failovers)"
        ));
    }

    let mut labels = LabelWatch {
        watch: Watch::start(instance.pods.clone()).await,
        labels: RoleLabels::default(),
    };
    labels.pump();
    let resolve_pods = instance.pods.clone();
    let resolve: Resolve = Arc::new(move |_failed| {
        let pods = resolve_pods.clone();
        Box::pin(async move { primary_target(&pods).await })
    });
    let writer = Writer::start(resolve, settings.write_interval);
    let mut changed = None;
    let outcome = update(
        settings,
        &instance,
        &writer,
        &primary,
        &mut labels,
        &mut changed,
    )
    .await;
    // The lost-write check runs whatever happened, on whatever pod carries the label now.
    let lost = match primary_target(&instance.pods).await {
        Some(target) => check_lost(&writer, &target.host, target.port, &mut BTreeSet::new())
            .await
            .map_err(|e| format!("lost-write check: {e}")),
        None => Err("no pod carries the primary label for the lost-write check".into()),
    };
    // A writer that has not confirmed anything since its last write is inside a gap at least this long.
    let open_gap = writer.last().map_or(Duration::ZERO, |c| c.at.elapsed());
    let confirmed = writer.count();
    let stats = writer.finish().await;
    let Some((changes_from, changed)) = changed else {
        return Err(outcome.err().unwrap_or_default());
    };
    let (rollout, primary_after, incomplete) = match outcome {
        Ok((rollout, after)) => (rollout, after, None),
        Err(e) => (changed.elapsed(), String::from("?"), Some(e)),
    };
    let lost = lost.map_err(|e| notes.push(e)).ok();
    let gains = labels.labels.primary_gains(changes_from);
    if labels.labels.double_primary > 0 {
        notes.push(format!(
            "two pods carried the primary label at once {} times (pod watch)",
            labels.labels.double_primary
        ));
    }
    Ok(Trial {
        primary_before: primary,
        primary_after,
        longest_gap: stats.longest_gap.max(open_gap),
        confirmed,
        unconfirmed: stats.unconfirmed,
        errors: stats.errors,
        lost,
        primary_changes: gains.len(),
        rollout,
        incomplete,
        notes,
    })
}

/// With the writer running on `primary`: the image change, the wait until settled at the new image and until
/// the writer confirmed writes on the settled primary. Records the label-change index and the instant of the
/// image change in `changed` once it is made; returns the rollout time and the settled primary.
async fn update(
    settings: &Settings,
    instance: &Instance,
    writer: &Writer,
    primary: &str,
    labels: &mut LabelWatch,
    changed: &mut Option<(usize, Instant)>,
) -> Result<(Duration, String), String> {
    writer
        .wait_confirmed_on(primary, 0, WRITES_TO_CONVERGE, settings.settle_timeout)
        .await?;
    labels.pump();
    let changes_from = labels.labels.changes.len();
    let patch = serde_json::json!({ "spec": { "image": settings.image_to } });
    let at = Instant::now();
    instance
        .instances
        .patch(INSTANCE, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| format!("patch {INSTANCE} image: {e}"))?;
    *changed = Some((changes_from, at));
    let after = instance
        .wait_settled(&settings.image_to, settings.rollout_timeout, || {
            labels.pump()
        })
        .await?;
    let rollout = at.elapsed();
    writer
        .wait_confirmed_on(
            &after,
            writer.count(),
            WRITES_TO_CONVERGE,
            settings.settle_timeout,
        )
        .await?;
    labels.pump();
    Ok((rollout, after))
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// How many trials started with the primary at each pod, e.g. `cache-1 ×9, cache-0 ×1`.
fn tally(names: impl Iterator<Item = String>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for name in names {
        *counts.entry(name).or_default() += 1;
    }
    counts
        .iter()
        .map(|(name, n)| format!("{name} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Lost writes of a configuration, saying how many trials the check ran in when it did not run in all.
fn lost_cell(r: &ConfigResult) -> String {
    let checked = r.trials.iter().filter(|t| t.lost.is_some()).count();
    let all = r.trials.len() + r.failed.len();
    if checked == all {
        r.lost().to_string()
    } else {
        format!("{} ({checked} of {all} trials checked)", r.lost())
    }
}

fn lost_text(lost: Option<usize>) -> String {
    lost.map_or("not checked".into(), |n| n.to_string())
}

/// The results table and the targets: what `docs/benchmarks.md` shows under "Rolling update".
pub fn summary(results: &[ConfigResult], gap_target: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| rollout | trials (incomplete) | primary at the change | longest write gap p50 s | p99 s | max s | confirmed writes | unconfirmed / errors | lost confirmed writes | primary changes per trial | rollout time p50 s | max s |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in results {
        let gaps = r.gaps();
        let rollouts: Vec<Duration> = r.trials.iter().map(|t| t.rollout).collect();
        let changes: BTreeSet<usize> = r.trials.iter().map(|t| t.primary_changes).collect();
        let _ = writeln!(
            out,
            "| {} | {} ({}) | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} |",
            r.rollout.label(),
            r.trials.len() + r.failed.len(),
            r.incomplete(),
            tally(r.trials.iter().map(|t| t.primary_before.clone())),
            secs(percentile(&gaps, 50.0)),
            secs(percentile(&gaps, 99.0)),
            secs(percentile(&gaps, 100.0)),
            r.trials.iter().map(|t| t.confirmed).sum::<usize>(),
            r.trials.iter().map(|t| t.unconfirmed).sum::<u64>(),
            r.trials.iter().map(|t| t.errors).sum::<u64>(),
            lost_cell(r),
            changes
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" or "),
            secs(percentile(&rollouts, 50.0)),
            secs(percentile(&rollouts, 100.0)),
        );
    }
    let _ = writeln!(
        out,
        "\n| target | rollout | measured | |\n|---|---|---|---|"
    );
    for r in results {
        let p99 = percentile(&r.gaps(), 99.0);
        let max = percentile(&r.gaps(), 100.0);
        let complete = !r.trials.is_empty() && r.incomplete() == 0;
        let verdict = |met: bool| match (complete, met) {
            (false, _) => "**not met** (incomplete run)",
            (true, true) => "met",
            (true, false) => "**missed**",
        };
        let _ = writeln!(
            out,
            "| write gap p99 ≤ {} s (nearest rank over {} trials) | {} | p99 {}{} s, max {} s | {} |",
            gap_target.as_secs_f64(),
            r.trials.len(),
            r.rollout.label(),
            if complete { "" } else { "≥ " },
            secs(p99),
            secs(max),
            verdict(p99 <= gap_target)
        );
        let _ = writeln!(
            out,
            "| 0 confirmed writes lost | {} | {} lost over {} checked trials | {} |",
            r.rollout.label(),
            r.lost(),
            r.trials.iter().filter(|t| t.lost.is_some()).count(),
            verdict(r.lost() == 0)
        );
    }
    out
}

/// The full report: environment, summary, per-trial details and failures.
pub fn markdown(
    environment: &[(String, String)],
    results: &[ConfigResult],
    gap_target: Duration,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### Environment\n\n| | |\n|---|---|");
    for (key, value) in environment {
        let _ = writeln!(out, "| {key} | {value} |");
    }
    let _ = writeln!(out, "\n### Rolling image update of 3 replicas\n");
    out.push_str(&summary(results, gap_target));
    let _ = writeln!(
        out,
        "\nLongest write gap: nearest-rank percentiles over the trials whose image changed; an incomplete trial counts with its gap up to when it was given up (a lower bound)."
    );
    for r in results {
        let _ = writeln!(
            out,
            "\n### {}: per trial\n\n| # | primary before → after | longest gap s | confirmed | unconfirmed / errors | lost | primary changes | rollout s | notes |\n|---|---|---|---|---|---|---|---|---|",
            r.rollout.label()
        );
        for (i, t) in r.trials.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} → {} | {} | {} | {} / {} | {} | {} | {} | {} |",
                i + 1,
                t.primary_before,
                t.primary_after,
                secs(t.longest_gap),
                t.confirmed,
                t.unconfirmed,
                t.errors,
                lost_text(t.lost),
                t.primary_changes,
                secs(t.rollout),
                t.incomplete
                    .iter()
                    .map(|e| format!("**incomplete** (gap and rollout time are lower bounds): {e}"))
                    .chain(t.notes.iter().cloned())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        if !r.failed.is_empty() {
            let _ = writeln!(out);
            for f in &r.failed {
                let _ = writeln!(out, "- **failed** {f}");
            }
        }
    }
    out
}

/// `doc` with the text between the lines `begin` and `end` replaced by `body`; an error when the markers are
/// missing or out of order (the document is then left alone).
pub fn replace_section(doc: &str, begin: &str, end: &str, body: &str) -> Result<String, String> {
    let start = doc
        .find(begin)
        .ok_or_else(|| format!("marker {begin:?} not found"))?;
    let inner = start + begin.len();
    let stop = doc[inner..]
        .find(end)
        .map(|i| inner + i)
        .ok_or_else(|| format!("marker {end:?} not found after {begin:?}"))?;
    Ok(format!(
        "{}\n{}{}",
        &doc[..inner],
        body.trim_end().to_string() + "\n",
        &doc[stop..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateRunning, ContainerStatus, PodSpec, PodStatus,
    };
    use redis_operator::api::RedisInstanceStatus;

    fn instance(generation: i64, observed: i64, phase: &str) -> RedisInstance {
        let mut ri = RedisInstance::new(INSTANCE, RedisInstanceSpec::default());
        ri.metadata.generation = Some(generation);
        let status: RedisInstanceStatus = serde_json::from_value(serde_json::json!({
            "status": phase,
            "observedGeneration": observed,
        }))
        .expect("status");
        ri.status = Some(status);
        ri
    }

    fn sts(generation: i64, observed: i64, revision: &str) -> StatefulSet {
        let mut sts = StatefulSet::default();
        sts.metadata.generation = Some(generation);
        sts.status = Some(StatefulSetStatus {
            observed_generation: Some(observed),
            update_revision: Some(revision.into()),
            ..Default::default()
        });
        sts
    }

    fn pod(ordinal: u32, revision: &str, image: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(format!("{INSTANCE}-{ordinal}"));
        pod.metadata.labels = Some([(REVISION_LABEL.to_string(), revision.to_string())].into());
        pod.spec = Some(PodSpec {
            containers: vec![Container {
                name: "redis".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        });
        pod.status = Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                container_id: Some("process://42".into()),
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning::default()),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        });
        pod
    }

    fn pods(revision: &str, image: &str) -> Vec<Pod> {
        (0..3).map(|i| pod(i, revision, image)).collect()
    }

    #[test]
    fn settled_when_running_and_every_pod_at_the_update_revision_and_image() {
        let why = not_settled(
            &instance(2, 2, "Running"),
            &sts(2, 2, "r2"),
            &pods("r2", "redis:7.0.2"),
            "redis:7.0.2",
            3,
        );
        assert_eq!(why, None);
    }

    #[test]
    fn not_settled_before_the_operator_observed_the_change() {
        let why = not_settled(
            &instance(2, 1, "Running"),
            &sts(2, 2, "r2"),
            &pods("r2", "redis:7.0.2"),
            "redis:7.0.2",
            3,
        );
        assert!(why.is_some_and(|w| w.contains("not observed")));
    }

    #[test]
    fn not_settled_while_updating() {
        let why = not_settled(
            &instance(2, 2, "Updating"),
            &sts(2, 2, "r2"),
            &pods("r2", "redis:7.0.2"),
            "redis:7.0.2",
            3,
        );
        assert!(why.is_some_and(|w| w.contains("Updating")));
    }

    #[test]
    fn not_settled_before_the_statefulset_controller_observed_the_spec() {
        let why = not_settled(
            &instance(2, 2, "Running"),
            &sts(3, 2, "r2"),
            &pods("r2", "redis:7.0.2"),
            "redis:7.0.2",
            3,
        );
        assert!(why.is_some_and(|w| w.contains("StatefulSet controller")));
    }

    #[test]
    fn not_settled_while_a_pod_is_at_the_old_revision_or_image_or_terminating_or_missing() {
        let (ri, set) = (instance(2, 2, "Running"), sts(2, 2, "r2"));
        let mut old_revision = pods("r2", "redis:7.0.2");
        old_revision[1] = pod(1, "r1", "redis:7.0.2");
        let why = not_settled(&ri, &set, &old_revision, "redis:7.0.2", 3);
        assert!(why.is_some_and(|w| w.contains("cache-1 is not at revision r2")));

        let mut old_image = pods("r2", "redis:7.0.2");
        old_image[2] = pod(2, "r2", "redis:7.0.1");
        let why = not_settled(&ri, &set, &old_image, "redis:7.0.2", 3);
        assert!(why.is_some_and(|w| w.contains("cache-2 runs")));

        let mut terminating = pods("r2", "redis:7.0.2");
        terminating[0].metadata.deletion_timestamp =
            Some(serde_json::from_value(serde_json::json!("2026-11-26T00:00:00Z")).expect("time"));
        let why = not_settled(&ri, &set, &terminating, "redis:7.0.2", 3);
        assert!(why.is_some_and(|w| w.contains("cache-0 is terminating")));

        let two = &pods("r2", "redis:7.0.2")[..2];
        let why = not_settled(&ri, &set, two, "redis:7.0.2", 3);
        assert!(why.is_some_and(|w| w.contains("2 pods")));

        let mut stopped = pods("r2", "redis:7.0.2");
        stopped[1].status = None;
        let why = not_settled(&ri, &set, &stopped, "redis:7.0.2", 3);
        assert!(why.is_some_and(|w| w.contains("no running container")));
    }

    #[test]
    fn replace_section_keeps_the_markers_and_what_is_around_them() {
        let doc = "intro\n<!-- b -->\nold\nlines\n<!-- e -->\ntail\n";
        let out = replace_section(doc, "<!-- b -->", "<!-- e -->", "new\n\n").expect("markers");
        assert_eq!(out, "intro\n<!-- b -->\nnew\n<!-- e -->\ntail\n");
        assert_eq!(
            replace_section(&out, "<!-- b -->", "<!-- e -->", "new").expect("again"),
            out
        );
    }

    #[test]
    fn replace_section_refuses_missing_or_reversed_markers() {
        assert!(replace_section("a <!-- e -->", "<!-- b -->", "<!-- e -->", "x").is_err());
        assert!(replace_section("<!-- b --> a", "<!-- b -->", "<!-- e -->", "x").is_err());
        assert!(replace_section("<!-- e --> <!-- b -->", "<!-- b -->", "<!-- e -->", "x").is_err());
    }

    fn trial(gap_ms: u64, lost: usize) -> Trial {
        Trial {
            primary_before: "cache-1".into(),
            primary_after: "cache-0".into(),
            longest_gap: Duration::from_millis(gap_ms),
            lost: Some(lost),
            primary_changes: 1,
            ..Default::default()
        }
    }

    fn result(rollout: Rollout, trials: Vec<Trial>, failed: usize) -> ConfigResult {
        ConfigResult {
            rollout,
            trials,
            failed: (0..failed).map(|i| format!("trial {i}: timeout")).collect(),
        }
    }

    #[test]
    fn summary_judges_the_targets_on_every_trial() {
        let target = Duration::from_secs(1);
        let met = result(Rollout::PrimaryLast, vec![trial(300, 0), trial(1000, 0)], 0);
        let text = summary(&[met], target);
        assert!(text.contains("| p99 1.00 s, max 1.00 s | met |"), "{text}");
        assert!(
            text.contains("| 0 lost over 2 checked trials | met |"),
            "{text}"
        );

        let missed = result(
            Rollout::Statefulset,
            vec![trial(300, 0), trial(11_200, 3)],
            0,
        );
        let text = summary(&[missed], target);
        assert!(
            text.contains("| p99 11.20 s, max 11.20 s | **missed** |"),
            "{text}"
        );
        assert!(
            text.contains("| 3 lost over 2 checked trials | **missed** |"),
            "{text}"
        );
    }

    #[test]
    fn an_incomplete_run_does_not_meet_the_targets() {
        let text = summary(
            &[result(Rollout::PrimaryLast, vec![trial(100, 0)], 1)],
            Duration::from_secs(1),
        );
        assert!(text.contains("| 2 (1) |"), "{text}");
        let mut stalled = trial(60_000, 0);
        stalled.incomplete = Some("not settled".into());
        let text = summary(
            &[result(
                Rollout::Statefulset,
                vec![trial(100, 0), stalled],
                0,
            )],
            Duration::from_secs(1),
        );
        assert!(text.contains("| 2 (1) |"), "{text}");
        assert!(
            text.contains("| p99 ≥ 60.00 s, max 60.00 s | **not met** (incomplete run) |"),
            "{text}"
        );
        let mut unchecked = trial(100, 0);
        unchecked.lost = None;
        let text = summary(
            &[result(Rollout::Statefulset, vec![unchecked], 0)],
            Duration::from_secs(1),
        );
        assert!(
            text.contains("| 0 lost over 0 checked trials | **not met** (incomplete run) |"),
            "{text}"
        );
        assert_eq!(
            text.matches("**not met** (incomplete run)").count(),
            2,
            "{text}"
        );
        let text = summary(
            &[result(Rollout::PrimaryLast, vec![], 0)],
            Duration::from_secs(1),
        );
        assert_eq!(
            text.matches("**not met** (incomplete run)").count(),
            2,
            "{text}"
        );
    }

    #[test]
    fn ordinals_and_the_primary_tally() {
        assert_eq!(ordinal("cache-1"), Some(1));
        assert_eq!(ordinal("my-cache-12"), Some(12));
        assert_eq!(ordinal("cache"), None);
        let names = ["cache-1", "cache-0", "cache-1"].map(String::from);
        assert_eq!(tally(names.into_iter()), "cache-0 ×1, cache-1 ×2");
    }
}
