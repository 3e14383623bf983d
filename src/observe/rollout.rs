//! Reading what the phase engine needs out of the watch caches: StatefulSet rollout state and failing pods,
//! including pods the StatefulSet controller could not create.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Event, Pod};
use kube::ResourceExt;
use redis_fsm::{FailingPod, RolloutStatus};

use crate::desired::redis_conf::redact_secrets;

/// Container waiting reasons that mean the pod cannot start as specified.
const FAILING_WAITING_REASONS: [&str; 7] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// The label the StatefulSet controller puts on each pod naming its revision.
/// The label the StatefulSet controller gives a pod: the revision of the template it was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The rollout state of a StatefulSet as the phase engine reads it.
pub fn rollout_status(sts: &StatefulSet) -> RolloutStatus {
    let status = sts.status.clone().unwrap_or_default();
    let spec = sts.spec.as_ref();
    let ready = status.ready_replicas.unwrap_or_default();
    let updated = status.updated_replicas.unwrap_or_default();
    let mut current_revision = status.current_revision;
    // With `OnDelete`, the StatefulSet controller before Kubernetes 1.35 never moves currentRevision to
    // updateRevision (only its RollingUpdate path does). Complete it as 1.35 does: once every pod the spec
    // asks for exists, is ready and runs the update revision.
    let on_delete =
        spec.and_then(|s| s.update_strategy.as_ref()?.type_.as_deref()) == Some("OnDelete");
    let wanted = spec.and_then(|s| s.replicas).unwrap_or(1);
    if on_delete && updated == wanted && ready == wanted && status.replicas == wanted {
        current_revision = status.update_revision.clone();
    }
    RolloutStatus {
        generation: sts.metadata.generation.unwrap_or_default(),
        observed_generation: status.observed_generation,
        replicas: status.replicas,
        ready_replicas: ready,
        updated_replicas: updated,
        current_revision,
        update_revision: status.update_revision,
    }
}

/// The first pod (by name) the scheduler could not place, as the phase engine's `scheduling_pending`
/// sentence with the scheduler's own message.
pub fn unschedulable<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Option<String> {
    let mut waiting: Vec<(String, String)> = pods
        .into_iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| {
            let condition = pod
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "PodScheduled")?;
            (condition.status == "False" && condition.reason.as_deref() == Some("Unschedulable"))
                .then(|| {
                    let message = condition.message.as_deref().unwrap_or("no reason given");
                    (
                        pod.name_any(),
                        crate::redis::client::bounded_text(message, 300),
                    )
                })
        })
        .collect();
    waiting.sort();
    let (pod, message) = waiting.into_iter().next()?;
    Some(format!("{pod} cannot be scheduled: {message}"))
}

/// Pods that keep failing. Pods of an older revision are left out while a newer one rolls out: the
/// StatefulSet controller replaces them, so a fixed spec is not reported as failing because of them.
pub fn failing_pods<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    update_revision: Option<&str>,
) -> Vec<FailingPod> {
    let mut failing: Vec<FailingPod> = pods
        .into_iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| match (update_revision, pod_revision(pod)) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        })
        .filter_map(pod_failure)
        .collect();
    failing.sort_by(|a, b| a.pod.cmp(&b.pod));
    failing
}

/// Reason of the Warning Event the StatefulSet controller records when the API server refuses one of its pods.
pub const FAILED_CREATE: &str = "FailedCreate";

