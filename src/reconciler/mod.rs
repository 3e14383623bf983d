//! The reconcile pipeline: read (watch caches) → validate → build (pure) → classify → apply → observe →
//! decide (phase engine) → write status. Only apply and the status write touch the API, and only when
//! something differs, so a converged instance costs no write.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use redis_fsm::{Change, Observation, Phase, Reason, SpecProblem};
use tracing::{debug, instrument, warn};

use self::cleanup::cleanup;
use self::context::{instance_objects, lookup};
use self::owned::{apply_object, foreign_child, sync_optional_child};
use self::publish::{publish_status, publish_status_with};
use self::replication::{move_labels, remove_switchover_request, topology_pass};
use self::runtime_config::live_config_pass;
use self::storage::{record_replace, replace_for_storage, unix_now, unix_time_text};
use crate::api::RedisInstance;
use crate::classify::change::{classify_change, storage_request, StatefulSetChange};
use crate::classify::replace::{decide_replace, ReplaceDecision, ReplaceRecord};
use crate::converge::live_config;
use crate::converge::topology::{self};
use crate::desired::children::{self};
use crate::desired::network_policy::network_policy;
use crate::error::{Error, Result};
use crate::names::{metrics_service_name, network_policy_name, FINALIZER, REPLACE_ANNOTATION};
use crate::observe::rollout::{failed_creates, failing_pods, rollout_status, unschedulable};
use crate::validate::validate;

/// How long a storage change waits for the orphaning delete of the old StatefulSet within one reconcile.
pub const REPLACE_WAIT: Duration = Duration::from_secs(30);
/// How soon an instance whose pods do not all hold their live configuration looks again (a refusal or an
/// unreachable server changes without any watch event).
const LIVE_CONFIG_RECHECK: Duration = Duration::from_secs(5);
/// How often an instance blocked by a foreign object in a child's place looks again (that object is not watched).
const CONFLICT_RECHECK: Duration = Duration::from_secs(15);
/// How soon an instance whose pods do not all serve the TLS Secret's certificate looks again (the files in a
/// pod follow the Secret without any watch event).
const TLS_RECHECK: Duration = Duration::from_secs(3);
/// How often the users of an instance with authentication on are read back from every server even though
/// nothing the operator watches changed: rules widened through an administrative connection
/// (`ACL SETUSER exporter +@all`) change without any watch event, and are put back within this long.
pub(crate) const AUTH_RECHECK: Duration = Duration::from_secs(30);

mod auth;
mod cleanup;
mod context;
mod events;
mod owned;
mod publish;
mod replication;
mod runtime_config;
mod storage;
mod tls;

pub use self::context::{Context, RolloutMode, Settings, Stores};
pub(crate) use self::events::event;
pub(crate) use self::owned::{apply_unless_current, apply_unless_held, controlled_by};

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

