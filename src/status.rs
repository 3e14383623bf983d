//! Turning the phase engine's decision into the instance's status.

use redis_fsm::{conditions, Condition, Decision, Phase, RolloutStatus};

use crate::api::{RedisInstanceSpec, RedisInstanceStatus, ServiceType};

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
        selector: previous.map(|s| s.selector.clone()).unwrap_or_default(),
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
        // The backup pass's (see `backup::pass`); other writes keep it.
        backup: previous.and_then(|s| s.backup.clone()),
        // Recorded once by the restore (see `backup::restore`); kept ever after.
        restore: previous.and_then(|s| s.restore.clone()),
        pods: previous.map(|s| s.pods.clone()).unwrap_or_default(),
    }
}

/// The condition type that warns of a client Service reachable from outside the cluster without TLS.
pub const EXPOSED_WITHOUT_TLS: &str = "ExposedWithoutTLS";

/// The Services of `spec` that reach the pods from outside the cluster (`NodePort` or `LoadBalancer`)
/// while the servers speak plain text, as `NAME (Type)`; empty with TLS on or with ClusterIP Services only.
pub fn plain_text_exposure(instance: &str, spec: &RedisInstanceSpec) -> Vec<String> {
    if spec.tls.is_some() {
        return Vec::new();
    }
    let service = &spec.service;
    let replicas = service
        .replicas
        .as_ref()
        .and_then(|r| r.type_)
        .unwrap_or(service.type_);
    let mut exposed = Vec::new();
    for (name, type_) in [
        (instance.to_string(), service.type_),
        (crate::names::replicas_service_name(instance), replicas),
    ] {
        if type_ != ServiceType::ClusterIP {
            exposed.push(format!("{name} ({})", type_.as_str()));
        }
    }
    exposed
}

/// The `ExposedWithoutTLS` condition (status `True`) while a client Service of `instance` reaches the pods
/// from outside the cluster in plain text, `None` otherwise (the condition is then removed). Its
/// `lastTransitionTime` is kept from `previous`.
pub fn exposure_condition(
    instance: &str,
    spec: &RedisInstanceSpec,
    previous: &[Condition],
    generation: i64,
    now: &str,
) -> Option<Condition> {
    let exposed = plain_text_exposure(instance, spec);
    if exposed.is_empty() {
        return None;
    }
    let credentials = if spec.auth.enabled {
        "passwords and data"
    } else {
        "data (and authentication is off)"
    };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == EXPOSED_WITHOUT_TLS && c.status == "True")
        .map_or_else(|| now.to_owned(), |c| c.last_transition_time.clone());
    Some(Condition {
        type_: EXPOSED_WITHOUT_TLS.to_owned(),
        status: "True".to_owned(),
        reason: EXPOSED_WITHOUT_TLS.to_owned(),
        message: format!(
            "{} reach{} Redis from outside the cluster without TLS: {credentials} cross the network in \
             clear text; set spec.tls, or use a ClusterIP Service",
            exposed.join(" and "),
            if exposed.len() == 1 { "es" } else { "" }
        ),
        last_transition_time,
        observed_generation: Some(generation),
    })
}

/// A time as the API server writes it (RFC 3339, seconds).
pub fn rfc3339(time: k8s_openapi::jiff::Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
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
    fn a_plain_text_service_outside_the_cluster_is_warned_of_until_tls_or_cluster_ip() {
        let mut spec = RedisInstanceSpec::default();
        assert_eq!(exposure_condition("c", &spec, &[], 1, "t0"), None);
        spec.service.type_ = ServiceType::NodePort;
        let first = exposure_condition("c", &spec, &[], 1, "t0").expect("a warning");
        assert_eq!(
            (first.type_.as_str(), first.status.as_str()),
            (EXPOSED_WITHOUT_TLS, "True")
        );
        // The read-only Service follows the type unless it says otherwise.
        assert!(
            first
                .message
                .starts_with("c (NodePort) and c-replicas (NodePort) reach Redis"),
            "{}",
            first.message
        );
        assert!(
            first.message.contains("passwords and data"),
            "{}",
            first.message
        );
        // The time of the first warning stays.
        let again = exposure_condition("c", &spec, std::slice::from_ref(&first), 2, "t1");
        assert_eq!(again.unwrap().last_transition_time, "t0");
        // Only the read-only Service outside.
        spec.service.type_ = ServiceType::ClusterIP;
        spec.service.replicas = Some(crate::api::ReplicasServiceExposure {
            type_: Some(ServiceType::LoadBalancer),
            ..Default::default()
        });
        let replicas = exposure_condition("c", &spec, &[], 1, "t").unwrap();
        assert!(
            replicas
                .message
                .starts_with("c-replicas (LoadBalancer) reaches"),
            "{}",
            replicas.message
        );
        spec.tls = Some(crate::api::TlsSpec {
            secret_name: "c-tls".into(),
            client_auth: Default::default(),
        });
        assert_eq!(exposure_condition("c", &spec, &[], 1, "t"), None);
    }

    #[test]
    fn now_is_rfc3339_seconds() {
        let now = rfc3339(k8s_openapi::jiff::Timestamp::now());
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.ends_with('Z'));
    }
}
