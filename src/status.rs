//! Turning the phase engine's decision into the instance's status.

use redis_fsm::{conditions, Decision, Phase, RolloutStatus};

use crate::api::RedisInstanceStatus;

/// The status to write for a decision, keeping the previous status's history and condition times.
/// Equal inputs give an equal status, so a converged instance never needs a status write.
pub fn next_status(
    previous: Option<&RedisInstanceStatus>,
    decision: &Decision,
    generation: i64,
    rollout: Option<&RolloutStatus>,
    now: &str,
) -> RedisInstanceStatus {
    let previous_conditions = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let mut history = previous.map(|s| s.history.clone()).unwrap_or_default();
    if let Some(transition) = &decision.transition {
        history.record(transition.clone());
    }
    let ready = decision.phase == Phase::Running;
    RedisInstanceStatus {
        status: decision.phase,
        ready: if ready { "True" } else { "False" }.to_string(),
        reason: decision.reason.to_string(),
        last_condition_message: decision.message.clone(),
        observed_generation: Some(generation),
        replicas: rollout.map_or(0, |r| r.replicas),
        ready_replicas: rollout.map_or(0, |r| r.ready_replicas),
        updated_replicas: rollout.map_or(0, |r| r.updated_replicas),
        conditions: conditions(previous_conditions, decision, generation, now),
        history,
        // The topology fields are the reconciler's to change (after a topology decision); every other
        // status write keeps them.
        current_primary: previous.and_then(|s| s.current_primary.clone()),
        target_primary: previous.and_then(|s| s.target_primary.clone()),
        primary_failing_since: previous.and_then(|s| s.primary_failing_since.clone()),
        primary_replication_id: previous.and_then(|s| s.primary_replication_id.clone()),
        primary_replication_id2: previous.and_then(|s| s.primary_replication_id2.clone()),
        primary_second_offset: previous.and_then(|s| s.primary_second_offset),
        primary_run_id: previous.and_then(|s| s.primary_run_id.clone()),
        switchover: previous.and_then(|s| s.switchover.clone()),
        switchover_retry_at: previous.and_then(|s| s.switchover_retry_at.clone()),
        // The authentication pass's (see `reconciler::auth`); other writes keep it.
        auth: previous.and_then(|s| s.auth.clone()),
        // The TLS pass's (see `reconciler::tls`); other writes keep it.
        tls: previous.and_then(|s| s.tls.clone()),
        pods: previous.map(|s| s.pods.clone()).unwrap_or_default(),
    }
}

/// The current time as the API server writes it (RFC 3339, seconds).
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use redis_fsm::{step, Observation};

    use super::*;

    fn running_observation() -> Observation {
        Observation {
            generation: 1,
            spec_replicas: 2,
            statefulset: Some(RolloutStatus {
                generation: 1,
                observed_generation: Some(1),
                replicas: 2,
                ready_replicas: 2,
                updated_replicas: 2,
                current_revision: Some("r1".into()),
                update_revision: Some("r1".into()),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn converged_status_is_stable() {
        let obs = running_observation();
        let first = step(Phase::Pending, &obs, "2026-01-01T00:00:00Z");
        let s1 = next_status(
            None,
            &first,
            1,
            obs.statefulset.as_ref(),
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(s1.status, Phase::Running);
        assert_eq!(s1.ready, "True");
        assert_eq!(s1.history.len(), 1);
        let again = step(s1.status, &obs, "2026-01-01T00:05:00Z");
        let s2 = next_status(
            Some(&s1),
            &again,
            1,
            obs.statefulset.as_ref(),
            "2026-01-01T00:05:00Z",
        );
        assert_eq!(s1, s2, "a repeated observation must not change the status");
    }

    #[test]
    fn a_phase_change_keeps_the_recorded_topology() {
        let obs = running_observation();
        let decision = step(Phase::Pending, &obs, "t");
        let previous = RedisInstanceStatus {
            current_primary: Some("c-1".into()),
            target_primary: Some("Pending".into()),
            primary_run_id: Some("run".into()),
            ..Default::default()
        };
        let next = next_status(Some(&previous), &decision, 1, obs.statefulset.as_ref(), "t");
        assert_eq!(next.current_primary.as_deref(), Some("c-1"));
        assert_eq!(next.target_primary.as_deref(), Some("Pending"));
        assert_eq!(next.primary_run_id.as_deref(), Some("run"));
    }

    #[test]
    fn counts_come_from_the_statefulset() {
        let obs = running_observation();
        let decision = step(Phase::Unknown, &obs, "2026-01-01T00:00:00Z");
        let status = next_status(None, &decision, 1, obs.statefulset.as_ref(), "t");
        assert_eq!(
            (
                status.replicas,
                status.ready_replicas,
                status.updated_replicas
            ),
            (2, 2, 2)
        );
        assert_eq!(status.observed_generation, Some(1));
    }

    #[test]
    fn now_is_rfc3339_seconds() {
        let now = now();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.ends_with('Z'));
    }
}