/// Pods the StatefulSet controller keeps failing to create (an invalid pod spec, a quota, an admission webhook),
/// from its `FailedCreate` Warning Events on `sts`. The controller reports nothing else: its status only shows
/// fewer replicas. An Event counts while the pod it names does not exist and it happened at or after `since`
/// (RFC 3339; the last change the operator applied), so the refusal of a spec since replaced is not reported.
pub fn failed_creates<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    sts: &StatefulSet,
    existing_pods: &[&str],
    since: Option<&str>,
) -> Vec<FailingPod> {
    let Some(uid) = sts.metadata.uid.as_deref() else {
        return Vec::new();
    };
    let mut failing: Vec<FailingPod> = events
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(FAILED_CREATE))
        .filter(|e| e.involved_object.uid.as_deref() == Some(uid))
        .filter(|e| match (since, last_seen(e)) {
            (Some(since), Some(seen)) => seen.as_str() >= since,
            _ => true,
        })
        .filter_map(|e| {
            let message = e.message.clone().unwrap_or_default();
            // "create Pod NAME in StatefulSet ..." ("Create" since Kubernetes 1.3x).
            let mut words = message.split_whitespace();
            let verb = words.next()?;
            if !verb.eq_ignore_ascii_case("create") || words.next()? != "Pod" {
                return None;
            }
            let pod = words.next()?.to_string();
            (!existing_pods.contains(&pod.as_str())).then_some(FailingPod {
                pod,
                reason: FAILED_CREATE.to_string(),
                message,
            })
        })
        .collect();
    failing.sort_by(|a, b| a.pod.cmp(&b.pod));
    failing.dedup_by(|a, b| a.pod == b.pod);
    failing
}

