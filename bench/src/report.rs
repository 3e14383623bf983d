//! The markdown report: the machine, the results, and each target with where we stand.

use std::fmt::Write;
use std::time::Duration;

use crate::converge::SizeResult;
use crate::latency::LatencyResult;
use crate::operator::RedisCost;
use crate::outage::OutageTrial;

/// Writes that converging one instance cannot do without, besides one role label per pod: apply the ConfigMap,
/// the StatefulSet, three Services (`NAME`, `NAME-replicas`, `NAME-headless`), two PodDisruptionBudgets, the
/// NetworkPolicy and two Secrets (password, internal users), add the finalizer, and three status writes:
/// `Creating` once the children exist, the first primary recorded (`targetPrimary`) before it is promoted (every
/// pod starts parked, and the operator records a promotion before it sends it, so a restarted operator resumes
/// it), and `Running` once ready.
pub const MINIMUM_WRITES_PER_INSTANCE: u64 = 10 + 1 + 3;

/// The minimum writes of one instance of `r`'s size: [`MINIMUM_WRITES_PER_INSTANCE`] and a label per pod.
fn minimum_writes(r: &SizeResult) -> u64 {
    MINIMUM_WRITES_PER_INSTANCE + u64::try_from(r.replicas.max(0)).unwrap_or(0)
}

/// Everything the report shows.
pub struct Report<'a> {
    /// Machine and cluster description lines.
    pub environment: Vec<(String, String)>,
    /// Latency run, if it was measured.
    pub latency: Option<&'a LatencyResult>,
    /// API server outages, if they were measured.
    pub outages: &'a [OutageTrial],
    /// One result per size.
    pub sizes: &'a [SizeResult],
}

/// Nearest-rank percentile of unsorted samples.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn s(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn per(count: u64, n: usize) -> String {
    format!("{:.2}", count as f64 / n.max(1) as f64)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

impl Report<'_> {
    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        self.environment_section(&mut out);
        if let Some(latency) = self.latency {
            latency_section(&mut out, latency);
        }
        if !self.outages.is_empty() {
            outage_section(&mut out, self.outages);
        }
        if !self.sizes.is_empty() {
            convergence_section(&mut out, self.sizes);
            cost_section(&mut out, self.sizes);
            redis_cost_section(&mut out, self.sizes);
            footprint_section(&mut out, self.sizes);
        }
        self.targets_section(&mut out);
        observations_section(&mut out, self.sizes);
        out
    }

    fn environment_section(&self, out: &mut String) {
        let _ = writeln!(out, "### Environment\n\n| | |\n|---|---|");
        for (key, value) in &self.environment {
            let _ = writeln!(out, "| {key} | {value} |");
        }
        out.push('\n');
    }

    fn targets_section(&self, out: &mut String) {
        let _ = writeln!(out, "### Targets\n\n| target | measured | |\n|---|---|---|");
        if let Some(l) = self.latency {
            // From sending: measured from the response the floor is about zero (the watch event overtakes the
            // response), which makes any ratio meaningless.
            let p99 = percentile(&l.reaction_from_send, 99.0).as_secs_f64();
            // Any reaction is two watch deliveries and a write: judged also against a controller that only
            // answers.
            for (against, floor, unit) in [
                ("floor p99", &l.floor_from_send, " floor"),
                (
                    "a do-nothing controller's reaction p99",
                    &l.echo_from_send,
                    "",
                ),
            ] {
                let floor = percentile(floor, 99.0).as_secs_f64();
                let ratio = p99 / floor.max(1e-9);
                let _ = writeln!(
                    out,
                    "| reaction p99 ≤ 1.5× {against} (both from sending the patch) | {:.1} ms vs {:.1} ms{unit} = {ratio:.2}× | {} |",
                    p99 * 1000.0,
                    floor * 1000.0,
                    verdict(ratio <= 1.5)
                );
            }
        }
        if !self.outages.is_empty() {
            let worst = self
                .outages
                .iter()
                .map(|t| t.reaction)
                .max()
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| after an API server outage, a patch is reflected within 5 s | max {} s over {} outages | {} |",
                s(worst),
                self.outages.len(),
                verdict(worst <= Duration::from_secs(5))
            );
        }
        if let Some(largest) = self.sizes.iter().max_by_key(|r| r.n) {
            let m = &largest.milestones;
            let create = percentile(&m.create_to_statefulset, 99.0);
            let tail = percentile(&m.ready_to_running, 99.0);
            let _ = writeln!(
                out,
                "| operator create → StatefulSet p99 ≤ 2 s (N={}) | {} s | {} |",
                largest.n,
                s(create),
                verdict(create <= Duration::from_secs(2))
            );
            let _ = writeln!(
                out,
                "| operator StatefulSet ready → `Running` p99 ≤ 1 s (N={}) | {} s | {} |",
                largest.n,
                s(tail),
                verdict(tail <= Duration::from_secs(1))
            );
            let peak = largest
                .footprint
                .peak_rss_kib
                .max(largest.restart_footprint.peak_rss_kib);
            let _ = writeln!(
                out,
                "| RSS ≤ 48 MiB at N={} converged and idle | {} MiB (peak {} MiB){} | {} |",
                largest.n,
                mib(largest.footprint.rss_kib),
                mib(peak),
                growth(self.sizes).map_or(String::new(), |kib| format!(
                    "; growth {kib:.1} KiB per instance"
                )),
                verdict(largest.footprint.rss_kib <= 48 * 1024)
            );
            let cpu = idle_cpu_percent(largest);
            let _ = writeln!(
                out,
                "| idle operator CPU ≤ 5 % of one core (N={}) | {cpu:.2} % over {} s | {} |",
                largest.n,
                largest.idle_window.as_secs(),
                verdict(cpu <= 5.0)
            );
        }
        for r in self.sizes {
            let writes = r.idle_requests.object_writes() + r.idle_requests.event_writes();
            let _ = writeln!(
                out,
                "| 0 API writes while idle (N={}) | {writes} writes over {} s and {} reconciles | {} |",
                label(r),
                r.idle_window.as_secs(),
                r.idle_reconciles,
                verdict(writes == 0)
            );
        }
        for r in self.sizes {
            let idle = r.redis_idle.per_instance_minute(r.n, r.idle_window);
            let pods = f64::from(r.replicas.max(1));
            let _ = writeln!(
                out,
                "| idle Redis polling over kept connections: ≤ 1 new connection per pod per minute (N={}) | {:.2} connections, {:.1} commands, {} read per pod per minute | {} |",
                label(r),
                idle.connections / pods,
                idle.commands / pods,
                bytes(idle.read_bytes / pods),
                verdict(idle.connections / pods <= 1.0)
            );
        }
        for r in self.sizes {
            let ratio = write_ratio(r);
            let _ = writeln!(
                out,
                "| write ratio ≤ 1.2 (N={}) | {ratio:.2} | {} |",
                label(r),
                verdict(ratio <= 1.2)
            );
        }
        out.push('\n');
    }
}

