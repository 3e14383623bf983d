//! The live-configuration pass: directives that can be set at runtime are set on every pod that lacks them.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use kube::runtime::events::EventType;
use tracing::debug;

use super::context::{hash_pods, Context, Snapshot, Verified};
use super::events::event;
use crate::api::RedisInstance;
use crate::converge::{live_config, Pending};
use crate::desired::redis_conf;
use crate::events::EventReason;
use crate::redis::Access;

/// Sets the live configuration values on every pod that lacks them (see [`live_config`]), and reports which
/// path a configuration change applied in this reconcile took. Skipped while the values and the pods are those
/// every pod was found holding less than [`super::context::CONVERGED_RECHECK`] ago: a converged instance is
/// sent no `CONFIG GET` between those checks. Returns what is still not applied, for the phase
/// engine.
pub(super) async fn live_config_pass(
    ri: &RedisInstance,
    ctx: &Context,
    snapshot: &Snapshot,
    access: &Access,
    change_event: Option<(EventReason, String)>,
) -> Option<String> {
    let settings =
        live_config::desired(&redis_conf::settings(&ri.spec.config, &ri.spec.replication));
    let pods = &snapshot.pods;
    if let Some((reason, note)) = change_event {
        event(ctx, ri, EventType::Normal, reason, "ConfigChange", note).await;
    }
    let fingerprint = {
        let mut hasher = DefaultHasher::new();
        for setting in &settings {
            (&setting.directive, &setting.value).hash(&mut hasher);
        }
        hash_pods(pods, &mut hasher);
        hasher.finish()
    };
    if ctx.verified(ri, Verified::LiveConfig, fingerprint) {
        return None;
    }
    let leadership = ctx.leadership.clone();
    let outcome = live_config::converge(pods, &settings, access, || leadership.is_held()).await;
    for (pod, pending) in &outcome.pending {
        if let Pending::Unreachable(why) = pending {
            debug!(%pod, %why, "live configuration not checked: the pod cannot be reached");
        }
    }
    if outcome.everywhere() && pods.len() >= usize::try_from(ri.spec.replicas).unwrap_or(0) {
        ctx.record_verified(ri, Verified::LiveConfig, fingerprint);
    }
    let pending = live_config::pending_message(&live_config::unapplied(&outcome));
    if let Some(pending) = &pending {
        debug!(%pending, "live configuration not applied everywhere");
    }
    pending
}
