//! Prometheus metrics of the operator, served at `/metrics`.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use kube::runtime::reflector::Store;
use kube::ResourceExt;
use redis_fsm::Phase;

use crate::api::RedisInstance;
use crate::error::Error;
use crate::events::EventReason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    from: String,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstancePhaseLabels {
    namespace: String,
    name: String,
    phase: String,
}

/// The names of every metric family the operator exports (after the `redis_operator_` prefix and with the
/// `_total` suffix of counters), for checks of what dashboards and alert rules may name.
pub const EXPORTED: &[&str] = &[
    "redis_operator_reconciles_total",
    "redis_operator_reconcile_duration_seconds",
    "redis_operator_phase_transitions_total",
    "redis_operator_instances",
    "redis_operator_api_errors_total",
    "redis_operator_instance_phase",
    "redis_operator_failovers_total",
    "redis_operator_switchovers_total",
    "redis_operator_backup_overdue",
    "redis_operator_archive_caught_up_timestamp_seconds",
    "redis_operator_redis_connections_opened_total",
    "redis_operator_redis_commands_total",
    "redis_operator_redis_read_bytes_total",
    "redis_operator_redis_idle_connections",
    "redis_operator_leader",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiErrorLabels {
    operation: String,
    code: String,
}

/// The operator's metrics and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Histogram,
    transitions: Family<TransitionLabels, Counter>,
    instances: Family<PhaseLabels, Gauge>,
    api_errors: Family<ApiErrorLabels, Counter>,
    instance_phase: Family<InstancePhaseLabels, Gauge>,
    failovers: Family<InstanceLabels, Counter>,
    switchovers: Family<InstanceLabels, Counter>,
    backup_overdue: Family<InstanceLabels, Gauge>,
    archive_caught_up: Family<InstanceLabels, Gauge>,
    leader: Gauge,
    /// The instances (namespace, name) with series, so those of a deleted instance can be removed.
    known: Mutex<BTreeSet<(String, String)>>,
    /// The instance cache the phase gauges are read from at each scrape ([`Metrics::follow_instances`]).
    phase_source: Mutex<Option<Store<RedisInstance>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("redis_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by result (ok or the error kind)",
            reconciles.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            reconcile_duration.clone(),
        );
        let transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "phase_transitions",
            "Phase transitions written to status, by from and to phase",
            transitions.clone(),
        );
        let instances = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "instances",
            "RedisInstances by current phase",
            instances.clone(),
        );
        let api_errors = Family::<ApiErrorLabels, Counter>::default();
        registry.register(
            "api_errors",
            "Failed API requests by operation and HTTP status code",
            api_errors.clone(),
        );
        let instance_phase = Family::<InstancePhaseLabels, Gauge>::default();
        registry.register(
            "instance_phase",
            "Phase of each RedisInstance: 1 for its current phase, 0 for the others",
            instance_phase.clone(),
        );
        let failovers = Family::<InstanceLabels, Counter>::default();
        registry.register(
            "failovers",
            "Failovers started, per RedisInstance",
            failovers.clone(),
        );
        let switchovers = Family::<InstanceLabels, Counter>::default();
        registry.register(
            "switchovers",
            "Switchovers started, per RedisInstance",
            switchovers.clone(),
        );
        let backup_overdue = Family::<InstanceLabels, Gauge>::default();
        registry.register(
            "backup_overdue",
            "1 when the newest completed backup of a RedisInstance with a backup schedule is older than two of its \
             intervals, 0 when it is not (no series without a schedule)",
            backup_overdue.clone(),
        );
        let archive_caught_up = Family::<InstanceLabels, Gauge>::default();
        registry.register(
            "archive_caught_up_timestamp_seconds",
            "The last time (Unix seconds) the archive of a RedisInstance with spec.backup.archive held every write its \
             archiver had received (no series without an archiver running in this process)",
            archive_caught_up.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this process runs the controllers (it holds the lease, or leader election is off), else 0 \
             (a standby)",
            leader.clone(),
        );
        registry.register(
            "redis_connections_opened",
            "Connections the operator opened to Redis servers (kept connections taken again are not counted)",
            crate::redis::cost::CONNECTIONS.clone(),
        );
        registry.register(
            "redis_commands",
            "Commands the operator sent to Redis servers, logins included",
            crate::redis::cost::COMMANDS.clone(),
        );
        registry.register(
            "redis_read_bytes",
            "Bytes the operator read from Redis servers",
            crate::redis::cost::READ_BYTES.clone(),
        );
        registry.register(
            "redis_idle_connections",
            "Connections to Redis servers kept open for the next pass",
            crate::redis::pool::IDLE_GAUGE.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_duration,
            transitions,
            instances,
            api_errors,
            instance_phase,
            failovers,
            switchovers,
            backup_overdue,
            archive_caught_up,
            leader,
            known: Mutex::default(),
            phase_source: Mutex::default(),
        }
    }
}

