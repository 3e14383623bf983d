//! The passes on every pod's server (credentials, certificates, the replication topology, the live
//! configuration), and how soon to look again.

use std::time::Duration;

use super::auth;
use super::context::CONVERGED_RECHECK;
use super::context::{Context, Snapshot};
use super::publish::Passes;
use super::replication::topology_pass;
use super::report::Report;
use super::runtime_config::live_config_pass;
use super::tls;
use crate::api::RedisInstance;
use crate::classify::change::StatefulSetChange;
use crate::converge::live_config;

/// How soon an instance whose pods do not all hold their live configuration looks again (a refusal or an
/// unreachable server changes without any watch event).
pub(super) const LIVE_CONFIG_RECHECK: Duration = Duration::from_secs(5);
/// How often an instance blocked by a foreign object in a child's place looks again (that object is not watched).
pub(super) const CONFLICT_RECHECK: Duration = Duration::from_secs(15);
/// How soon an instance whose pods do not all serve the TLS Secret's certificate looks again (the files in a
/// pod follow the Secret without any watch event).
pub(super) const TLS_RECHECK: Duration = Duration::from_secs(3);

/// The passes on every pod's server: credentials first (a replica the topology pass re-points
/// authenticates with them), certificates, the replication topology, the live configuration. Returns how
/// soon to look again.
#[allow(clippy::too_many_arguments)]
pub(super) async fn pod_passes(
    ri: &RedisInstance,
    ctx: &Context,
    snapshot: &Snapshot,
    tls: &tls::Prepared,
    prepared: &auth::Prepared,
    change: &StatefulSetChange,
    config_change: Option<live_config::ConfigChange>,
    report: &mut Report,
) -> Duration {
    let live = snapshot.statefulset.is_some();
    // A backup reads a server's data as a replica does: with the replication user's login.
    if let Ok(mut access) = ctx.access.lock() {
        access.insert(
            kube::runtime::reflector::ObjectRef::from_obj(ri),
            crate::redis::Access {
                login: crate::auth::replication_login(&prepared.resolved),
                ..prepared.access.clone()
            },
        );
    }
    let auth_status = auth::converge_pass(ri, ctx, snapshot, prepared).await;
    let (tls_status, tls_pending) =
        tls::reload_pass(ri, ctx, snapshot, tls, &prepared.access).await;
    let topology = if ri.spec.replicas > 0 && live {
        Some(topology_pass(ri, ctx, snapshot, &prepared.access, tls.material.as_ref()).await)
    } else {
        None
    };
    let observation = &mut report.observation;
    if let Some(pass) = &topology {
        observation.failover = pass.failover.clone();
        observation.switchover = pass.status.switchover_in_flight().is_some();
        observation.rollout = pass.rollout.clone();
        observation.manual_intervention = pass.manual_intervention.clone();
        observation.replication_pending = pass.pending.clone();
    }
    if live {
        let restarting = *change == StatefulSetChange::Restart;
        let note = config_change.as_ref().and_then(|c| c.event(restarting));
        observation.config_pending =
            live_config_pass(ri, ctx, snapshot, &prepared.access, note).await;
    }
    let mut requeue = ctx.settings.resync;
    if let Some(pass) = &topology {
        requeue = requeue.min(pass.requeue);
    }
    if observation.config_pending.is_some() {
        requeue = requeue.min(LIVE_CONFIG_RECHECK);
    }
    if tls_pending {
        requeue = requeue.min(TLS_RECHECK);
    }
    if auth_status.enabled {
        requeue = requeue.min(CONVERGED_RECHECK);
    }
    report.passes = Passes {
        topology,
        auth: Some(auth_status),
        tls: Some(tls_status),
        // Set by the backup pass, which follows.
        backup: None,
    };
    requeue
}