async fn apply(ri: &RedisInstance, ctx: &Context) -> Result<Action> {
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    let mut observation = Observation {
        generation: ri.metadata.generation.unwrap_or_default(),
        spec_replicas: ri.spec.replicas,
        ..Default::default()
    };
    let live_sts = lookup(&ctx.stores.statefulsets, &name, &namespace);

    let errors = validate(&ri.spec);
    if !errors.is_empty() {
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let problem = SpecProblem {
            reason: Reason::InvalidSpec,
            message,
        };
        // Nothing to retry until the user changes the object.
        return refuse(ri, ctx, observation, problem, live_sts.as_deref()).await;
    }

    // Before anything is applied: a bad TLS Secret leaves everything as it is.
    let tls = match tls::prepare(ri, ctx).await? {
        Ok(tls) => tls,
        // The Secret's watch event brings the next reconcile.
        Err(problem) => return refuse(ri, ctx, observation, problem, live_sts.as_deref()).await,
    };
    let mut prepared = match auth::prepare(ri, ctx).await? {
        Ok(prepared) => prepared,
        // The Secret's watch event brings the next reconcile.
        Err(problem) => return refuse(ri, ctx, observation, problem, live_sts.as_deref()).await,
    };

    prepared.access.tls = tls.trust.clone();
    let mut desired = children::build(ri);
    if ctx.settings.rollout == RolloutMode::Statefulset {
        if let Some(spec) = desired.statefulset.spec.as_mut() {
            spec.update_strategy = Some(children::controller_rolling_update());
        }
    }
    // Pods started by an older release carry the hash of the whole file: keep it while it still matches.
    live_config::carry_legacy_hash(&mut desired, live_sts.as_deref());
    let live_replicas = live_sts
        .as_deref()
        .and_then(|sts| sts.spec.as_ref()?.replicas);
    let held = topology::scale_down_hold(
        &ri.name_any(),
        ri.spec.replicas,
        live_replicas,
        &topology::topology_status(ri.status.as_ref()),
    );
    if let (Some(hold), Some(spec)) = (held, desired.statefulset.spec.as_mut()) {
        // Never scale the primary (or a failover's target) away: hold the StatefulSet at its size.
        debug!(hold, "scale-down held: it would remove the primary");
        spec.replicas = Some(hold);
    }
    let policy = network_policy(ri, ctx.settings.operator_namespace.as_deref());
    if let Some(child) = foreign_child(ri, ctx, &desired, policy.as_ref()).await? {
        // Never adopt, overwrite or (through an owner reference) garbage-collect what someone else made.
        observation.spec_problem = Some(SpecProblem {
            reason: Reason::ChildConflict,
            message: format!(
                "{child} already exists and does not belong to this instance; the operator leaves it \
                 untouched. Delete or rename it, or give the instance another name."
            ),
        });
        publish_status(ri, ctx, &observation).await?;
        reset_backoff(ri, ctx);
        // The foreign object is not watched (it lacks the operator's labels): look again later.
        return Ok(Action::requeue(CONFLICT_RECHECK));
    }
    let replace_record = ri
        .annotations()
        .get(REPLACE_ANNOTATION)
        .and_then(|value| ReplaceRecord::parse(value));
    // The instance as last written by this reconcile: its resourceVersion guards the status write.
    let mut recorded = None;
    let mut change = classify_change(&desired.statefulset, live_sts.as_deref());
    let deleting = live_sts
        .as_deref()
        .is_some_and(|sts| sts.metadata.deletion_timestamp.is_some());
    if deleting {
        // A storage replace started by an earlier reconcile has not finished its orphaning delete.
        change = StatefulSetChange::Storage {
            expand_to: None,
            note: None,
        };
    } else if let (StatefulSetChange::Storage { .. }, Some(live)) = (&change, live_sts.as_deref()) {
        let live_created_at = live
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second());
        let decision = decide_replace(
            replace_record.as_ref(),
            observation.generation,
            unix_now(),
            live_created_at,
        );
        match decision {
            ReplaceDecision::Proceed(record) if Some(record) != replace_record => {
                // Recorded before the orphaning delete: a restarted operator must recognise its own replace.
                recorded = Some(record_replace(ri, ctx, &record).await?);
            }
            ReplaceDecision::Proceed(_) => {}
            ReplaceDecision::Wait { attempts, retry_at } => {
                observation.spec_problem = Some(SpecProblem {
                    reason: Reason::ChangeNotConverging,
                    message: format!(
                        "the StatefulSet was replaced {attempts} time(s) for generation {} to change its claim \
                         template, but the API server keeps storage {} where the spec asks for {}; next attempt \
                         at {}",
                        observation.generation,
                        storage_request(live).unwrap_or_else(|| "(none)".into()),
                        storage_request(&desired.statefulset).unwrap_or_else(|| "(none)".into()),
                        unix_time_text(retry_at),
                    ),
                });
                observation.statefulset = Some(rollout_status(live));
                publish_status(ri, ctx, &observation).await?;
                reset_backoff(ri, ctx);
                let wait = u64::try_from(retry_at - unix_now()).unwrap_or_default();
                return Ok(Action::requeue(Duration::from_secs(wait.max(1))));
            }
        }
    }
    if let StatefulSetChange::Refused(problem) = &change {
        observation.spec_problem = Some(problem.clone());
        observation.statefulset = live_sts.as_deref().map(rollout_status);
        publish_status(ri, ctx, &observation).await?;
        reset_backoff(ri, ctx);
        return Ok(Action::await_change());
    }
    let ri = recorded.as_ref().unwrap_or(ri);

    let mut config_change = None;
    let applied: Result<()> = async {
        let previous_config = lookup(
            &ctx.stores.config_maps,
            &desired.config_map.name_any(),
            &namespace,
        );
        if apply_unless_current(
            ctx,
            &namespace,
            &desired.config_map,
            &ctx.stores.config_maps,
        )
        .await?
        {
            config_change = previous_config.map(|previous| {
                live_config::classify_config_change(
                    children::config_text(&previous),
                    children::config_text(&desired.config_map),
                )
            });
        }
        apply_unless_current(ctx, &namespace, &desired.service, &ctx.stores.services).await?;
        apply_unless_current(
            ctx,
            &namespace,
            &desired.replicas_service,
            &ctx.stores.services,
        )
        .await?;
        apply_unless_current(ctx, &namespace, &desired.headless, &ctx.stores.services).await?;
        for budget in &desired.budgets {
            apply_unless_current(ctx, &namespace, budget, &ctx.stores.budgets).await?;
        }
        sync_optional_child(
            ri,
            ctx,
            &metrics_service_name(&name),
            desired.metrics_service.as_ref(),
            &ctx.stores.services,
        )
        .await?;
        sync_optional_child(
            ri,
            ctx,
            &network_policy_name(&name),
            policy.as_ref(),
            &ctx.stores.network_policies,
        )
        .await?;

        let previous = ri.phase();
        match &change {
            StatefulSetChange::None | StatefulSetChange::Refused(_) => {}
            StatefulSetChange::Create => {
                apply_object(ctx, &namespace, &desired.statefulset).await?;
                if ReplaceRecord::covers(replace_record.as_ref(), observation.generation) {
                    // The orphaning delete of a storage replace finished after an earlier reconcile gave up
                    // waiting, or the operator restarted between the delete and the re-create.
                    change = StatefulSetChange::Storage {
                        expand_to: None,
                        note: None,
                    };
                } else if !matches!(previous, Phase::Unknown | Phase::Creating) {
                    observation.missing_child =
                        Some(format!("StatefulSet {name} (re-created by the operator)"));
                }
            }
            StatefulSetChange::Rolling | StatefulSetChange::Restart => {
                apply_object(ctx, &namespace, &desired.statefulset).await?;
            }
            StatefulSetChange::Storage { expand_to, note } => {
                replace_for_storage(ri, ctx, &desired, expand_to.as_deref()).await?;
                observation.change_note = note.clone();
            }
        }
        Ok(())
    }
    .await;
    if let Err(error) = applied {
        // A child the API server refuses is missing for the user too: say so in status, then retry with back-off.
        if let Some(message) = error.rejected_child() {
            observation.missing_child = Some(message);
            observation.statefulset = live_sts.as_deref().map(rollout_status);
            publish_status(ri, ctx, &observation).await?;
        }
        return Err(error);
    }
    observation.change = change.applied();
    if let Some(config) = &config_change {
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
    if observation.change == Change::None {
        observation.statefulset = live_sts.as_deref().map(rollout_status);
        let update_revision = observation
            .statefulset
            .as_ref()
            .and_then(|s| s.update_revision.clone());
        let pods = instance_objects(&ctx.stores.pods, &name, &namespace);
        observation.failing_pods =
            failing_pods(pods.iter().map(Arc::as_ref), update_revision.as_deref());
        observation.scheduling_pending = unschedulable(pods.iter().map(Arc::as_ref));
        if let Some(sts) = live_sts.as_deref() {
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
    // Credentials first: a replica the topology pass re-points authenticates with them.
    let auth_status = auth::converge_pass(ri, ctx, &prepared).await;
    let (tls_status, tls_pending) = tls::reload_pass(ri, ctx, &tls, &prepared.access).await;
    let topology = if ri.spec.replicas > 0 && live_sts.is_some() {
        Some(topology_pass(ri, ctx, &prepared.access).await)
    } else {
        None
    };
    if let Some(pass) = &topology {
        observation.failover = pass.failover.clone();
        observation.switchover = pass.status.switchover_in_flight().is_some();
        observation.rollout = pass.rollout.clone();
        observation.manual_intervention = pass.manual_intervention.clone();
        observation.replication_pending = pass.pending.clone();
    }
    let config_pending = if live_sts.is_some() {
        let restarting = change == StatefulSetChange::Restart;
        let note = config_change.as_ref().and_then(|c| c.event(restarting));
        live_config_pass(ri, ctx, &prepared.access, note).await
    } else {
        None
    };
    observation.config_pending = config_pending;
    let written = publish_status_with(
        ri,
        ctx,
        &observation,
        topology.as_ref(),
        Some(&auth_status),
        Some(&tls_status),
    )
    .await?;
    let mut requeue = ctx.settings.resync;
    if let Some(pass) = &topology {
        if written.1 {
            // Labels follow the status as persisted: only now may a pod gain (or must it lose) a role.
            move_labels(ri, ctx, &pass.roles).await?;
            if pass.request_done {
                // Consumed (recorded as the switchover in flight, or already the primary) or refused: once.
                remove_switchover_request(ri, ctx).await?;
            }
        }
        requeue = requeue.min(pass.requeue);
    }
    if observation.config_pending.is_some() {
        requeue = requeue.min(LIVE_CONFIG_RECHECK);
    }
    if tls_pending {
        requeue = requeue.min(TLS_RECHECK);
    }
    if auth_status.enabled {
        requeue = requeue.min(AUTH_RECHECK);
    }
    reset_backoff(ri, ctx);
    // Watches on the StatefulSet, pods and claims bring every further step; the timer is a periodic resync,
    // shorter while the topology moves.
    Ok(Action::requeue(requeue))
}

/// Reports a spec problem (nothing is applied) and waits for a change of the instance or of a watched object.
async fn refuse(
    ri: &RedisInstance,
    ctx: &Context,
    mut observation: Observation,
    problem: SpecProblem,
    live_sts: Option<&StatefulSet>,
) -> Result<Action> {
    observation.spec_problem = Some(problem);
    observation.statefulset = live_sts.map(rollout_status);
    publish_status(ri, ctx, &observation).await?;
    reset_backoff(ri, ctx);
    Ok(Action::await_change())
}

/// When the operator last applied a change (the newest transition into Creating or Updating).
fn last_change_time(ri: &RedisInstance) -> Option<String> {
    ri.status
        .as_ref()?
        .history
        .entries()
        .iter()
        .rev()
        .find(|t| matches!(t.to, Phase::Creating | Phase::Updating))
        .map(|t| t.time.clone())
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