/// `N` or `NxR` for instances of R pods.
fn label(r: &SizeResult) -> String {
    if r.replicas == 1 {
        r.n.to_string()
    } else {
        format!("{}×{}", r.n, r.replicas)
    }
}

fn bytes(b: f64) -> String {
    if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// Operator CPU over the idle window, in percent of one core.
pub fn idle_cpu_percent(r: &SizeResult) -> f64 {
    100.0 * r.idle_cpu_seconds / r.idle_window.as_secs_f64().max(1e-9)
}

/// RSS growth per instance between the smallest and the largest run of one pod per instance, KiB.
pub fn growth(sizes: &[SizeResult]) -> Option<f64> {
    let single = || sizes.iter().filter(|r| r.replicas == 1);
    let small = single().min_by_key(|r| r.n)?;
    let large = single().max_by_key(|r| r.n)?;
    (large.n > small.n).then(|| {
        (large.footprint.rss_kib as f64 - small.footprint.rss_kib as f64)
            / (large.n - small.n) as f64
    })
}

fn outage_section(out: &mut String, trials: &[OutageTrial]) {
    let _ = writeln!(
        out,
        "### Reaction after an API server outage (kill -9, restart, then a spec patch)\n\n\
         | outage | kill → API server answers s | patch → its status on a new watch s | patch → `Running` s |\n\
         |---|---|---|---|"
    );
    for (i, t) in trials.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            i + 1,
            s(t.unavailable),
            s(t.reaction),
            s(t.settle)
        );
    }
    out.push('\n');
}

fn redis_cost_section(out: &mut String, sizes: &[SizeResult]) {
    let _ = writeln!(
        out,
        "### Redis-side cost (the operator's own counters)\n\n\
         | N | pods / instance | converging: connections / commands / read per instance | converging: per instance per minute | idle: connections / commands / read per instance per minute | idle window s | idle reconciles |\n\
         |---|---|---|---|---|---|---|"
    );
    let triple = |c: RedisCost| {
        format!(
            "{:.2} / {:.1} / {}",
            c.connections,
            c.commands,
            bytes(c.read_bytes)
        )
    };
    for r in sizes {
        let total = r.redis_converge.per_instance(r.n);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.n,
            r.replicas,
            triple(total),
            triple(
                r.redis_converge
                    .per_instance_minute(r.n, r.milestones.running)
            ),
            triple(r.redis_idle.per_instance_minute(r.n, r.idle_window)),
            r.idle_window.as_secs(),
            r.idle_reconciles
        );
    }
    out.push('\n');
}

