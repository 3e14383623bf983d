//! The children: what the instance should have (pure, adjusted to what is live), a refusal when someone
//! else's object holds a child's place, how the StatefulSet converges, and applying what differs.

use std::time::Duration;

use futures::future::{try_join_all, BoxFuture};
use futures::{FutureExt, TryFutureExt};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use redis_fsm::{Phase, Reason, SpecProblem};
use tracing::debug;

use super::context::{lookup, Context, RolloutMode, Snapshot};
use super::owned::{apply_object, apply_unless_current, foreign_child, sync_optional_child};
use super::passes::CONFLICT_RECHECK;
use super::report::{refuse, Next, Report};
use super::storage::{record_replace, replace_for_storage, unix_time_text};
use crate::api::RedisInstance;
use crate::classify::change::{classify_change, storage_request, StatefulSetChange};
use crate::classify::replace::{decide_replace, ReplaceDecision, ReplaceRecord};
use crate::converge::live_config;
use crate::converge::topology;
use crate::desired::children::{self, Desired};
use crate::desired::network_policy::network_policy;
use crate::error::{Error, Result};
use crate::names::{metrics_service_name, network_policy_name, REPLACE_ANNOTATION};
use crate::observe::rollout::rollout_status;

/// Every object the instance should have (pure, from the spec and the live StatefulSet).
pub(super) struct DesiredObjects {
    /// The children built from the spec.
    pub(super) children: Desired,
    /// The NetworkPolicy, when on.
    pub(super) policy: Option<k8s_openapi::api::networking::v1::NetworkPolicy>,
}

/// The desired children, adjusted to what is live: the StatefulSet's update strategy for the rollout mode, the
/// legacy configuration hash, and a scale-down held while it would remove the primary.
pub(super) fn desired_objects(
    ri: &RedisInstance,
    ctx: &Context,
    snapshot: &Snapshot,
) -> DesiredObjects {
    let live_sts = snapshot.statefulset.as_deref();
    let mut desired = children::build(ri);
    if ctx.settings.rollout == RolloutMode::Statefulset {
        if let Some(spec) = desired.statefulset.spec.as_mut() {
            spec.update_strategy = Some(children::controller_rolling_update());
        }
    }
    // Pods started by an older release carry the hash of the whole file: keep it while it still matches.
    live_config::carry_legacy_hash(&mut desired, live_sts);
    let live_replicas = live_sts.and_then(|sts| sts.spec.as_ref()?.replicas);
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
    DesiredObjects {
        children: desired,
        policy: network_policy(ri, ctx.settings.operator_namespace.as_deref()),
    }
}

/// Stops when a child's place is taken by an object this instance does not own: it is never adopted,
/// overwritten or (through an owner reference) garbage-collected.
pub(super) async fn refuse_foreign(
    ri: &RedisInstance,
    ctx: &Context,
    desired: &DesiredObjects,
    report: &mut Report,
) -> Result<Next<()>> {
    let Some(child) = foreign_child(ri, ctx, &desired.children, desired.policy.as_ref()).await?
    else {
        return Ok(Next::Go(()));
    };
    report.observation.spec_problem = Some(SpecProblem {
        reason: Reason::ChildConflict,
        message: format!(
            "{child} already exists and does not belong to this instance; the operator leaves it \
             untouched. Delete or rename it, or give the instance another name."
        ),
    });
    report.publish = true;
    // The foreign object is not watched (it lacks the operator's labels): look again later.
    Ok(Next::Stop(Action::requeue(CONFLICT_RECHECK)))
}

/// How the StatefulSet converges (see [`classify_change`]); a storage change records its replace on the
/// instance before the orphaning delete, and waits while an earlier replace did not take; a refused change
/// stops.
pub(super) async fn classify(
    ri: &RedisInstance,
    ctx: &Context,
    snapshot: &Snapshot,
    desired: &Desired,
    report: &mut Report,
) -> Result<Next<StatefulSetChange>> {
    let live_sts = snapshot.statefulset.as_deref();
    let observation = &mut report.observation;
    let replace_record = ri
        .annotations()
        .get(REPLACE_ANNOTATION)
        .and_then(|value| ReplaceRecord::parse(value));
    let mut change = classify_change(&desired.statefulset, live_sts);
    let deleting = live_sts.is_some_and(|sts| sts.metadata.deletion_timestamp.is_some());
    if deleting {
        // A storage replace started by an earlier reconcile has not finished its orphaning delete.
        change = StatefulSetChange::Storage {
            expand_to: None,
            note: None,
        };
    } else if let (StatefulSetChange::Storage { .. }, Some(live)) = (&change, live_sts) {
        let live_created_at = live
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second());
        let decision = decide_replace(
            replace_record.as_ref(),
            observation.generation,
            snapshot.now.as_second(),
            live_created_at,
        );
        match decision {
            ReplaceDecision::Proceed(record) if Some(record) != replace_record => {
                // Recorded before the orphaning delete: a restarted operator must recognise its own replace.
                report.recorded = Some(record_replace(ri, ctx, &record).await?);
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
                report.publish = true;
                let wait = u64::try_from(retry_at - snapshot.now.as_second()).unwrap_or_default();
                return Ok(Next::Stop(Action::requeue(Duration::from_secs(
                    wait.max(1),
                ))));
            }
        }
    }
    if let StatefulSetChange::Refused(problem) = change {
        return Ok(refuse(snapshot, problem, report));
    }
    Ok(Next::Go(change))
}