/// When an Event last happened, as RFC 3339 seconds (the form status times use).
fn last_seen(event: &Event) -> Option<String> {
    let time = event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or(event.last_timestamp.as_ref().map(|t| t.0))
        .or(event.event_time.as_ref().map(|t| t.0))?;
    Some(time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// The revision of the StatefulSet's pod template `pod` was created from.
pub fn pod_revision(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_LABEL)
        .map(String::as_str)
}

/// A run that ended with an error this soon after it started is a crash (a configuration Redis refuses, a
/// missing file, a failing command); a server that served for longer and was then killed (by a person, the
/// runtime, a node problem) is restarting, not failing, and the kubelet's back-off after it is no crash loop.
const CRASH_RUN_MILLIS: i64 = 10_000;

/// Whether a container's last run counts as a crash: it ended with an error and either ran less than
/// [`CRASH_RUN_MILLIS`] (or for an unknown time), or was killed for exceeding its memory limit, which comes
/// back however long the server ran.
fn crashed(run: &ContainerStateTerminated) -> bool {
    let ran_millis = match (&run.started_at, &run.finished_at) {
        (Some(start), Some(end)) => Some(end.0.as_millisecond() - start.0.as_millisecond()),
        _ => None,
    };
    run.exit_code != 0
        && (run.reason.as_deref() == Some("OOMKilled")
            || ran_millis.is_none_or(|ran| ran < CRASH_RUN_MILLIS))
}

fn pod_failure(pod: &Pod) -> Option<FailingPod> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        return Some(FailingPod {
            pod: name,
            reason: status.reason.clone().unwrap_or_else(|| "Failed".into()),
            message: redact_secrets(&status.message.clone().unwrap_or_default()),
        });
    }
    for container in status.container_statuses.iter().flatten() {
        let state = container.state.as_ref();
        let waiting = state.and_then(|s| s.waiting.as_ref());
        let waiting_reason = waiting
            .and_then(|w| w.reason.as_deref())
            .unwrap_or_default();
        let last_failure = container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .filter(|t| crashed(t));
        // The message is Redis' last output, which quotes a malformed configuration line verbatim: it
        // goes into status and Events, so secrets are redacted before it leaves here.
        let message = || {
            let text = last_failure
                .and_then(|t| t.message.as_deref())
                .or_else(|| waiting.and_then(|w| w.message.as_deref()))
                .unwrap_or_default();
            redact_secrets(text)
        };
        // The kubelet backs off before any restart, so after a single kill the container waits in
        // `CrashLoopBackOff` too: only a crash counts.
        let backing_off_after_a_kill =
            waiting_reason == "CrashLoopBackOff" && last_failure.is_none();
        if FAILING_WAITING_REASONS.contains(&waiting_reason) && !backing_off_after_a_kill {
            return Some(FailingPod {
                pod: name,
                reason: waiting_reason.to_string(),
                message: message(),
            });
        }
        // Between two crash-loop back-offs the container runs briefly; it still keeps failing.
        if !container.ready && container.restart_count > 0 && last_failure.is_some() {
            return Some(FailingPod {
                pod: name,
                reason: "CrashLoopBackOff".to_string(),
                message: message(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodStatus,
    };

    use super::*;

    fn pod(name: &str, revision: &str, container: ContainerStatus) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.metadata.labels = Some([(REVISION_LABEL.to_string(), revision.to_string())].into());
        pod.status = Some(PodStatus {
            phase: Some("Running".into()),
            container_statuses: Some(vec![container]),
            ..Default::default()
        });
        pod
    }

    fn crash_looping() -> ContainerStatus {
        ContainerStatus {
            name: "redis".into(),
            restart_count: 3,
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("CrashLoopBackOff".into()),
                    message: Some("back-off 40s".into()),
                }),
                ..Default::default()
            }),
            last_state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 1,
                    message: Some("Bad directive".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn healthy() -> ContainerStatus {
        ContainerStatus {
            name: "redis".into(),
            ready: true,
            ..Default::default()
        }
    }

    #[test]
    fn crash_loop_is_failing_with_the_last_output() {
        let pods = [
            pod("a-1", "r2", crash_looping()),
            pod("a-0", "r2", healthy()),
        ];
        let failing = failing_pods(&pods, Some("r2"));
        assert_eq!(failing.len(), 1);
        assert_eq!(failing[0].pod, "a-1");
        assert_eq!(failing[0].reason, "CrashLoopBackOff");
        assert_eq!(failing[0].message, "Bad directive");
    }

    /// Redis quotes a malformed line verbatim; a password in it must not reach status or Events.
    #[test]
    fn secrets_in_the_last_output_are_redacted() {
        let mut container = crash_looping();
        if let Some(terminated) = container
            .last_state
            .as_mut()
            .and_then(|s| s.terminated.as_mut())
        {
            terminated.message =
                Some(">>> 'requirepass \"Sup3r\"Secret'\nUnbalanced quotes".into());
        }
        let failing = failing_pods(&[pod("a-0", "r1", container)], Some("r1"));
        assert_eq!(
            failing[0].message,
            ">>> 'requirepass [redacted]'\nUnbalanced quotes"
        );
    }

    #[test]
    fn restarting_between_back_offs_still_counts() {
        let mut container = crash_looping();
        container.state = Some(ContainerState::default());
        let failing = failing_pods(&[pod("a-0", "r1", container)], Some("r1"));
        assert_eq!(failing.len(), 1);
    }

    /// `crash_looping()` whose last run lasted `ran` seconds and ended with `exit_code` for `reason`.
    fn ended_after(ran: i64, exit_code: i32, reason: &str) -> ContainerStatus {
        let mut container = crash_looping();
        if let Some(terminated) = container
            .last_state
            .as_mut()
            .and_then(|s| s.terminated.as_mut())
        {
            let at = |s: i64| {
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + s).unwrap(),
                )
            };
            terminated.started_at = Some(at(0));
            terminated.finished_at = Some(at(ran));
            terminated.exit_code = exit_code;
            terminated.reason = Some(reason.into());
        }
        container
    }

    /// The kubelet backs off after any exit: a server killed after it served (137 after 5 minutes) waits in
    /// `CrashLoopBackOff` too, but is restarting, not failing; one that exits within seconds is crash-looping,
    /// and one killed for its memory limit keeps failing however long it ran.
    #[test]
    fn a_killed_server_backing_off_is_not_failing_a_crash_or_an_oom_kill_is() {
        let failing = |c: ContainerStatus| failing_pods(&[pod("a-0", "r1", c)], Some("r1"));
        assert!(failing(ended_after(300, 137, "Error")).is_empty());
        let mut restarted = ended_after(300, 137, "Error");
        restarted.state = Some(ContainerState::default());
        assert!(failing(restarted).is_empty(), "restarted, not yet ready");
        assert_eq!(failing(ended_after(1, 1, "Error")).len(), 1);
        assert_eq!(failing(ended_after(300, 137, "OOMKilled")).len(), 1);
    }

    #[test]
    fn an_unschedulable_pod_is_named_with_the_schedulers_message() {
        let mut waiting = pod("a-1", "r1", healthy());
        if let Some(status) = waiting.status.as_mut() {
            status.phase = Some("Pending".into());
            status.container_statuses = None;
            status.conditions = Some(vec![k8s_openapi::api::core::v1::PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some("0/1 nodes are available: 1 Insufficient cpu.".into()),
                ..Default::default()
            }]);
        }
        assert_eq!(unschedulable([&pod("a-0", "r1", healthy())]), None);
        assert_eq!(
            unschedulable([&pod("a-0", "r1", healthy()), &waiting]).as_deref(),
            Some("a-1 cannot be scheduled: 0/1 nodes are available: 1 Insufficient cpu.")
        );
    }

    #[test]
    fn old_revision_pods_are_ignored_during_a_rollout() {
        let pods = [pod("a-0", "r1", crash_looping())];
        assert!(failing_pods(&pods, Some("r2")).is_empty());
        assert_eq!(failing_pods(&pods, Some("r1")).len(), 1);
    }

    fn failed_create(sts_uid: &str, pod: &str, at: &str) -> Event {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{pod}.1"), "namespace": "ns"},
            "involvedObject": {"kind": "StatefulSet", "name": "a", "uid": sts_uid},
            "reason": "FailedCreate",
            "type": "Warning",
            "message": format!("create Pod {pod} in StatefulSet a failed error: Pod \"{pod}\" is invalid: spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"),
            "lastTimestamp": at,
        }))
        .unwrap()
    }

    fn statefulset(uid: &str) -> StatefulSet {
        let mut sts = StatefulSet::default();
        sts.metadata.uid = Some(uid.into());
        sts
    }

    #[test]
    fn a_pod_the_controller_cannot_create_is_failing_with_its_message() {
        let mut capitalised = failed_create("s1", "a-1", "2026-01-01T00:00:10Z");
        capitalised.message = capitalised
            .message
            .map(|m| m.replacen("create Pod", "Create Pod", 1));
        let events = [
            failed_create("s1", "a-0", "2026-01-01T00:00:10Z"),
            capitalised,
        ];
        let failing = failed_creates(
            &events,
            &statefulset("s1"),
            &[],
            Some("2026-01-01T00:00:05Z"),
        );
        assert_eq!(failing.len(), 2, "{failing:?}");
        assert_eq!(failing[1].pod, "a-1");
        assert_eq!(
            (failing[0].pod.as_str(), failing[0].reason.as_str()),
            ("a-0", FAILED_CREATE)
        );
        assert!(failing[0]
            .message
            .contains("must be less than or equal to cpu limit"));
    }

    #[test]
    fn stale_failed_creates_are_ignored() {
        let events = [failed_create("s1", "a-0", "2026-01-01T00:00:10Z")];
        // The pod exists now.
        assert!(failed_creates(&events, &statefulset("s1"), &["a-0"], None).is_empty());
        // The Event is about an earlier StatefulSet of the same name.
        assert!(failed_creates(&events, &statefulset("s2"), &[], None).is_empty());
        // It happened before the operator applied the last change.
        assert!(failed_creates(
            &events,
            &statefulset("s1"),
            &[],
            Some("2026-01-01T00:00:11Z")
        )
        .is_empty());
    }

    #[test]
    fn image_pull_errors_fail() {
        let mut container = healthy();
        container.ready = false;
        container.state = Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ImagePullBackOff".into()),
                message: Some("not found".into()),
            }),
            ..Default::default()
        });
        let failing = failing_pods(&[pod("a-0", "r1", container)], None);
        assert_eq!(
            (failing[0].reason.as_str(), failing[0].message.as_str()),
            ("ImagePullBackOff", "not found")
        );
    }
}