/// Operator writes (Events excluded) to converge, over the minimum a converge needs.
pub fn write_ratio(r: &SizeResult) -> f64 {
    r.converge_requests.object_writes() as f64 / (minimum_writes(r) * r.n.max(1) as u64) as f64
}

fn latency_section(out: &mut String, l: &LatencyResult) {
    let _ = writeln!(
        out,
        "### Reaction latency ({} samples)\n\n| | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|---|",
        l.reaction.len()
    );
    let row = |out: &mut String, name: &str, samples: &[Duration]| {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} |",
            ms(percentile(samples, 50.0)),
            ms(percentile(samples, 95.0)),
            ms(percentile(samples, 99.0)),
            ms(percentile(samples, 100.0))
        );
    };
    row(
        out,
        "spec patch response → status of the new generation on our watch",
        &l.reaction,
    );
    row(
        out,
        "spec patch sent → status of the new generation on our watch",
        &l.reaction_from_send,
    );
    row(out, "floor: status patch response → on our watch", &l.floor);
    row(
        out,
        "floor: status patch sent → on our watch",
        &l.floor_from_send,
    );
    row(
        out,
        "echo floor: spec patch sent → a do-nothing controller's status for it on our watch",
        &l.echo_from_send,
    );
    row(
        out,
        "spec patch response → `Running` again (maxmemory set live)",
        &l.settle,
    );
    let ratio = |reaction: &[Duration], floor: &[Duration], p: f64| {
        percentile(reaction, p).as_secs_f64() / percentile(floor, p).as_secs_f64().max(1e-9)
    };
    // From the response the floor is about zero (the watch event overtakes the response): only ratios from
    // sending mean something.
    for (name, reaction, floor) in [
        (
            "floor, from sending",
            &l.reaction_from_send,
            &l.floor_from_send,
        ),
        (
            "echo floor, from sending",
            &l.reaction_from_send,
            &l.echo_from_send,
        ),
    ] {
        let _ = writeln!(
            out,
            "| ratio reaction / {name} | {:.2}× | {:.2}× | {:.2}× | |",
            ratio(reaction, floor, 50.0),
            ratio(reaction, floor, 95.0),
            ratio(reaction, floor, 99.0)
        );
    }
    if !l.traces.is_empty() {
        let _ = writeln!(
            out,
            "\nWhere a reaction's time goes ({} of the samples traced in the API server's audit log; each stage's \
             own percentiles):\n\n| stage | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|---|",
            l.traces.len()
        );
        type Stage = fn(&crate::latency::ReactionTrace) -> Duration;
        let stages: [(&str, Stage); 5] = [
            ("the spec patch in the API server", |t| t.spec_patch),
            ("spec patch done → the operator's ConfigMap apply arrives (watch delivery, reconcile up to it)", |t| t.to_apply),
            ("the ConfigMap apply in the API server", |t| t.apply),
            ("ConfigMap applied → the status write arrives (CONFIG SET and its check, the observation)", |t| t.passes),
            ("the status write in the API server", |t| t.status),
        ];
        for (what, stage) in stages {
            let samples: Vec<Duration> = l.traces.iter().map(stage).collect();
            let _ = writeln!(
                out,
                "| {what} | {} | {} | {} | {} |",
                ms(percentile(&samples, 50.0)),
                ms(percentile(&samples, 95.0)),
                ms(percentile(&samples, 99.0)),
                ms(percentile(&samples, 100.0))
            );
        }
    }
    if l.early_events > 0 {
        let _ = writeln!(
            out,
            "\n{} watch events arrived before the patch response (recorded as 0 ms from the response).",
            l.early_events
        );
    }
    out.push('\n');
}

fn convergence_section(out: &mut String, sizes: &[SizeResult]) {
    let _ = writeln!(
        out,
        "### Convergence (seconds since the first create)\n\n\
         | N | all created | all StatefulSets exist | all pods Ready | all StatefulSets ready | **all Running + Ready** | operator: create → StatefulSet p50 / p99 | controllers: StatefulSet → ready p50 / p99 | operator: StatefulSet ready → Running p50 / p99 | reconciles (failed) | time in reconciles | avg reconciles in flight | operator CPU s |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in sizes {
        let m = &r.milestones;
        let pair =
            |v: &[Duration]| format!("{} / {}", s(percentile(v, 50.0)), s(percentile(v, 99.0)));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | **{}** | {} | {} | {} | {:.0} ({:.0}) | {:.2} s | {:.2} | {:.2} |",
            label(r),
            s(m.created),
            s(m.statefulsets),
            s(m.pods_ready),
            s(m.statefulsets_ready),
            s(m.running),
            pair(&m.create_to_statefulset),
            pair(&m.statefulset_to_ready),
            pair(&m.ready_to_running),
            r.reconciles,
            r.failed_reconciles,
            r.reconcile_seconds,
            r.reconcile_seconds / m.running.as_secs_f64().max(1e-9),
            r.converge_cpu_seconds,
        );
    }
    out.push('\n');
}

