//! What the change applied is, and with nothing applied, the rollout and the pods that fail.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::ResourceExt;
use redis_fsm::{Change, Phase};

use super::context::{Context, Snapshot};
use super::report::Report;
use crate::api::RedisInstance;
use crate::classify::change::StatefulSetChange;
use crate::converge::live_config;
use crate::observe::rollout::{failed_creates, failing_pods, rollout_status, unschedulable};

/// What the change applied is, for the phase engine; with nothing applied, the rollout's state and the pods
/// that fail or cannot be created or scheduled.
pub(super) fn observe_rollout(
    ri: &RedisInstance,
    ctx: &Context,
    snapshot: &Snapshot,
    change: &StatefulSetChange,
    config_change: Option<&live_config::ConfigChange>,
    report: &mut Report,
) {
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    let observation = &mut report.observation;
    observation.change = change.applied();
    if let Some(config) = config_change {
        match observation.change {
            // The configuration changed and the StatefulSet did not: every changed directive is set at runtime.
            Change::None if !config.live.is_empty() => {
                observation.change = Change::LiveConfig;
                observation.change_note = Some(config.live.join(", "));
            }
            Change::Restart if !config.restart.is_empty() => {
                observation.change_note = Some(format!(
                    "{} cannot be set at runtime",
                    config.restart.join(", ")
                ));
            }
            _ => {}
        }
    }
    if observation.change != Change::None {
        return;
    }
    let live_sts = snapshot.statefulset.as_deref();
    observation.statefulset = live_sts.map(rollout_status);
    let update_revision = observation
        .statefulset
        .as_ref()
        .and_then(|s| s.update_revision.clone());
    let pods = &snapshot.pods;
    observation.failing_pods =
        failing_pods(pods.iter().map(Arc::as_ref), update_revision.as_deref());
    observation.scheduling_pending = unschedulable(pods.iter().map(Arc::as_ref));
    if let Some(sts) = live_sts {
        let existing: Vec<String> = pods.iter().map(|pod| pod.name_any()).collect();
        let existing: Vec<&str> = existing.iter().map(String::as_str).collect();
        let events: Vec<Arc<CoreEvent>> = ctx
            .stores
            .create_failures
            .state()
            .into_iter()
            .filter(|e| e.metadata.namespace.as_deref() == Some(namespace.as_str()))
            .filter(|e| e.involved_object.name.as_deref() == Some(name.as_str()))
            .collect();
        observation.failing_pods.extend(failed_creates(
            events.iter().map(Arc::as_ref),
            sts,
            &existing,
            last_change_time(ri).as_deref(),
        ));
    }
}

/// When the operator last applied a change (the newest transition into Creating or Updating).
pub(super) fn last_change_time(ri: &RedisInstance) -> Option<String> {
    ri.status
        .as_ref()?
        .history
        .entries()
        .iter()
        .rev()
        .find(|t| matches!(t.to, Phase::Creating | Phase::Updating))
        .map(|t| t.time.clone())
}
