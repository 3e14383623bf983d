//! The reconcile pipeline: read (watch caches) → validate → build (pure) → classify → apply → observe →
//! decide (phase engine) → write status. Only apply and the status write touch the API, and only when
//! something differs, so a converged instance costs no write.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use redis_fsm::Observation;
use tracing::{debug, instrument, warn};

use self::check::{check_secrets, check_spec};
use self::children::{apply_children, classify, desired_objects, refuse_foreign};
use self::cleanup::cleanup;
use self::context::Snapshot;
use self::observe::observe_rollout;
use self::passes::pod_passes;
use self::publish::{publish_status, Passes};
use self::replication::{move_labels, remove_switchover_request};
use self::report::{Next, Report};
use crate::api::RedisInstance;
use crate::error::{Error, Result};
use crate::names::FINALIZER;

/// How long a storage change waits for the orphaning delete of the old StatefulSet within one reconcile.
pub const REPLACE_WAIT: Duration = Duration::from_secs(30);

mod auth;
mod check;
mod children;
mod cleanup;
mod context;
mod events;
mod observe;
mod own_writes;
mod owned;
mod passes;
mod publish;
mod replication;
mod report;
mod runtime_config;
mod storage;
mod tls;

pub use self::context::{Context, RolloutMode, Settings, Stores};
pub(crate) use self::events::event;
pub(crate) use self::owned::controlled_by;

/// Entry point of every reconcile.
#[instrument(skip_all, fields(instance = %ri.name_any(), namespace = ri.namespace().unwrap_or_default()))]
pub async fn reconcile(ri: Arc<RedisInstance>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer();
    ctx.stores.wait_ready().await?;
    let namespace = ri.namespace().unwrap_or_default();
    let api: Api<RedisInstance> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, ri, |event| async {
        match event {
            Finalizer::Apply(ri) => apply(&ri, &ctx).await,
            Finalizer::Cleanup(ri) => cleanup(&ri, &ctx).await,
        }
    })
    .await;
    let result = match result {
        Err(error) if is_gone(&error) => {
            // The finalizer's removal let the object go; a reconcile queued meanwhile finds it gone.
            debug!("instance is already gone");
            Ok(Action::await_change())
        }
        other => other.map_err(|e| Error::Finalizer(Box::new(e))),
    };
    ctx.metrics.record_reconcile(result.as_ref().err());
    result
}

/// Whether the finalizer helper failed only because the instance no longer exists (404), which is the end of
/// a deletion, not a failure.
fn is_gone(error: &kube::runtime::finalizer::Error<Error>) -> bool {
    use kube::runtime::finalizer::Error as F;
    matches!(
        error,
        F::AddFinalizer(kube::Error::Api(status)) | F::RemoveFinalizer(kube::Error::Api(status))
            if status.code == 404
    )
}

/// The longest delay between two attempts of a failing reconcile: 1 s doubled eight times.
pub const BACKOFF_CAP: Duration = Duration::from_secs(1 << 8);

/// The delay before the next attempt after `failures` failed reconciles in a row (at least 1): 1 s, 2 s, 4 s,
/// … up to [`BACKOFF_CAP`].
pub fn backoff_delay(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(8)).min(BACKOFF_CAP)
}

