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

/// A container after the first (a sidecar, e.g. the metrics exporter), as last seen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SidecarState {
    /// Since when and as which process it runs; `None` while it waits to start or to restart after an exit.
    pub running: Option<(Timestamp, String)>,
    /// Why it waits, when it does (`ContainerCreating`, `CrashLoopBackOff`).
    pub waiting: String,
    pub ready: bool,
    pub restart_count: i32,
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
    /// The containers after the first, by name.
    pub sidecars: BTreeMap<String, SidecarState>,
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

/// The full status to write: the first container from `observed.main`, the others from `observed.sidecars`
/// (one not seen there yet is waiting to be created). The pod is ready when every container is.
pub fn pod_status(
    pod: &Pod,
    observed: &Observed,
    clock: &mut ConditionClock,
    now: Timestamp,
) -> PodStatus {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let main_ready = observed.ready && matches!(observed.main, MainState::Running { .. });
    let sidecars_ready = containers.iter().skip(1).all(|c| {
        observed
            .sidecars
            .get(&c.name)
            .is_some_and(|s| s.ready && s.running.is_some())
    });
    let ready = main_ready && sidecars_ready;
    let not_ready = Some("ContainersNotReady");
    let conditions = vec![
        clock.condition("PodScheduled", true, now, None),
        clock.condition("Initialized", true, now, None),
        clock.condition("ContainersReady", ready, now, not_ready),
        clock.condition("Ready", ready, now, not_ready),
    ];
    let container_statuses = containers
        .iter()
        .enumerate()
        .map(|(index, c)| {
            let image = c.image.clone().unwrap_or_default();
            if index > 0 {
                let state = observed.sidecars.get(&c.name).cloned().unwrap_or_default();
                return sidecar_status(c.name.clone(), image, &state);
            }
            ContainerStatus {
                name: c.name.clone(),
                image_id: format!("devcluster-unpulled://{image}"),
                image,
                container_id: container_id(&observed.main),
                ready: main_ready,
                started: Some(matches!(observed.main, MainState::Running { .. })),
                restart_count: observed.restart_count,
                state: Some(container_state(&observed.main)),
                last_state: observed.last_exit.as_ref().map(|exit| ContainerState {
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

fn sidecar_status(name: String, image: String, state: &SidecarState) -> ContainerStatus {
    let container_state = match &state.running {
        Some((started_at, _)) => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*started_at)),
            }),
            ..ContainerState::default()
        },
        None => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(
                    Some(state.waiting.clone())
                        .filter(|w| !w.is_empty())
                        .unwrap_or_else(|| "ContainerCreating".to_string()),
                ),
                message: None,
            }),
            ..ContainerState::default()
        },
    };
    ContainerStatus {
        name,
        image_id: format!("devcluster-unpulled://{image}"),
        image,
        container_id: state.running.as_ref().map(|(_, id)| id.clone()),
        ready: state.ready && state.running.is_some(),
        started: Some(state.running.is_some()),
        restart_count: state.restart_count,
        state: Some(container_state),
        ..ContainerStatus::default()
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
            sidecars: BTreeMap::new(),
        }
    }

    fn running_sidecar(ready: bool) -> SidecarState {
        SidecarState {
            running: Some((ts(111), "process://43".into())),
            waiting: String::new(),
            ready,
            restart_count: 2,
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
        let mut seen = observed(running, true);
        seen.sidecars
            .insert("exporter".into(), running_sidecar(true));
        let status = pod_status(&pod(), &seen, &mut ConditionClock::default(), ts(120));
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("127.1.0.7"));
        assert_eq!(condition(&status, "Ready").status, "True");
        let statuses = status.container_statuses.unwrap();
        assert_eq!(statuses.len(), 2);
        assert!(statuses.iter().all(|s| s.ready && s.started == Some(true)));
        assert_eq!(statuses[0].image_id, "devcluster-unpulled://redis:7");
        assert_eq!(statuses[0].container_id.as_deref(), Some("process://42"));
        assert_eq!(statuses[1].container_id.as_deref(), Some("process://43"));
        assert_eq!(statuses[1].restart_count, 2);
    }

    /// Each container reports its own state; the pod is ready only when every container is.
    #[test]
    fn a_sidecar_reports_its_own_state_and_gates_readiness() {
        let running = MainState::Running {
            started_at: ts(110),
            container_id: "process://42".into(),
        };
        let without = pod_status(
            &pod(),
            &observed(running.clone(), true),
            &mut ConditionClock::default(),
            ts(120),
        );
        assert_eq!(condition(&without, "Ready").status, "False");
        let statuses = without.container_statuses.unwrap();
        assert!(statuses[0].ready);
        assert!(!statuses[1].ready);
        let waiting = statuses[1]
            .state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("ContainerCreating"));

        let mut crashed = observed(running.clone(), true);
        crashed.sidecars.insert(
            "exporter".into(),
            SidecarState {
                running: None,
                waiting: "CrashLoopBackOff".into(),
                ready: false,
                restart_count: 3,
            },
        );
        let status = pod_status(&pod(), &crashed, &mut ConditionClock::default(), ts(120));
        assert_eq!(condition(&status, "Ready").status, "False");
        let sidecar = &status.container_statuses.unwrap()[1];
        assert_eq!(sidecar.restart_count, 3);
        assert_eq!(
            sidecar
                .state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );

        let mut not_answering = observed(running, true);
        not_answering
            .sidecars
            .insert("exporter".into(), running_sidecar(false));
        let status = pod_status(
            &pod(),
            &not_answering,
            &mut ConditionClock::default(),
            ts(120),
        );
        assert_eq!(condition(&status, "Ready").status, "False");
        let statuses = status.container_statuses.unwrap();
        assert!(statuses[0].ready && !statuses[1].ready);
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
        let mut ready = observed(running, true);
        ready
            .sidecars
            .insert("exporter".into(), running_sidecar(true));
        let flipped = pod_status(&pod(), &ready, &mut clock, ts(140));
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