/// Records the duration of a reconcile when dropped.
pub struct ReconcileTimer<'a> {
    histogram: &'a Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    /// Starts timing a reconcile.
    pub fn reconcile_timer(&self) -> ReconcileTimer<'_> {
        ReconcileTimer {
            histogram: &self.reconcile_duration,
            start: Instant::now(),
        }
    }

    /// Whether this process runs the controllers now (`redis_operator_leader`).
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Counts a finished reconcile.
    pub fn record_reconcile(&self, error: Option<&Error>) {
        let result = error.map_or("ok", Error::metric_label).to_string();
        self.reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Counts a phase transition.
    pub fn record_transition(&self, from: Phase, to: Phase) {
        let labels = TransitionLabels {
            from: from.to_string(),
            to: to.to_string(),
        };
        self.transitions.get_or_create(&labels).inc();
    }

    /// Counts a failed API request.
    pub fn record_api_error(&self, operation: &str, error: &kube::Error) {
        let code = match error {
            kube::Error::Api(status) => status.code.to_string(),
            _ => "transport".to_string(),
        };
        let labels = ApiErrorLabels {
            operation: operation.to_string(),
            code,
        };
        self.api_errors.get_or_create(&labels).inc();
    }

    /// Counts a failover or switchover from the reason of the topology Event reporting its start (other
    /// reasons are not counted).
    pub fn record_topology_event(&self, namespace: &str, name: &str, reason: EventReason) {
        let family = match reason {
            EventReason::FailoverStarted => &self.failovers,
            EventReason::SwitchoverStarted => &self.switchovers,
            _ => return,
        };
        let labels = InstanceLabels {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        family.get_or_create(&labels).inc();
    }

    /// Sets whether the backups of instance `namespace/name` are overdue; `None` (no schedule) removes the series.
    pub fn set_backup_overdue(&self, namespace: &str, name: &str, overdue: Option<bool>) {
        let labels = InstanceLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        match overdue {
            Some(overdue) => {
                self.backup_overdue
                    .get_or_create(&labels)
                    .set(i64::from(overdue));
            }
            None => {
                self.backup_overdue.remove(&labels);
            }
        }
    }

    /// Sets when the archive of an instance last held every write received (`None`: no archiver).
    pub fn set_archive_caught_up(&self, namespace: &str, name: &str, at: Option<i64>) {
        let labels = InstanceLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        match at {
            Some(at) => {
                self.archive_caught_up.get_or_create(&labels).set(at);
            }
            None => {
                self.archive_caught_up.remove(&labels);
            }
        }
    }

    /// Sets the phase gauges from every instance as (namespace, name, phase): the number of instances per phase
    /// (every phase is reported, zero when empty) and each instance's phase. The series of instances no longer
    /// listed (deleted) are removed, counters included.
    pub fn set_phases(&self, instances: impl Iterator<Item = (String, String, Phase)>) {
        let mut counts = [0i64; Phase::ALL.len()];
        let mut present = BTreeSet::new();
        for (namespace, name, phase) in instances {
            if let Some(i) = Phase::ALL.iter().position(|p| *p == phase) {
                counts[i] += 1;
            }
            for candidate in Phase::ALL {
                let labels = InstancePhaseLabels {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    phase: candidate.to_string(),
                };
                self.instance_phase
                    .get_or_create(&labels)
                    .set(i64::from(candidate == phase));
            }
            present.insert((namespace, name));
        }
        for (phase, count) in Phase::ALL.iter().zip(counts) {
            let labels = PhaseLabels {
                phase: phase.to_string(),
            };
            self.instances.get_or_create(&labels).set(count);
        }
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        for (namespace, name) in known.difference(&present) {
            for phase in Phase::ALL {
                self.instance_phase.remove(&InstancePhaseLabels {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    phase: phase.to_string(),
                });
            }
            let labels = InstanceLabels {
                namespace: namespace.clone(),
                name: name.clone(),
            };
            self.failovers.remove(&labels);
            self.switchovers.remove(&labels);
            self.backup_overdue.remove(&labels);
            self.archive_caught_up.remove(&labels);
        }
        *known = present;
    }

    /// Reads the phase gauges (and drops the series of deleted instances) from `instances` at every scrape from
    /// now on; `None` stops, leaving the last values. At each scrape, not after each reconcile: setting them means a
    /// series per phase for every instance, which after every reconcile cost an O(N) pass 33 times a second at
    /// N = 1000 (docs/benchmarks.md).
    pub fn follow_instances(&self, instances: Option<Store<RedisInstance>>) {
        *self.phase_source.lock().unwrap_or_else(|p| p.into_inner()) = instances;
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let source = self
            .phase_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(instances) = source {
            self.set_phases(instances.state().iter().map(|ri| {
                (
                    ri.namespace().unwrap_or_default(),
                    ri.name_any(),
                    ri.phase(),
                )
            }));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_family() {
        let metrics = Metrics::default();
        metrics.record_reconcile(None);
        metrics.record_transition(Phase::Pending, Phase::Running);
        let instance = |name: &str, phase| ("ns".to_string(), name.to_string(), phase);
        metrics.set_phases(
            [
                instance("a", Phase::Running),
                instance("b", Phase::Running),
                instance("c", Phase::Failed),
            ]
            .into_iter(),
        );
        drop(metrics.reconcile_timer());
        let text = metrics.encode();
        assert!(
            text.contains("redis_operator_reconciles_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(text
            .contains("redis_operator_phase_transitions_total{from=\"Pending\",to=\"Running\"} 1"));
        assert!(text.contains("redis_operator_instances{phase=\"Running\"} 2"));
        assert!(text.contains("redis_operator_instances{phase=\"Unknown\"} 0"));
        assert!(text.contains("redis_operator_reconcile_duration_seconds_count 1"));
    }

    /// Every family registered is in [`EXPORTED`], and nothing else is: alert rules are checked against it.
    #[test]
    fn exported_lists_every_family() {
        let metrics = Metrics::default();
        metrics.record_reconcile(None);
        metrics.record_transition(Phase::Pending, Phase::Running);
        metrics.set_phases([("ns".into(), "a".into(), Phase::Running)].into_iter());
        metrics.record_topology_event("ns", "a", EventReason::FailoverStarted);
        metrics.record_topology_event("ns", "a", EventReason::SwitchoverStarted);
        metrics.set_backup_overdue("ns", "a", Some(false));
        metrics.set_archive_caught_up("ns", "a", Some(1_796_000_000));
        metrics
            .api_errors
            .get_or_create(&ApiErrorLabels {
                operation: "get".into(),
                code: "500".into(),
            })
            .inc();
        let text = metrics.encode();
        let mut families: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|line| {
                let (name, kind) = line.split_once(' ')?;
                // The text format names a counter family without its `_total` suffix.
                Some(match kind {
                    "counter" => EXPORTED
                        .iter()
                        .copied()
                        .find(|e| e.strip_suffix("_total") == Some(name))
                        .unwrap_or(name),
                    _ => name,
                })
            })
            .collect();
        families.sort_unstable();
        let mut exported = EXPORTED.to_vec();
        exported.sort_unstable();
        assert_eq!(families, exported);
    }

    #[test]
    fn per_instance_phase_and_counters_go_with_the_instance() {
        let metrics = Metrics::default();
        let a = || ("ns".to_string(), "a".to_string(), Phase::Updating);
        let b = || ("ns".to_string(), "b".to_string(), Phase::Running);
        metrics.set_phases([a(), b()].into_iter());
        metrics.record_topology_event("ns", "a", EventReason::FailoverStarted);
        metrics.record_topology_event("ns", "a", EventReason::FailoverStarted);
        metrics.record_topology_event("ns", "a", EventReason::SwitchoverStarted);
        metrics.record_topology_event("ns", "a", redis_fsm::Reason::PrimaryConfirmed.into());
        let text = metrics.encode();
        let series = |name: &str, phase: &str| {
            format!("redis_operator_instance_phase{{namespace=\"ns\",name=\"{name}\",phase=\"{phase}\"}}")
        };
        assert!(
            text.contains(&format!("{} 1", series("a", "Updating"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 0", series("a", "Running"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 1", series("b", "Running"))),
            "{text}"
        );
        assert!(text.contains("redis_operator_failovers_total{namespace=\"ns\",name=\"a\"} 2"));
        assert!(text.contains("redis_operator_switchovers_total{namespace=\"ns\",name=\"a\"} 1"));
        metrics.set_backup_overdue("ns", "a", Some(true));
        assert!(metrics
            .encode()
            .contains("redis_operator_backup_overdue{namespace=\"ns\",name=\"a\"} 1"));
        metrics.set_backup_overdue("ns", "a", None);
        assert!(!metrics.encode().contains("redis_operator_backup_overdue{"));

        // `a` is deleted: its series go, `b`'s stay.
        metrics.set_phases([b()].into_iter());
        let text = metrics.encode();
        assert!(!text.contains("name=\"a\""), "{text}");
        assert!(
            text.contains(&format!("{} 1", series("b", "Running"))),
            "{text}"
        );
        assert!(text.contains("redis_operator_instances{phase=\"Updating\"} 0"));
    }

    /// Followed, the phase gauges are read from the instance cache at each scrape: a phase set after the last
    /// scrape shows in the next, and a deleted instance's series go.
    #[test]
    fn phases_are_read_from_the_followed_cache_at_each_scrape() {
        use crate::api::{RedisInstanceSpec, RedisInstanceStatus};
        use kube::runtime::watcher::Event;
        let instance = |name: &str, phase: Option<Phase>| {
            let mut ri = RedisInstance::new(name, RedisInstanceSpec::default());
            ri.metadata.namespace = Some("ns".into());
            ri.status = phase.map(|status| RedisInstanceStatus {
                status,
                ..Default::default()
            });
            ri
        };
        let (store, mut writer) = kube::runtime::reflector::store();
        let metrics = Metrics::default();
        metrics.follow_instances(Some(store));
        let series = |name: &str, phase: &str| {
            format!("redis_operator_instance_phase{{namespace=\"ns\",name=\"{name}\",phase=\"{phase}\"}} 1")
        };
        writer.apply_watcher_event(&Event::Apply(instance("a", None)));
        writer.apply_watcher_event(&Event::Apply(instance("b", Some(Phase::Running))));
        let text = metrics.encode();
        assert!(text.contains(&series("a", "Unknown")), "{text}");
        assert!(text.contains(&series("b", "Running")), "{text}");
        assert!(text.contains("redis_operator_instances{phase=\"Running\"} 1"), "{text}");

        writer.apply_watcher_event(&Event::Apply(instance("a", Some(Phase::Failed))));
        writer.apply_watcher_event(&Event::Delete(instance("b", Some(Phase::Running))));
        let text = metrics.encode();
        assert!(text.contains(&series("a", "Failed")), "{text}");
        assert!(!text.contains("name=\"b\""), "{text}");
        assert!(text.contains("redis_operator_instances{phase=\"Running\"} 0"), "{text}");
    }
}