/// Requeues failed reconciles with exponential back-off ([`backoff_delay`]).
pub fn error_policy(ri: Arc<RedisInstance>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(&*ri);
    let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
    let count = failures.entry(key).or_default();
    *count = count.saturating_add(1);
    let delay = backoff_delay(*count);
    warn!(instance = %ri.name_any(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn reset_backoff(ri: &RedisInstance, ctx: &Context) {
    let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
    failures.remove(&ObjectRef::from_obj(ri));
}

/// The value of a step that goes on; returns from the enclosing function when the step stops the reconcile.
macro_rules! go {
    ($step:expr) => {
        match $step {
            Next::Go(value) => value,
            Next::Stop(action) => return Ok(action),
        }
    };
}

/// How soon a reconcile that found its own status write not yet cached looks again, should the write's watch
/// event not come.
const UNSEEN_WRITE_RECHECK: Duration = Duration::from_secs(2);

/// One reconcile of an instance that is not being deleted: read the caches once, run the steps in order,
/// write the status once, then do what may only follow a written status (role labels, the switchover
/// request).
async fn apply(ri: &RedisInstance, ctx: &Context) -> Result<Action> {
    if ctx
        .own_writes
        .status_unseen(&ObjectRef::from_obj(ri), ri.resource_version().as_deref())
    {
        // The cache holds the instance as it was before this process last wrote its status: the write's watch
        // event reconciles again, with what it wrote (this one would only conflict). The requeue is a
        // fallback should that event be lost.
        debug!("the cache has not seen the last status write yet");
        return Ok(Action::requeue(UNSEEN_WRITE_RECHECK));
    }
    let snapshot = Snapshot::read(ri, &ctx.stores);
    let mut report = Report {
        observation: Observation {
            generation: ri.metadata.generation.unwrap_or_default(),
            spec_replicas: ri.spec.replicas,
            ..Default::default()
        },
        publish: false,
        recorded: None,
        passes: Passes::default(),
    };
    let next = steps(ri, ctx, &snapshot, &mut report).await;
    if report.publish {
        let ri = report.recorded.as_ref().unwrap_or(ri);
        let written =
            publish_status(ri, ctx, &report.observation, &report.passes, snapshot.now).await?;
        if let (true, Some(pass)) = (written, &report.passes.topology) {
            // Labels follow the status as persisted: only now may a pod gain (or must it lose) a role.
            move_labels(ri, ctx, &snapshot, &pass.roles).await?;
            if pass.request_done {
                // Consumed (recorded as the switchover in flight, or already the primary) or refused: once.
                remove_switchover_request(ri, ctx).await?;
            }
        }
    }
    if next.is_ok() {
        reset_backoff(ri, ctx);
    }
    next
}

/// The steps of a reconcile, in order. Each fills `report`; one that refuses stops here.
async fn steps(
    ri: &RedisInstance,
    ctx: &Context,
    snapshot: &Snapshot,
    report: &mut Report,
) -> Result<Action> {
    go!(check_spec(ri, snapshot, report));
    let desired = desired_objects(ri, ctx, snapshot);
    // Before the Secrets: an instance blocked by a foreign object creates nothing, not even its own Secrets.
    go!(refuse_foreign(ri, ctx, &desired, report).await?);
    let (tls, prepared) = go!(check_secrets(ri, ctx, snapshot, report).await?);
    let mut change = go!(classify(ri, ctx, snapshot, &desired.children, report).await?);
    let recorded = report.recorded.clone();
    let ri = recorded.as_ref().unwrap_or(ri);
    let config_change = apply_children(ri, ctx, snapshot, &desired, &mut change, report).await?;
    observe_rollout(ri, ctx, snapshot, &change, config_change.as_ref(), report);
    let mut requeue = pod_passes(
        ri,
        ctx,
        snapshot,
        &tls,
        &prepared,
        &change,
        config_change,
        report,
    )
    .await;
    let backup = crate::backup::pass::run(ri, ctx, snapshot.now).await;
    report.passes.backup = Some(backup.status);
    if let Some(until_next) = backup.requeue {
        requeue = requeue.min(until_next);
    }
    report.publish = true;
    // Watches on the StatefulSet, pods and claims bring every further step; the timer is a periodic resync,
    // shorter while the topology moves.
    Ok(Action::requeue(requeue))
}

#[cfg(test)]
mod tests {
    use kube::runtime::finalizer::Error as FinalizerError;

    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_its_cap() {
        let delays: Vec<u64> = (1..=11).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 256, 256]);
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_CAP);
        assert_eq!(BACKOFF_CAP.as_secs(), 256);
    }

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            ..Default::default()
        }))
    }

    #[test]
    fn an_instance_gone_at_finalizer_removal_is_not_a_failure() {
        assert!(is_gone(&FinalizerError::RemoveFinalizer(api_error(404))));
        assert!(is_gone(&FinalizerError::AddFinalizer(api_error(404))));
        assert!(!is_gone(&FinalizerError::RemoveFinalizer(api_error(409))));
        assert!(!is_gone(&FinalizerError::ApplyFailed(Error::Kube(
            api_error(404)
        ))));
    }
}
