//! The standard conditions derived from a decision: one slot per type.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::decision::Decision;
use crate::phase::Phase;
use crate::reasons::Reason;

/// The condition types [`conditions`] maintains, in the order it returns them.
pub mod condition_types {
    /// True iff the phase is `Running`.
    pub const READY: &str = "Ready";
    /// True iff the phase is `Creating`, `Pending` or `Updating`.
    pub const PROGRESSING: &str = "Progressing";
    /// True iff the phase is `Failed`.
    pub const DEGRADED: &str = "Degraded";
    /// Every maintained type, in order.
    pub const ALL: [&str; 3] = [READY, PROGRESSING, DEGRADED];
    /// True iff a pod is the confirmed primary (recorded, answering as a master, no failover in flight).
    pub const PRIMARY_AVAILABLE: &str = "PrimaryAvailable";
    /// True iff there is a confirmed primary and every other pod is a linked, in-sync replica.
    pub const REPLICATION_HEALTHY: &str = "ReplicationHealthy";
    /// The types [`super::replication_conditions`] maintains, in order.
    pub const REPLICATION: [&str; 2] = [PRIMARY_AVAILABLE, REPLICATION_HEALTHY];
}

/// A Kubernetes-style status condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition type, one of [`condition_types::ALL`].
    #[serde(rename = "type")]
    pub type_: String,
    /// `"True"`, `"False"` or `"Unknown"`.
    pub status: String,
    /// A CamelCase reason.
    pub reason: String,
    /// A human message.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The RedisInstance generation this condition was computed for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("maximum" = crate::history::MAX_GENERATION))]
    pub observed_generation: Option<i64>,
}

/// Whether condition `type_` is true in `phase`.
pub(crate) fn holds_in(type_: &str, phase: Phase) -> bool {
    matches!(
        (type_, phase),
        (condition_types::READY, Phase::Running)
            | (
                condition_types::PROGRESSING,
                Phase::Creating | Phase::Pending | Phase::Updating
            )
            | (condition_types::DEGRADED, Phase::Failed)
    )
}

/// The status of condition `type_` in `phase`; everything is `"Unknown"` in [`Phase::Unknown`].
fn status_in(type_: &str, phase: Phase) -> &'static str {
    if phase == Phase::Unknown {
        "Unknown"
    } else if holds_in(type_, phase) {
        "True"
    } else {
        "False"
    }
}

/// The conditions after `decision`: exactly one per type, in the order of
/// [`condition_types::ALL`].
///
/// Reason and message come from the decision. `lastTransitionTime` is kept from `previous` unless
/// that condition's status changes (or it had none), so an unchanged status never rewrites the
/// time. Conditions of other types in `previous` are dropped.
pub fn conditions(
    previous: &[Condition],
    decision: &Decision,
    generation: i64,
    now: &str,
) -> Vec<Condition> {
    condition_types::ALL
        .iter()
        .map(|&type_| {
            condition(
                previous,
                type_,
                status_in(type_, decision.phase),
                decision.reason.to_string(),
                decision.message.clone(),
                generation,
                now,
            )
        })
        .collect()
}

/// Condition `type_` with `status`, keeping `lastTransitionTime` from `previous` unless the status
/// changes (or there was none).
fn condition(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason: String,
    message: String,
    generation: i64,
    now: &str,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_)
        .filter(|c| c.status == status)
        .map_or_else(|| now.to_owned(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason,
        message,
        last_transition_time,
        observed_generation: Some(generation),
    }
}

/// Every reason [`replication_conditions`] can give condition `type_` (one of
/// [`condition_types::REPLICATION`]); empty for any other type, whose reason is the phase's.
pub fn replication_reasons(type_: &str) -> &'static [Reason] {
    match type_ {
        condition_types::PRIMARY_AVAILABLE => &[
            Reason::PrimaryConfirmed,
            Reason::Failover,
            Reason::NoConfirmedPrimary,
        ],
        condition_types::REPLICATION_HEALTHY => {
            &[Reason::ReplicasInSync, Reason::ReplicasNotInSync]
        }
        _ => &[],
    }
}

/// What one topology pass found, for [`replication_conditions`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicationSummary<'a> {
    /// `spec.replicas`.
    pub replicas: i32,
    /// The pod carrying the primary role this pass (confirmed), if any.
    pub primary: Option<&'a str>,
    /// A failover in flight, as a sentence.
    pub failover: Option<&'a str>,
    /// What keeps pods from serving their role, as a sentence (see [`crate::replication_pending`]).
    pub pending: Option<&'a str>,
}