fn cost_section(out: &mut String, sizes: &[SizeResult]) {
    let _ = writeln!(
        out,
        "### API cost (operator requests from the audit log)\n\n\
         | N | requests / instance to converge | get | list | watch | create | patch | update | delete | object writes / instance | Events / instance | write ratio (min {MINIMUM_WRITES_PER_INSTANCE} + 1 per pod) | idle window: reconciles / writes / Events / reads | restart: reconciles / writes / Events / reads |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in sizes {
        let c = &r.converge_requests;
        let reads =
            |c: &crate::audit::RequestCounts| c.verb("get") + c.verb("list") + c.verb("watch");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} / {} / {} / {} | {} / {} / {} / {} |",
            label(r),
            per(c.total(), r.n),
            c.verb("get"),
            c.verb("list"),
            c.verb("watch"),
            c.verb("create"),
            c.verb("patch"),
            c.verb("update"),
            c.verb("delete"),
            per(c.object_writes(), r.n),
            per(c.event_writes(), r.n),
            write_ratio(r),
            r.idle_reconciles,
            r.idle_requests.object_writes(),
            r.idle_requests.event_writes(),
            reads(&r.idle_requests),
            r.restart_reconciles,
            r.restart_requests.object_writes(),
            r.restart_requests.event_writes(),
            reads(&r.restart_requests),
        );
    }
    if let Some(largest) = sizes.iter().max_by_key(|r| r.n) {
        let _ = writeln!(
            out,
            "\nConverge requests of N={} by verb and resource (per instance):\n\n| request | count | per instance |\n|---|---|---|",
            largest.n
        );
        for (what, count) in largest.converge_requests.breakdown() {
            let _ = writeln!(out, "| {what} | {count} | {} |", per(count, largest.n));
        }
    }
    // Whether the API server or the operator sets the pace: the server's load from every client, and how long
    // it took over each of the operator's requests (received → response complete, from the audit log).
    let _ = writeln!(
        out,
        "\nThe API server while converging (from the audit log; requests but watches):\n\n\
         | N | requests of every client | per second | the operator's requests | their time in the API server p50 / p99 / max ms |\n\
         |---|---|---|---|---|"
    );
    for r in sizes {
        let c = &r.converge_requests;
        let seconds = r.milestones.running.as_secs_f64().max(1e-9);
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} / {} / {} |",
            label(r),
            c.all_clients,
            c.all_clients as f64 / seconds,
            c.latencies.len(),
            ms(percentile(&c.latencies, 50.0)),
            ms(percentile(&c.latencies, 99.0)),
            ms(percentile(&c.latencies, 100.0)),
        );
    }
    out.push('\n');
}

fn observations_section(out: &mut String, sizes: &[SizeResult]) {
    let mut lines = Vec::new();
    for r in sizes {
        if !r.restart_complete {
            lines.push(format!(
                "- N={}: the restarted operator finished only {} reconciles for {} instances (expected at least {}).",
                r.n, r.restart_reconciles, r.n, r.n
            ));
        }
        if !r.stopped_on_sigterm {
            lines.push(format!(
                "- N={}: the converging operator did not exit within 10 s of SIGTERM and was killed.",
                r.n
            ));
        }
        if !r.restarted_stopped_on_sigterm {
            lines.push(format!(
                "- N={}: the restarted operator did not exit within 10 s of SIGTERM and was killed.",
                r.n
            ));
        }
    }
    if !lines.is_empty() {
        let _ = writeln!(out, "### Observations\n\n{}\n", lines.join("\n"));
    }
}

fn footprint_section(out: &mut String, sizes: &[SizeResult]) {
    let _ = writeln!(
        out,
        "### Footprint (operator process, /proc)\n\n\
         | N | RSS after converge + idle window MiB | peak RSS (VmHWM) MiB | CPU s (converge + idle, process total) | idle CPU % of one core | restarted: RSS MiB | restarted: peak MiB | restarted: CPU s |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for r in sizes {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {:.2} | {} | {} | {:.2} |",
            label(r),
            mib(r.footprint.rss_kib),
            mib(r.footprint.peak_rss_kib),
            r.footprint.cpu_seconds,
            idle_cpu_percent(r),
            mib(r.restart_footprint.rss_kib),
            mib(r.restart_footprint.peak_rss_kib),
            r.restart_footprint.cpu_seconds,
        );
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&samples, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
