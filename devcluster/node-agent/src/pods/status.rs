//! Builds the pod status the agent reports from what it observed of the pod's process (pure).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// How a run of the main container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// `Completed` for exit code 0, `Error` otherwise, `StartError` when the process could not be started.
    pub reason: String,
    /// The last lines of the process output.
    pub message: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub container_id: String,
}

/// Where the pod's main (first) container is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MainState {
    /// Volumes or env cannot be prepared yet (e.g. the claim is not bound).
    Creating { message: String },
    Running {
        started_at: Timestamp,
        container_id: String,
    },
    /// Exited and waiting for its back-off to pass.
    CrashLoopBackOff { message: String },
    /// Exited for good (restart policy Never/OnFailure).
    Terminated(Exit),
}

/// Everything the status is computed from.
#[derive(Debug, Clone)]
pub struct Observed {
    pub pod_ip: Ipv4Addr,
    pub start_time: Timestamp,
    pub main: MainState,
    pub last_exit: Option<Exit>,
    pub restart_count: i32,
    pub ready: bool,
}

/// Remembers when each condition last changed value, so `lastTransitionTime` only moves on a change.
#[derive(Debug, Default, Clone)]
pub struct ConditionClock {
    since: BTreeMap<String, (bool, Timestamp)>,
}

impl ConditionClock {
    /// Starts from the conditions a pod already carries (after an agent restart).
    pub fn from_pod(pod: &Pod) -> Self {
        let mut clock = Self::default();
        for c in pod
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
        {
            if let Some(Time(at)) = &c.last_transition_time {
                clock
                    .since
                    .insert(c.type_.clone(), (c.status == "True", *at));
            }
        }
        clock
    }

    fn condition(
        &mut self,
        type_: &str,
        value: bool,
        now: Timestamp,
        reason: Option<&str>,
    ) -> PodCondition {
        let entry = self.since.entry(type_.to_string()).or_insert((value, now));
        if entry.0 != value {
            *entry = (value, now);
        }
        PodCondition {
            type_: type_.to_string(),
            status: if value { "True" } else { "False" }.to_string(),
            last_transition_time: Some(Time(entry.1)),
            reason: reason.filter(|_| !value).map(str::to_string),
            ..PodCondition::default()
        }
    }
}

/// The pod phase matching the main container's state.
pub fn phase(main: &MainState) -> &'static str {
    match main {
        MainState::Creating { .. } => "Pending",
        MainState::Running { .. } | MainState::CrashLoopBackOff { .. } => "Running",
        MainState::Terminated(exit) if exit.exit_code == 0 => "Succeeded",
        MainState::Terminated(_) => "Failed",
    }
}

/// The full status to write. Containers after the first are not run; they mirror the first one.
pub fn pod_status(
    pod: &Pod,
    observed: &Observed,
    clock: &mut ConditionClock,
    now: Timestamp,
) -> PodStatus {
    let ready = observed.ready && matches!(observed.main, MainState::Running { .. });
    let not_ready = Some("ContainersNotReady");
    let conditions = vec![
        clock.condition("PodScheduled", true, now, None),
        clock.condition("Initialized", true, now, None),
        clock.condition("ContainersReady", ready, now, not_ready),
        clock.condition("Ready", ready, now, not_ready),
    ];
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let container_statuses = containers
        .iter()
        .enumerate()
        .map(|(index, c)| {
            let image = c.image.clone().unwrap_or_default();
            ContainerStatus {
                name: c.name.clone(),
                image_id: format!("devcluster-unpulled://{image}"),
                image,
                container_id: container_id(&observed.main),
                ready,
                started: Some(matches!(observed.main, MainState::Running { .. })),
                restart_count: observed.restart_count,
                state: Some(container_state(&observed.main)),
                last_state: (index == 0)
                    .then_some(observed.last_exit.as_ref())
                    .flatten()
                    .map(|exit| ContainerState {
                        terminated: Some(terminated(exit)),
                        ..ContainerState::default()
                    }),
                ..ContainerStatus::default()
            }
        })
        .collect();
    let ip = observed.pod_ip.to_string();
    PodStatus {
        phase: Some(phase(&observed.main).to_string()),
        conditions: Some(conditions),
        host_ip: Some("127.0.0.1".to_string()),
        pod_ip: Some(ip.clone()),
        pod_ips: Some(vec![PodIP { ip }]),
        start_time: Some(Time(observed.start_time)),
        container_statuses: Some(container_statuses),
        ..PodStatus::default()
    }
}

fn container_id(main: &MainState) -> Option<String> {
    match main {
        MainState::Running { container_id, .. } => Some(container_id.clone()),
        MainState::Terminated(exit) => Some(exit.container_id.clone()),
        MainState::Creating { .. } | MainState::CrashLoopBackOff { .. } => None,
    }
}