/// Applies every child that differs, the StatefulSet last; says how the configuration changed, if it did.
pub(super) async fn apply_children(
    ri: &RedisInstance,
    ctx: &Context,
    snapshot: &Snapshot,
    desired: &DesiredObjects,
    change: &mut StatefulSetChange,
    report: &mut Report,
) -> Result<Option<live_config::ConfigChange>> {
    let applied = apply_each(ri, ctx, snapshot, desired, change, report).await;
    if let Err(error) = &applied {
        // A child the API server refuses is missing for the user too: say so in status (the reconcile is retried
        // with back-off).
        if let Some(message) = error.rejected_child() {
            report.observation.missing_child = Some(message);
            report.observation.statefulset = snapshot.statefulset.as_deref().map(rollout_status);
            report.publish = true;
        }
    }
    applied
}

/// [`apply_children`], until the first error (the children are applied together, the StatefulSet once the
/// ConfigMap and the NetworkPolicy are: one may be applied while another failed).
async fn apply_each(
    ri: &RedisInstance,
    ctx: &Context,
    snapshot: &Snapshot,
    desired: &DesiredObjects,
    change: &mut StatefulSetChange,
    report: &mut Report,
) -> Result<Option<live_config::ConfigChange>> {
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    let observation = &mut report.observation;
    let policy = desired.policy.as_ref();
    let desired = &desired.children;
    // The children go out together. The StatefulSet follows the ConfigMap (its pods mount it) and the
    // NetworkPolicy (no pod serves before its policy is in place); the Services and budgets go out beside it, as
    // no pod needs them to start and a Service's cluster IP can take the API server seconds to allocate under
    // load (docs/benchmarks.md: p50 1.1 s for 300 Services created at once).
    let config_map = async {
        let previous_config = lookup(
            &ctx.stores.config_maps,
            &desired.config_map.name_any(),
            &namespace,
        );
        let applied = apply_unless_current(
            ctx,
            &namespace,
            &desired.config_map,
            &ctx.stores.config_maps,
        )
        .await?;
        Ok::<_, Error>(previous_config.filter(|_| applied).map(|previous| {
            live_config::classify_config_change(
                children::config_text(&previous),
                children::config_text(&desired.config_map),
            )
        }))
    };
    let (metrics_name, policy_name) = (metrics_service_name(&name), network_policy_name(&name));
    let mut others: Vec<BoxFuture<'_, Result<bool>>> = [
        &desired.service,
        &desired.replicas_service,
        &desired.headless,
    ]
    .into_iter()
    .map(|service| apply_unless_current(ctx, &namespace, service, &ctx.stores.services).boxed())
    .collect();
    for budget in &desired.budgets {
        others.push(apply_unless_current(ctx, &namespace, budget, &ctx.stores.budgets).boxed());
    }
    others.push(
        sync_optional_child(
            ri,
            ctx,
            &metrics_name,
            desired.metrics_service.as_ref(),
            &ctx.stores.services,
        )
        .map_ok(|()| true)
        .boxed(),
    );
    let network_policy =
        sync_optional_child(ri, ctx, &policy_name, policy, &ctx.stores.network_policies);
    let statefulset = async {
        let (config_change, ()) = futures::try_join!(config_map, network_policy)?;
        converge_statefulset(ri, ctx, snapshot, desired, change, observation).await?;
        Ok::<_, Error>(config_change)
    };
    let (config_change, _) = futures::try_join!(statefulset, try_join_all(others))?;
    Ok(config_change)
}

/// Applies the StatefulSet as `change` says (creates it, updates it, or replaces it for a storage change).
async fn converge_statefulset(
    ri: &RedisInstance,
    ctx: &Context,
    snapshot: &Snapshot,
    desired: &Desired,
    change: &mut StatefulSetChange,
    observation: &mut redis_fsm::Observation,
) -> Result<()> {
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    let previous = ri.phase();
    let replace_record = ri
        .annotations()
        .get(REPLACE_ANNOTATION)
        .and_then(|value| ReplaceRecord::parse(value));
    match &*change {
        StatefulSetChange::None | StatefulSetChange::Refused(_) => {}
        StatefulSetChange::Create => {
            apply_object(ctx, &namespace, &desired.statefulset).await?;
            if ReplaceRecord::covers(replace_record.as_ref(), observation.generation) {
                // The orphaning delete of a storage replace finished after an earlier reconcile gave up
                // waiting, or the operator restarted between the delete and the re-create.
                *change = StatefulSetChange::Storage {
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
            replace_for_storage(
                ri,
                ctx,
                snapshot.statefulset.as_deref(),
                desired,
                expand_to.as_deref(),
            )
            .await?;
            observation.change_note = note.clone();
        }
    }
    Ok(())
}
