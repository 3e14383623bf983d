//! Prometheus metrics of the operator, served at `/metrics`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
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
struct InstanceLabels {
    namespace: String,
    name: String,
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
    api_errors: Family<ApiErrorLabels, Counter>,
    failovers: Family<InstanceLabels, Counter>,
    switchovers: Family<InstanceLabels, Counter>,
    backup_overdue: Family<InstanceLabels, Gauge>,
    archive_caught_up: Family<InstanceLabels, Gauge>,
    leader: Gauge,
    /// The instance cache the phase gauges are read from at each scrape ([`Metrics::follow_instances`]).
    phase_source: PhaseSource,
}

/// Where [`Phases`] reads the instances from: the controller's cache while it runs, else nothing.
type PhaseSource = Arc<Mutex<Option<Store<RedisInstance>>>>;

/// `redis_operator_instances` and `redis_operator_instance_phase`, written from the instance cache at each
/// scrape: no series is kept between scrapes, so a deleted instance's are gone with it, and a reconcile costs
/// nothing here (rebuilding the series after every reconcile was an O(N) pass, 33 a second at N = 1000 idle).
struct Phases {
    source: PhaseSource,
}

impl std::fmt::Debug for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Phases")
    }
}

impl Collector for Phases {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let source = self
            .source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // Not following (a standby, or before the controller starts): the families are described, with no
        // series (nothing is known). Following, every phase is counted, zero when empty.
        let following = source.is_some();
        let instances: Vec<_> = source.map(|store| store.state()).unwrap_or_default();
        let mut family = encoder.encode_descriptor(
            "instances",
            "RedisInstances by current phase",
            None,
            MetricType::Gauge,
        )?;
        if following {
            for phase in Phase::ALL {
                let count = instances.iter().filter(|ri| ri.phase() == phase).count();
                let labels = [("phase", phase.as_str())];
                ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "instance_phase",
            "Phase of each RedisInstance: 1 for its current phase, 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for ri in &instances {
            let current = ri.phase();
            for phase in Phase::ALL {
                let labels = [
                    (
                        "namespace",
                        ri.metadata.namespace.as_deref().unwrap_or_default(),
                    ),
                    ("name", ri.metadata.name.as_deref().unwrap_or_default()),
                    ("phase", phase.as_str()),
                ];
                ConstGauge::new(i64::from(phase == current))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
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
        let api_errors = Family::<ApiErrorLabels, Counter>::default();
        registry.register(
            "api_errors",
            "Failed API requests by operation and HTTP status code",
            api_errors.clone(),
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
        let phase_source = PhaseSource::default();
        registry.register_collector(Box::new(Phases {
            source: phase_source.clone(),
        }));
        Self {
            registry,
            reconciles,
            reconcile_duration,
            transitions,
            api_errors,
            failovers,
            switchovers,
            backup_overdue,
            archive_caught_up,
            leader,
            phase_source,
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

    /// Drops the per-instance series of `namespace/name` (its failovers, switchovers and backup and archive
    /// gauges), once the instance is deleted: its phase series go with it from the cache.
    pub fn forget_instance(&self, namespace: &str, name: &str) {
        let labels = InstanceLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        self.failovers.remove(&labels);
        self.switchovers.remove(&labels);
        self.backup_overdue.remove(&labels);
        self.archive_caught_up.remove(&labels);
    }

    /// Reads the phase gauges from `instances` at every scrape from now on; `None` stops (the phase families
    /// then have no series).
    pub fn follow_instances(&self, instances: Option<Store<RedisInstance>>) {
        *self.phase_source.lock().unwrap_or_else(|p| p.into_inner()) = instances;
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RedisInstanceSpec, RedisInstanceStatus};
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    fn instance(name: &str, phase: Option<Phase>) -> RedisInstance {
        let mut ri = RedisInstance::new(name, RedisInstanceSpec::default());
        ri.metadata.namespace = Some("ns".into());
        ri.status = phase.map(|status| RedisInstanceStatus {
            status,
            ..Default::default()
        });
        ri
    }

    /// Metrics following a cache of `instances`, and the cache's writer.
    fn following(instances: &[RedisInstance]) -> (Metrics, Writer<RedisInstance>) {
        let (store, mut writer) = kube::runtime::reflector::store();
        for ri in instances {
            writer.apply_watcher_event(&Event::Apply(ri.clone()));
        }
        let metrics = Metrics::default();
        metrics.follow_instances(Some(store));
        (metrics, writer)
    }

    fn phase_series(name: &str, phase: &str, value: u8) -> String {
        format!(
            "redis_operator_instance_phase{{namespace=\"ns\",name=\"{name}\",phase=\"{phase}\"}} {value}"
        )
    }

    #[test]
    fn encodes_every_family() {
        let (metrics, _writer) = following(&[
            instance("a", Some(Phase::Running)),
            instance("b", Some(Phase::Running)),
            instance("c", Some(Phase::Failed)),
        ]);
        metrics.record_reconcile(None);
        metrics.record_transition(Phase::Pending, Phase::Running);
        drop(metrics.reconcile_timer());
        let text = metrics.encode();
        assert!(
            text.contains("redis_operator_reconciles_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(text
            .contains("redis_operator_phase_transitions_total{from=\"Pending\",to=\"Running\"} 1"));
        assert!(
            text.contains("redis_operator_instances{phase=\"Running\"} 2"),
            "{text}"
        );
        assert!(text.contains("redis_operator_instances{phase=\"Unknown\"} 0"));
        assert!(text.contains("redis_operator_reconcile_duration_seconds_count 1"));
    }

    /// Every family registered is in [`EXPORTED`], and nothing else is: alert rules are checked against it.
    #[test]
    fn exported_lists_every_family() {
        let (metrics, _writer) = following(&[instance("a", Some(Phase::Running))]);
        metrics.record_reconcile(None);
        metrics.record_transition(Phase::Pending, Phase::Running);
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
        let (metrics, mut writer) = following(&[
            instance("a", Some(Phase::Updating)),
            instance("b", Some(Phase::Running)),
        ]);
        metrics.record_topology_event("ns", "a", EventReason::FailoverStarted);
        metrics.record_topology_event("ns", "a", EventReason::FailoverStarted);
        metrics.record_topology_event("ns", "a", EventReason::SwitchoverStarted);
        metrics.record_topology_event("ns", "a", redis_fsm::Reason::PrimaryConfirmed.into());
        let text = metrics.encode();
        assert!(text.contains(&phase_series("a", "Updating", 1)), "{text}");
        assert!(text.contains(&phase_series("a", "Running", 0)), "{text}");
        assert!(text.contains(&phase_series("b", "Running", 1)), "{text}");
        assert!(text.contains("redis_operator_failovers_total{namespace=\"ns\",name=\"a\"} 2"));
        assert!(text.contains("redis_operator_switchovers_total{namespace=\"ns\",name=\"a\"} 1"));
        metrics.set_backup_overdue("ns", "a", Some(true));
        assert!(metrics
            .encode()
            .contains("redis_operator_backup_overdue{namespace=\"ns\",name=\"a\"} 1"));
        metrics.set_backup_overdue("ns", "a", None);
        assert!(!metrics.encode().contains("redis_operator_backup_overdue{"));

        // `a` is deleted: its cleanup forgets its counters, its phase series leave with it from the cache;
        // `b`'s stay.
        metrics.set_backup_overdue("ns", "a", Some(false));
        metrics.forget_instance("ns", "a");
        writer.apply_watcher_event(&Event::Delete(instance("a", Some(Phase::Updating))));
        let text = metrics.encode();
        assert!(!text.contains("name=\"a\""), "{text}");
        assert!(text.contains(&phase_series("b", "Running", 1)), "{text}");
        assert!(text.contains("redis_operator_instances{phase=\"Updating\"} 0"));
    }

    /// The phase gauges are read from the followed cache at each scrape: a phase set after the last scrape shows
    /// in the next, and every phase is counted even with no instance; not following (a standby), the families have
    /// no series.
    #[test]
    fn phases_are_read_from_the_followed_cache_at_each_scrape() {
        let (metrics, mut writer) =
            following(&[instance("a", None), instance("b", Some(Phase::Running))]);
        let text = metrics.encode();
        assert!(text.contains(&phase_series("a", "Unknown", 1)), "{text}");
        assert!(text.contains(&phase_series("b", "Running", 1)), "{text}");
        assert!(
            text.contains("redis_operator_instances{phase=\"Running\"} 1"),
            "{text}"
        );

        writer.apply_watcher_event(&Event::Apply(instance("a", Some(Phase::Failed))));
        writer.apply_watcher_event(&Event::Delete(instance("b", Some(Phase::Running))));
        let text = metrics.encode();
        assert!(text.contains(&phase_series("a", "Failed", 1)), "{text}");
        assert!(text.contains(&phase_series("a", "Unknown", 0)), "{text}");
        assert!(!text.contains("name=\"b\""), "{text}");
        assert!(
            text.contains("redis_operator_instances{phase=\"Running\"} 0"),
            "{text}"
        );

        writer.apply_watcher_event(&Event::Delete(instance("a", Some(Phase::Failed))));
        let text = metrics.encode();
        assert!(
            text.contains("redis_operator_instances{phase=\"Failed\"} 0"),
            "{text}"
        );
        assert!(!text.contains("redis_operator_instance_phase{"), "{text}");

        metrics.follow_instances(None);
        let text = metrics.encode();
        assert!(
            text.contains("# TYPE redis_operator_instance_phase gauge"),
            "{text}"
        );
        assert!(!text.contains("redis_operator_instance_phase{"), "{text}");
        assert!(!text.contains("redis_operator_instances{"), "{text}");
    }
}
