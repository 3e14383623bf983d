//! Prometheus metrics of the operator, served at `/metrics`.

use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use redis_fsm::Phase;

use crate::error::Error;

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
        Self {
            registry,
            reconciles,
            reconcile_duration,
            transitions,
            instances,
            api_errors,
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

    /// Sets the number of instances per phase (every phase is reported, zero when empty).
    pub fn set_phases(&self, phases: impl Iterator<Item = Phase>) {
        let mut counts = [0i64; Phase::ALL.len()];
        for phase in phases {
            if let Some(i) = Phase::ALL.iter().position(|p| *p == phase) {
                counts[i] += 1;
            }
        }
        for (phase, count) in Phase::ALL.iter().zip(counts) {
            let labels = PhaseLabels {
                phase: phase.to_string(),
            };
            self.instances.get_or_create(&labels).set(count);
        }
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

    #[test]
    fn encodes_every_family() {
        let metrics = Metrics::default();
        metrics.record_reconcile(None);
        metrics.record_transition(Phase::Pending, Phase::Running);
        metrics.set_phases([Phase::Running, Phase::Running, Phase::Failed].into_iter());
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
}