/// The replication conditions after a topology pass, in the order of
/// [`condition_types::REPLICATION`], keeping `lastTransitionTime` from `previous` while a
/// condition's status is unchanged (like [`conditions`]).
pub fn replication_conditions(
    previous: &[Condition],
    summary: &ReplicationSummary<'_>,
    generation: i64,
    now: &str,
) -> Vec<Condition> {
    let primary = match (summary.primary, summary.failover) {
        (Some(pod), _) => (
            true,
            Reason::PrimaryConfirmed,
            format!("{pod} is the primary"),
        ),
        (None, Some(failover)) => (false, Reason::Failover, failover.to_owned()),
        (None, None) => (
            false,
            Reason::NoConfirmedPrimary,
            summary
                .pending
                .unwrap_or("no pod is a confirmed primary")
                .to_owned(),
        ),
    };
    let healthy = match (summary.primary, summary.pending) {
        (Some(_), None) if summary.replicas <= 1 => (
            true,
            Reason::ReplicasInSync,
            "one standalone server; no replicas to keep in sync".to_owned(),
        ),
        (Some(_), None) => (
            true,
            Reason::ReplicasInSync,
            format!(
                "all {} replicas are linked to the primary and in sync",
                summary.replicas - 1
            ),
        ),
        (_, pending) => (
            false,
            Reason::ReplicasNotInSync,
            pending
                .or(summary.failover)
                .unwrap_or("no confirmed primary to replicate from")
                .to_owned(),
        ),
    };
    [
        (condition_types::PRIMARY_AVAILABLE, primary),
        (condition_types::REPLICATION_HEALTHY, healthy),
    ]
    .into_iter()
    .map(|(type_, (holds, reason, message))| {
        let status = if holds { "True" } else { "False" };
        condition(
            previous,
            type_,
            status,
            reason.to_string(),
            message,
            generation,
            now,
        )
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_type<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
        conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn replication_reasons_list_every_reason_the_conditions_carry() {
        let mut seen = std::collections::BTreeSet::new();
        for replicas in [1, 3] {
            for primary in [None, Some("cache-0")] {
                for failover in [None, Some("promoting cache-1")] {
                    for pending in [None, Some("cache-2 is syncing")] {
                        let summary = ReplicationSummary {
                            replicas,
                            primary,
                            failover,
                            pending,
                        };
                        for c in replication_conditions(&[], &summary, 1, "t") {
                            let reason = Reason::from_name(&c.reason).expect("a known reason");
                            assert!(
                                replication_reasons(&c.type_).contains(&reason),
                                "{reason} of {} not listed",
                                c.type_
                            );
                            seen.insert((c.type_, reason));
                        }
                    }
                }
            }
        }
        let listed: usize = condition_types::REPLICATION
            .iter()
            .map(|t| replication_reasons(t).len())
            .sum();
        assert_eq!(seen.len(), listed, "a listed reason is never given");
    }

    #[test]
    fn replication_conditions_follow_the_topology() {
        let steady = ReplicationSummary {
            replicas: 3,
            primary: Some("cache-0"),
            ..Default::default()
        };
        let first = replication_conditions(&[], &steady, 1, "t1");
        assert_eq!(
            first.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            condition_types::REPLICATION
        );
        let available = by_type(&first, condition_types::PRIMARY_AVAILABLE);
        assert_eq!(
            (available.status.as_str(), available.reason.as_str()),
            ("True", "PrimaryConfirmed")
        );
        let healthy = by_type(&first, condition_types::REPLICATION_HEALTHY);
        assert_eq!(
            healthy.message,
            "all 2 replicas are linked to the primary and in sync"
        );

        let failing = ReplicationSummary {
            replicas: 3,
            failover: Some("promoting cache-1"),
            pending: Some("replication: no confirmed primary yet"),
            ..Default::default()
        };
        let during = replication_conditions(&first, &failing, 1, "t2");
        let available = by_type(&during, condition_types::PRIMARY_AVAILABLE);
        assert_eq!(
            (available.status.as_str(), available.reason.as_str()),
            ("False", "Failover")
        );
        assert_eq!(available.last_transition_time, "t2");
        let healthy = by_type(&during, condition_types::REPLICATION_HEALTHY);
        assert_eq!(healthy.reason, "ReplicasNotInSync");
        assert_eq!(healthy.message, "replication: no confirmed primary yet");

        // Unchanged statuses keep their time.
        let again = replication_conditions(&during, &failing, 2, "t3");
        assert!(again.iter().all(|c| c.last_transition_time == "t2"));

        let standalone = ReplicationSummary {
            replicas: 1,
            primary: Some("cache-0"),
            ..Default::default()
        };
        let alone = replication_conditions(&[], &standalone, 1, "t");
        assert!(alone.iter().all(|c| c.status == "True"));
    }
}