fn container_state(main: &MainState) -> ContainerState {
    let waiting = |reason: &str, message: &str| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: Some(message.to_string()).filter(|m| !m.is_empty()),
        }),
        ..ContainerState::default()
    };
    match main {
        MainState::Creating { message } => waiting("ContainerCreating", message),
        MainState::CrashLoopBackOff { message } => waiting("CrashLoopBackOff", message),
        MainState::Running { started_at, .. } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*started_at)),
            }),
            ..ContainerState::default()
        },
        MainState::Terminated(exit) => ContainerState {
            terminated: Some(terminated(exit)),
            ..ContainerState::default()
        },
    }
}

fn terminated(exit: &Exit) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: exit.exit_code,
        signal: exit.signal,
        reason: Some(exit.reason.clone()),
        message: Some(exit.message.clone()).filter(|m| !m.is_empty()),
        started_at: Some(Time(exit.started_at)),
        finished_at: Some(Time(exit.finished_at)),
        container_id: Some(exit.container_id.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod() -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![
                    Container {
                        name: "redis".into(),
                        image: Some("redis:7".into()),
                        ..Container::default()
                    },
                    Container {
                        name: "exporter".into(),
                        ..Container::default()
                    },
                ],
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn observed(main: MainState, ready: bool) -> Observed {
        Observed {
            pod_ip: Ipv4Addr::new(127, 1, 0, 7),
            start_time: ts(100),
            main,
            last_exit: None,
            restart_count: 0,
            ready,
        }
    }

    fn condition<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .unwrap()
    }

    #[test]
    fn running_and_answering_is_ready() {
        let running = MainState::Running {
            started_at: ts(110),
            container_id: "process://42".into(),
        };
        let status = pod_status(
            &pod(),
            &observed(running, true),
            &mut ConditionClock::default(),
            ts(120),
        );
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("127.1.0.7"));
        assert_eq!(condition(&status, "Ready").status, "True");
        let statuses = status.container_statuses.unwrap();
        assert_eq!(statuses.len(), 2);
        assert!(statuses.iter().all(|s| s.ready && s.started == Some(true)));
        assert_eq!(statuses[0].image_id, "devcluster-unpulled://redis:7");
        assert_eq!(statuses[0].container_id.as_deref(), Some("process://42"));
    }

    #[test]
    fn crash_loop_reports_waiting_and_last_exit() {
        let exit = Exit {
            exit_code: 1,
            signal: None,
            reason: "Error".into(),
            message: "Bad directive".into(),
            started_at: ts(110),
            finished_at: ts(111),
            container_id: "process://42".into(),
        };
        let mut seen = observed(
            MainState::CrashLoopBackOff {
                message: "back-off 10s".into(),
            },
            true,
        );
        seen.last_exit = Some(exit);
        seen.restart_count = 1;
        let status = pod_status(&pod(), &seen, &mut ConditionClock::default(), ts(120));
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&status, "Ready").status, "False");
        let main = &status.container_statuses.unwrap()[0];
        let waiting = main.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = main
            .last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
        assert_eq!(main.restart_count, 1);
    }

    #[test]
    fn transition_time_moves_only_on_change() {
        let running = MainState::Running {
            started_at: ts(110),
            container_id: "process://1".into(),
        };
        let mut clock = ConditionClock::default();
        let first = pod_status(
            &pod(),
            &observed(running.clone(), false),
            &mut clock,
            ts(120),
        );
        let same = pod_status(
            &pod(),
            &observed(running.clone(), false),
            &mut clock,
            ts(130),
        );
        let flipped = pod_status(&pod(), &observed(running, true), &mut clock, ts(140));
        let at = |s: &PodStatus| {
            condition(s, "Ready")
                .last_transition_time
                .clone()
                .unwrap()
                .0
        };
        assert_eq!(at(&first), ts(120));
        assert_eq!(at(&same), ts(120));
        assert_eq!(at(&flipped), ts(140));
        assert_eq!(
            condition(&flipped, "PodScheduled")
                .last_transition_time
                .clone()
                .unwrap()
                .0,
            ts(120)
        );
    }

    #[test]
    fn phases() {
        assert_eq!(
            phase(&MainState::Creating {
                message: String::new()
            }),
            "Pending"
        );
        let exit = |code| Exit {
            exit_code: code,
            signal: None,
            reason: String::new(),
            message: String::new(),
            started_at: ts(1),
            finished_at: ts(2),
            container_id: String::new(),
        };
        assert_eq!(phase(&MainState::Terminated(exit(0))), "Succeeded");
        assert_eq!(phase(&MainState::Terminated(exit(2))), "Failed");
    }
}
