//! The reconcile pipeline: read (watch caches) → validate → build (pure) → classify → apply → observe →
//! decide (phase engine) → write status. Only apply and the status write touch the API, and only when
//! something differs, so a converged instance costs no write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event as CoreEvent, Node, PersistentVolumeClaim, Pod, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use redis_fsm::{
    confirmed_primary, decide, desired_roles, label_patches, replication_conditions,
    replication_pending, rollout_progress, step, Change, Decision, Observation, Phase,
    PodReplication, Reason, ReplicationSummary, RoleLabel, RolloutPolicy, SpecProblem,
    TopologyAction, TopologyPolicy, TopologyStatus, WaitReason,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{debug, info, instrument, warn};

use crate::api::quantity::Quantity;
use crate::api::{ClaimDeletePolicy, PrimaryUpdateStrategy, RedisInstance};
use crate::classify::change::{classify_change, storage_request, StatefulSetChange};
use crate::classify::diff::is_applied;
use crate::classify::replace::{decide_replace, ReplaceDecision, ReplaceRecord};
use crate::converge::live_config;
use crate::converge::switchover;
use crate::converge::topology::{self};
use crate::desired::children::{self, Desired};
use crate::desired::network_policy::network_policy;
use crate::desired::redis_conf;
use crate::error::{Error, Result};
use crate::events::EventReason;
use crate::names::{
    claim_name, instance_named_by, metrics_service_name, network_policy_name, FIELD_MANAGER,
    FINALIZER, INSTANCE_LABEL, MANAGED_SELECTOR, REPLACE_ANNOTATION, ROLE_LABEL,
};
use crate::observe::ownership;
use crate::observe::rollout::{
    failed_creates, failing_pods, rollout_status, unschedulable, FAILED_CREATE,
};
use crate::observe::secrets::{self, SecretMeta, Secrets};
use crate::observe::watch::{self, WatchBackoff};
use crate::redis::{Access, Timeouts};
use crate::runtime::leader::Leadership;
use crate::runtime::metrics::Metrics;
use crate::status::{next_status, now};
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
mod tls;

/// Operator settings that reconciles need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Only watch this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// How often a healthy instance is reconciled again without any event.
    pub resync: Duration,
    /// Name reported as the controller in Events.
    pub reporter: String,
    /// Who orders a rolling update's pod replacements.
    pub rollout: RolloutMode,
    /// Whether to watch Nodes, to switch over off a cordoned node (needs cluster-wide `list`/`watch` on Nodes).
    pub watch_nodes: bool,
    /// The namespace the operator's pods run in (`POD_NAMESPACE`): the instances' NetworkPolicies let its pods
    /// reach Redis. `None` outside the cluster.
    pub operator_namespace: Option<String>,
}

/// Who orders the pod replacements of a rolling update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RolloutMode {
    /// The operator: replicas one at a time, a switchover, the old primary last (StatefulSet `OnDelete`).
    PrimaryLast,
    /// The StatefulSet controller's own rolling update (highest ordinal first, whatever the roles). Only for
    /// comparison: it restarts the primary mid-rollout.
    Statefulset,
}

/// The watch caches every reconcile reads from.
#[derive(Clone)]
pub struct Stores {
    /// RedisInstances (the controller's own cache).
    pub instances: Store<RedisInstance>,
    /// Owned StatefulSets.
    pub statefulsets: Store<StatefulSet>,
    /// Owned ConfigMaps.
    pub config_maps: Store<ConfigMap>,
    /// Owned Services.
    pub services: Store<Service>,
    /// Redis pods (labelled by the operator).
    pub pods: Store<Pod>,
    /// Data claims (labelled by the claim template).
    pub claims: Store<PersistentVolumeClaim>,
    /// `FailedCreate` Events of StatefulSets: pods their controller could not create.
    pub create_failures: Store<CoreEvent>,
    /// Owned PodDisruptionBudgets.
    pub budgets: Store<PodDisruptionBudget>,
    /// Owned NetworkPolicies.
    pub network_policies: Store<NetworkPolicy>,
    /// Every Secret of the namespace(s), metadata only: whether one exists and at which version (their content
    /// is read by name, see [`Secrets`]).
    pub secrets: Store<SecretMeta>,
    /// Nodes (whether they are cordoned), when the operator watches every namespace; a namespaced install has
    /// no cluster-wide permission, and then does not switch over off cordoned nodes.
    pub nodes: Option<Store<Node>>,
}

impl Stores {
    /// Waits until every cache has completed its initial list, so no reconcile mistakes an unlisted child for
    /// a missing one.
    pub async fn wait_ready(&self) -> Result<()> {
        ready(&self.instances, "RedisInstance").await?;
        ready(&self.statefulsets, "StatefulSet").await?;
        ready(&self.config_maps, "ConfigMap").await?;
        ready(&self.services, "Service").await?;
        ready(&self.pods, "Pod").await?;
        ready(&self.claims, "PersistentVolumeClaim").await?;
        ready(&self.budgets, "PodDisruptionBudget").await?;
        ready(&self.network_policies, "NetworkPolicy").await?;
        ready(&self.secrets, "Secret").await?;
        if let Some(nodes) = &self.nodes {
            ready(nodes, "Node").await?;
        }
        ready(&self.create_failures, "Event").await
    }
}

async fn ready<K>(store: &Store<K>, kind: &'static str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    // A store's readiness signal keeps only the waker of its most recent waiter, so with several waiters
    // (the controller, the readiness probe, concurrent reconciles) some would never be woken: wait in short
    // rounds so that every waiter polls again.
    loop {
        let round = tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready());
        if let Ok(result) = round.await {
            return result.map_err(|_| Error::CacheUnavailable(kind));
        }
    }
}

/// Shared state of all reconciles.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Watch caches.
    pub stores: Stores,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub settings: Settings,
    /// Whether this process may send topology commands to Redis servers (the Lease holder only).
    pub leadership: Leadership,
    /// Bounds of every call to a Redis server.
    pub redis_timeouts: Timeouts,
    /// The content of the Secrets instances name, read by name.
    pub secrets: Secrets,
    /// Consecutive failures per instance, for exponential back-off.
    failures: Mutex<HashMap<ObjectRef<RedisInstance>, u32>>,
    /// Per instance, what its servers were last all found holding, and when (see `auth::converge_pass`).
    auth_verified: Mutex<HashMap<ObjectRef<RedisInstance>, (u64, std::time::Instant)>>,
    /// Per instance and pod, what each server reported for its users after the operator set them.
    acl_reported: Mutex<
        HashMap<
            ObjectRef<RedisInstance>,
            std::collections::BTreeMap<String, crate::converge::auth::Reported>,
        >,
    >,
}

pub(crate) fn lookup<K>(store: &Store<K>, name: &str, namespace: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(namespace))
}

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

/// Sets the live configuration values on every pod that lacks them (see [`live_config`]), and reports which
/// path a configuration change applied in this reconcile took. Returns what is still not applied, for the phase
/// engine.
async fn live_config_pass(
    ri: &RedisInstance,
    ctx: &Context,
    access: &Access,
    change_event: Option<(EventReason, String)>,
) -> Option<String> {
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    let settings =
        live_config::desired(&redis_conf::settings(&ri.spec.config, &ri.spec.replication));
    let pods = instance_objects(&ctx.stores.pods, &name, &namespace);
    let leadership = ctx.leadership.clone();
    let (unapplied, set) =
        live_config::converge(&pods, &settings, access, || leadership.is_held()).await;
    for (pod, directives) in &set {
        info!(%pod, directives = %directives.join(","), "configuration set at runtime");
    }
    if let Some((reason, note)) = change_event {
        event(ctx, ri, EventType::Normal, reason, "ConfigChange", note).await;
    }
    let pending = live_config::pending_message(&unapplied);
    if let Some(pending) = &pending {
        debug!(%pending, "live configuration not applied everywhere");
    }
    pending
}

/// One pass of the replication topology: what was observed, decided and done, and what to record.
struct TopologyPass {
    /// The topology status to record (after the decision's status write, if it is one).
    status: TopologyStatus,
    /// The per-pod summaries to record.
    pods: Vec<crate::api::PodStatus>,
    /// The role label every observed pod should carry.
    roles: Vec<(String, Option<RoleLabel>)>,
    /// How soon to look again.
    requeue: Duration,
    /// A failover in flight, for the phase engine.
    failover: Option<String>,
    /// Why a person must decide, for the phase engine.
    manual_intervention: Option<SpecProblem>,
    /// Pods that do not serve their role yet, for the phase engine (not `Running` until `None`).
    pending: Option<String>,
    /// The step an operator-ordered rolling update is at, for the phase engine.
    rollout: Option<redis_fsm::Progress>,
    /// The switchover annotation is to be removed once the status is written.
    request_done: bool,
}

/// Observes every pod's server, decides the one next topology step and, when it is a command, sends it (only
/// while leading). A status write is only computed here; the caller persists it before anything acts on it.
async fn topology_pass(ri: &RedisInstance, ctx: &Context, access: &Access) -> TopologyPass {
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    let replicas = u32::try_from(ri.spec.replicas).unwrap_or_default();
    let pods = instance_objects(&ctx.stores.pods, &name, &namespace);
    // Every pod the StatefulSet keeps (more than spec.replicas while a scale-down is held) is observed.
    let live_sts = lookup(&ctx.stores.statefulsets, &name, &namespace);
    let kept = live_sts
        .as_deref()
        .and_then(|sts| sts.spec.as_ref()?.replicas)
        .and_then(|r| u32::try_from(r).ok())
        .unwrap_or(replicas)
        .max(replicas);
    let context = topology::PodContext {
        update_revision: live_sts.as_deref().and_then(|sts| {
            let status = sts.status.as_ref()?;
            // A revision from before the controller saw the latest template would call updated pods outdated.
            (status.observed_generation >= sts.metadata.generation)
                .then(|| status.update_revision.clone())
                .flatten()
        }),
        cordoned_nodes: ctx.stores.nodes.as_ref().map_or_else(Vec::new, |nodes| {
            nodes
                .state()
                .iter()
                .filter(|n| n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true))
                .map(|n| n.name_any())
                .collect()
        }),
    };
    let observed = topology::observe(&name, kept, &pods, &context, access).await;
    let persisted = topology::topology_status(ri.status.as_ref());
    let request = switchover::requested(ri);
    let refused = request
        .as_deref()
        .and_then(|to| switchover::refusal(ri, to));
    let policy = TopologyPolicy {
        replicas,
        // Validated to be 0 to 3600.
        failover_delay: Duration::from_secs(
            u64::try_from(ri.spec.replication.failover_delay_seconds).unwrap_or_default(),
        ),
        switchover_timeout: topology::SWITCHOVER_TIMEOUT * 2 + Duration::from_secs(2),
        max_lag_bytes: topology::MAX_LAG_BYTES,
        rollout: match (
            ctx.settings.rollout,
            ri.spec.replication.primary_update_strategy,
        ) {
            (RolloutMode::Statefulset, _) => RolloutPolicy::Controller,
            (_, PrimaryUpdateStrategy::Supervised) => RolloutPolicy::Supervised,
            (_, PrimaryUpdateStrategy::Unsupervised) => RolloutPolicy::PrimaryLast,
        },
        switchover_request: request.clone().filter(|_| refused.is_none()),
        ..TopologyPolicy::default()
    };
    let now = topology::now();
    let action = decide(&persisted, &observed, &policy, now);
    if matches!(
        action,
        TopologyAction::Bootstrap { .. }
            | TopologyAction::StartFailover { .. }
            | TopologyAction::SetTargetPrimary { .. }
            | TopologyAction::StartSwitchover { .. }
            | TopologyAction::AbortSwitchover { .. }
            | TopologyAction::AbortFailover { .. }
            | TopologyAction::DeletePod { .. }
            | TopologyAction::Stop { .. }
    ) {
        info!(
            ?action,
            recorded = ?persisted,
            observed = %topology::observation_line(&observed),
            "topology decision"
        );
    }
    let next = persisted
        .after(&action)
        .unwrap_or_else(|| persisted.clone());
    let mut requeue = topology::requeue_after(&action, now).unwrap_or(ctx.settings.resync);
    if replicas >= 2 {
        // The operator watches the primary itself, not only through pod events: a primary busy in a script or
        // at maxclients keeps its readiness (see `readiness_script`), and must still be seen within the delay.
        requeue = requeue.min(topology::watch_interval(policy.failover_delay));
    }
    if let TopologyAction::DeletePod { pod, .. } = &action {
        replace_pod(ri, ctx, pod).await;
    } else if action.is_command() {
        let leadership = ctx.leadership.clone();
        match topology::execute(&action, &observed, access, || leadership.is_held()).await {
            Ok(()) => {
                info!(?action, "topology command sent");
                disconnect_demoted(&persisted, &action, &observed, ctx, access).await;
            }
            Err(error) => warn!(%error, ?action, "topology command failed; observing again"),
        }
    } else {
        if action != TopologyAction::Steady {
            debug!(?action, "topology step");
        }
        disconnect_demoted(&persisted, &action, &observed, ctx, access).await;
    }
    report_topology_action(ri, ctx, &persisted, &action).await;
    let roles = desired_roles(&next, &observed, topology::MAX_LAG_BYTES);
    if roles
        .iter()
        .zip(&observed)
        .any(|((_, role), pod)| role.is_none() && pod.is_observed())
    {
        // A replica still syncing becomes labelled without any watch event: look again soon.
        requeue = requeue.min(Duration::from_secs(2));
    }
    let primary_offset = confirmed_primary(&next, &observed)
        .and_then(PodReplication::state)
        .map(|s| s.repl_offset);
    let previous = ri
        .status
        .as_ref()
        .map(|s| s.pods.as_slice())
        .unwrap_or_default();
    let manual_intervention = match &action {
        TopologyAction::Stop { reason } => Some(SpecProblem {
            reason: reason.reason(),
            message: format!("Manual intervention needed: {reason}"),
        }),
        _ => None,
    };
    let mut pending = replication_pending(&observed, &roles, replicas);
    if let (
        TopologyAction::Wait {
            reason: reason @ WaitReason::SwitchoverTargetNotCaughtUp(_),
        },
        None,
    ) = (&action, next.switchover_in_flight())
    {
        // A requested switchover that cannot start yet: the instance is not as asked.
        pending.get_or_insert_with(|| format!("switchover requested: {reason}"));
    }
    if let Some(why) = &refused {
        event(
            ctx,
            ri,
            EventType::Warning,
            EventReason::SwitchoverRefused,
            "Switchover",
            why.clone(),
        )
        .await;
    }
    // The request stays until it is done (an abandoned switchover is retried after its back-off), or refused.
    let request_done = refused.is_some()
        || request.as_deref().is_some_and(|to| {
            next.current_primary.as_deref() == Some(to) && !next.failover_in_flight()
        });
    if pending.is_some() {
        // A pod that is starting, parked or syncing changes without any watch event (a parked pod is not Ready
        // and stays so until it is re-pointed): look again soon until every pod serves its role.
        requeue = requeue.min(Duration::from_secs(2));
    }
    TopologyPass {
        pending,
        rollout: rollout_progress(&action),
        request_done,
        failover: topology::failover_message(&next, &action),
        manual_intervention,
        pods: topology::pod_summaries(
            previous,
            &observed,
            &roles,
            primary_offset,
            &crate::status::now(),
        ),
        status: next,
        roles,
        requeue,
    }
}

/// Disconnects the clients of the servers `action` demoted (`redis_fsm::demoted_by`), once it is carried out.
async fn disconnect_demoted(
    persisted: &TopologyStatus,
    action: &TopologyAction,
    observed: &[PodReplication],
    ctx: &Context,
    access: &Access,
) {
    let demoted = redis_fsm::demoted_by(persisted, action, observed);
    if demoted.is_empty() {
        return;
    }
    let leadership = ctx.leadership.clone();
    match topology::disconnect_clients(&demoted, observed, access, || leadership.is_held()).await {
        Ok(clients) => info!(
            ?demoted,
            clients, "disconnected the clients of demoted servers"
        ),
        Err(error) => {
            warn!(%error, ?demoted, "could not disconnect the clients of demoted servers")
        }
    }
}

/// Events for the topology steps a user wants to see: a failover starting, a primary confirmed, a stop.
async fn report_topology_action(
    ri: &RedisInstance,
    ctx: &Context,
    persisted: &TopologyStatus,
    action: &TopologyAction,
) {
    let (type_, reason, note) = match action {
        TopologyAction::StartFailover { failure } => (
            EventType::Warning,
            EventReason::FailoverStarted,
            format!(
                "Failing over from {}: {failure}",
                persisted.current_primary.as_deref().unwrap_or("(none)")
            ),
        ),
        TopologyAction::StartSwitchover { to, reason, .. } => (
            EventType::Normal,
            EventReason::SwitchoverStarted,
            format!(
                "Switching over from {} to {to} ({reason}) with FAILOVER TO: writes pause until {to} has \
                 caught up",
                persisted.current_primary.as_deref().unwrap_or("(none)")
            ),
        ),
        TopologyAction::AbortSwitchover { to, retry_at } => (
            EventType::Warning,
            EventReason::SwitchoverAbandoned,
            format!(
                "The switchover from {} to {to} did not complete in time ({to} did not catch up, or Redis \
                 rolled the FAILOVER back); writes continue on {}. Next attempt after {}",
                persisted.current_primary.as_deref().unwrap_or("(none)"),
                persisted.current_primary.as_deref().unwrap_or("(none)"),
                topology::format_time(*retry_at)
            ),
        ),
        TopologyAction::DeletePod { .. } => {
            let Some(step) = rollout_progress(action) else {
                return;
            };
            // One reason per step: Events of one reason are merged into a series that keeps the first note.
            let reason = match action {
                TopologyAction::DeletePod { step, .. } => step.reason(),
                _ => Reason::StatefulSetUpdating,
            };
            (EventType::Normal, reason.into(), step.message)
        }
        TopologyAction::ConfirmPrimary { pod, .. }
            if persisted.current_primary.as_deref() != Some(pod.as_str())
                || persisted.primary_run_id.is_none() =>
        {
            (
                EventType::Normal,
                Reason::PrimaryConfirmed.into(),
                format!("{pod} is the primary"),
            )
        }
        // Once: the phase engine keeps the reason in status while the stop lasts.
        TopologyAction::Stop { reason }
            if ri.status.as_ref().map(|s| s.reason.as_str()) != Some(reason.reason().as_str()) =>
        {
            (
                EventType::Warning,
                reason.reason().into(),
                format!("Manual intervention needed: {reason}"),
            )
        }
        _ => return,
    };
    let namespace = ri.namespace().unwrap_or_default();
    ctx.metrics
        .record_topology_event(&namespace, &ri.name_any(), reason);
    event(ctx, ri, type_, reason, "Topology", note).await;
}

/// Deletes `pod` (one step of an operator-ordered rolling update) so its StatefulSet re-creates it at the update
/// revision. Only while leading, and only the pod the decision saw (its uid as precondition): a pod re-created
/// meanwhile is left alone. Failures are logged; the next pass decides again.
async fn replace_pod(ri: &RedisInstance, ctx: &Context, pod: &str) {
    let namespace = ri.namespace().unwrap_or_default();
    if !ctx.leadership.is_held() {
        warn!(%pod, "not deleting: leadership of the operator is not proven");
        return;
    }
    let uid = lookup(&ctx.stores.pods, pod, &namespace).and_then(|p| p.metadata.uid.clone());
    let params = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    match api.delete(pod, &params).await {
        Ok(_) => info!(%pod, "pod deleted for the rolling update"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => {
            ctx.metrics.record_api_error("delete", &e);
            warn!(%pod, error = %e, "pod deletion for the rolling update failed; observing again");
        }
    }
}

/// Removes the switchover annotation (a metadata patch that leaves everything else alone).
async fn remove_switchover_request(ri: &RedisInstance, ctx: &Context) -> Result<()> {
    let api: Api<RedisInstance> =
        Api::namespaced(ctx.client.clone(), &ri.namespace().unwrap_or_default());
    let patch = switchover::annotation_patch(None);
    match api
        .patch(
            &ri.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => {
            ctx.metrics.record_api_error("patch", &e);
            Err(e.into())
        }
    }
}

/// Patches the role labels of the instance's pods towards `desired`, in `label_patches` order: every removal
/// of the primary label before the one that adds it, so no two pods are ever labelled primary.
async fn move_labels(
    ri: &RedisInstance,
    ctx: &Context,
    desired: &[(String, Option<RoleLabel>)],
) -> Result<()> {
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    let pods = instance_objects(&ctx.stores.pods, &name, &namespace);
    // Every labelled pod, including those beyond spec.replicas, so a stale primary label is removed too.
    let live: Vec<(String, Option<RoleLabel>)> = pods
        .iter()
        .map(|pod| (pod.name_any(), topology::live_role(pod)))
        .collect();
    let mut desired: Vec<(String, Option<RoleLabel>)> = desired
        .iter()
        .filter(|(pod, _)| live.iter().any(|(name, _)| name == pod))
        .cloned()
        .collect();
    for (pod, _) in &live {
        if !desired.iter().any(|(name, _)| name == pod) {
            desired.push((pod.clone(), None));
        }
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    for (pod, role) in label_patches(&live, &desired) {
        let patch =
            serde_json::json!({"metadata": {"labels": {ROLE_LABEL: role.map(RoleLabel::as_str)}}});
        match api
            .patch(&pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => info!(%pod, role = role.map_or("none", RoleLabel::as_str), "role label set"),
            // The pod went away meanwhile; its replacement is labelled by a later pass.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                ctx.metrics.record_api_error("patch", &e);
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Whether `object` is controlled by the instance: its controller owner reference carries the instance's uid.
pub(crate) fn controlled_by(object: &impl Resource, ri: &RedisInstance) -> bool {
    let Some(uid) = ri.metadata.uid.as_deref() else {
        return false;
    };
    object
        .owner_references()
        .iter()
        .any(|owner| owner.controller == Some(true) && owner.uid == uid)
}

/// The first child that exists but is not controlled by this instance, as `"Kind name"`. The caches only hold
/// objects with the operator's labels, so a child they lack is read from the API server: only then, when the
/// operator is about to create it, which keeps a converged instance at zero requests here.
async fn foreign_child(
    ri: &RedisInstance,
    ctx: &Context,
    desired: &Desired,
    policy: Option<&NetworkPolicy>,
) -> Result<Option<String>> {
    let namespace = ri.namespace().unwrap_or_default();
    let stores = &ctx.stores;
    if let Some(child) = foreign(
        ri,
        ctx,
        &namespace,
        &desired.config_map,
        &stores.config_maps,
    )
    .await?
    {
        return Ok(Some(child));
    }
    for service in [
        &desired.service,
        &desired.replicas_service,
        &desired.headless,
    ]
    .into_iter()
    .chain(desired.metrics_service.as_ref())
    {
        if let Some(child) = foreign(ri, ctx, &namespace, service, &stores.services).await? {
            return Ok(Some(child));
        }
    }
    for budget in &desired.budgets {
        if let Some(child) = foreign(ri, ctx, &namespace, budget, &stores.budgets).await? {
            return Ok(Some(child));
        }
    }
    if let Some(policy) = policy {
        if let Some(child) = foreign(ri, ctx, &namespace, policy, &stores.network_policies).await? {
            return Ok(Some(child));
        }
    }
    if let Some(child) = foreign(
        ri,
        ctx,
        &namespace,
        &desired.statefulset,
        &stores.statefulsets,
    )
    .await?
    {
        return Ok(Some(child));
    }
    foreign_claim(ri, ctx, desired).await
}

/// The first data claim a pod of the StatefulSet would use (`data-NAME-N` for every ordinal it keeps) that
/// exists but was not made from the instance's claim template, as `"PersistentVolumeClaim name"`: the
/// StatefulSet controller would start a pod on whatever claim has that name. The cache holds the template's
/// claims; one it lacks is read from the API server (only then, so a converged instance makes no request here).
async fn foreign_claim(
    ri: &RedisInstance,
    ctx: &Context,
    desired: &Desired,
) -> Result<Option<String>> {
    let Some(spec) = desired.statefulset.spec.as_ref() else {
        return Ok(None);
    };
    if spec.volume_claim_templates.is_none() {
        return Ok(None);
    }
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    for ordinal in 0..spec.replicas.unwrap_or_default().max(0) {
        let claim_name = claim_name(&name, ordinal);
        let live = match lookup(&ctx.stores.claims, &claim_name, &namespace) {
            Some(cached) => Some(cached),
            None => api
                .get_opt(&claim_name)
                .await
                .inspect_err(|e| ctx.metrics.record_api_error("get", e))?
                .map(Arc::new),
        };
        if live.is_some_and(|claim| !ownership::from_claim_template(&claim, &name)) {
            return Ok(Some(format!("PersistentVolumeClaim {claim_name}")));
        }
    }
    Ok(None)
}

async fn foreign<K>(
    ri: &RedisInstance,
    ctx: &Context,
    namespace: &str,
    desired: &K,
    store: &Store<K>,
) -> Result<Option<String>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + 'static,
{
    let name = desired.name_any();
    let live = match lookup(store, &name, namespace) {
        Some(live) => Some(live),
        None => {
            let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
            api.get_opt(&name)
                .await
                .inspect_err(|e| ctx.metrics.record_api_error("get", e))?
                .map(Arc::new)
        }
    };
    Ok(live
        .filter(|live| !controlled_by(&**live, ri))
        .map(|_| format!("{} {name}", K::kind(&()))))
}

/// Writes the replace record on the instance (a metadata patch, before the orphaning delete); returns the
/// instance as written, whose resourceVersion the status write of this reconcile must use.
async fn record_replace(
    ri: &RedisInstance,
    ctx: &Context,
    record: &ReplaceRecord,
) -> Result<RedisInstance> {
    let api: Api<RedisInstance> =
        Api::namespaced(ctx.client.clone(), &ri.namespace().unwrap_or_default());
    let patch =
        serde_json::json!({"metadata": {"annotations": {REPLACE_ANNOTATION: record.render()}}});
    let mut written = api
        .patch(
            &ri.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .inspect_err(|e| ctx.metrics.record_api_error("patch", e))?;
    written.metadata.managed_fields = None;
    Ok(written)
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

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

/// A Unix time as RFC 3339 (seconds).
fn unix_time_text(seconds: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

/// Objects of the given kind that carry this instance's label, from a watch cache.
pub(crate) fn instance_objects<K>(store: &Store<K>, name: &str, namespace: &str) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .into_iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
        .filter(|o| o.labels().get(INSTANCE_LABEL).map(String::as_str) == Some(name))
        .collect()
}

/// The instance's data claims (`data-NAME-ORDINAL`, from the claim template), from the watch cache.
fn data_claims(ctx: &Context, name: &str, namespace: &str) -> Vec<Arc<PersistentVolumeClaim>> {
    // Every ordinal's claim name starts with the one of an empty ordinal.
    let prefix = claim_name(name, "");
    instance_objects(&ctx.stores.claims, name, namespace)
        .into_iter()
        .filter(|claim| claim.name_any().starts_with(&prefix))
        .collect()
}

/// Applies `desired` with server-side apply unless the cached live object already holds it; says whether it
/// applied.
pub(crate) async fn apply_unless_current<K>(
    ctx: &Context,
    namespace: &str,
    desired: &K,
    store: &Store<K>,
) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug
        + 'static,
{
    let live = lookup(store, &desired.name_any(), namespace);
    apply_unless_held(ctx, namespace, desired, live.as_deref()).await
}

/// Applies `desired` with server-side apply unless `live` already holds it; says whether it applied.
pub(crate) async fn apply_unless_held<K>(
    ctx: &Context,
    namespace: &str,
    desired: &K,
    live: Option<&K>,
) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug
        + 'static,
{
    if live.is_some_and(|live| is_applied(desired, live)) {
        return Ok(false);
    }
    apply_object(ctx, namespace, desired).await?;
    Ok(true)
}

async fn apply_object<K>(ctx: &Context, namespace: &str, desired: &K) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&desired.name_any(), &params, &Patch::Apply(desired))
        .await
        .map_err(|source| {
            ctx.metrics.record_api_error("apply", &source);
            Error::Apply {
                kind: K::kind(&()).to_string(),
                name: desired.name_any(),
                source,
            }
        })?;
    info!(kind = %K::kind(&()), name = %desired.name_any(), "applied");
    Ok(())
}

/// Applies a child that an instance has only while a setting is on (`NAME-metrics` while the exporter runs,
/// the NetworkPolicy `NAME` while `networkPolicy.enabled`); once it is off, deletes the one named `name` this
/// instance controls (the cache holds only the operator's own objects, and a foreign one is never touched).
async fn sync_optional_child<K>(
    ri: &RedisInstance,
    ctx: &Context,
    name: &str,
    desired: Option<&K>,
    store: &Store<K>,
) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug
        + 'static,
{
    let namespace = ri.namespace().unwrap_or_default();
    if let Some(child) = desired {
        return apply_unless_current(ctx, &namespace, child, store)
            .await
            .map(drop);
    }
    let Some(live) = lookup(store, name, &namespace) else {
        return Ok(());
    };
    if !controlled_by(&*live, ri) || live.meta().deletion_timestamp.is_some() {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => info!(kind = %K::kind(&()), %name, "deleted: turned off in the spec"),
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => {
            ctx.metrics.record_api_error("delete", &e);
            return Err(e.into());
        }
    }
    Ok(())
}

/// Storage change: expand claims in place (growth), then replace the StatefulSet by an orphaning delete and a
/// re-create with the new claim template. Running pods and their claims are never touched by the replace.
async fn replace_for_storage(
    ri: &RedisInstance,
    ctx: &Context,
    desired: &Desired,
    expand_to: Option<&str>,
) -> Result<()> {
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    if let Some(size) = expand_to {
        expand_claims(ri, ctx, size).await?;
    }
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let live = lookup(&ctx.stores.statefulsets, &name, &namespace);
    if live
        .as_ref()
        .is_some_and(|s| s.metadata.deletion_timestamp.is_none())
    {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            // Only the StatefulSet this reconcile looked at: a stale cache must not delete its replacement.
            preconditions: Some(Preconditions {
                uid: live.as_ref().and_then(|s| s.metadata.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        api.delete(&name, &params)
            .await
            .inspect_err(|e| ctx.metrics.record_api_error("delete", e))?;
        event(
            ctx,
            ri,
            EventType::Normal,
            EventReason::ReplacingStatefulSet,
            "Replace",
            format!("Deleted StatefulSet {name} with orphan propagation to apply the new claim template; pods and claims are kept"),
        )
        .await;
    }
    // Wait (bounded) for the garbage collector to finish the orphaning delete, then re-create.
    let gone =
        kube::runtime::wait::await_condition(api.clone(), &name, |sts: Option<&StatefulSet>| {
            sts.is_none()
        });
    if tokio::time::timeout(REPLACE_WAIT, gone).await.is_err() {
        return Err(Error::ReplaceInProgress(name));
    }
    apply_object(ctx, &namespace, &desired.statefulset).await
}

/// Raises the storage request of every existing data claim of the instance to `size`.
async fn expand_claims(ri: &RedisInstance, ctx: &Context, size: &str) -> Result<()> {
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    let Ok(target) = size.parse::<Quantity>() else {
        return Ok(());
    };
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    for claim in data_claims(ctx, &name, &namespace) {
        let claim_name = claim.name_any();
        let current = claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| q.0.parse::<Quantity>().ok());
        if current.is_some_and(|c| c >= target) {
            continue;
        }
        let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": size}}}});
        api.patch(&claim_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .inspect_err(|e| ctx.metrics.record_api_error("patch", e))?;
        event(
            ctx,
            ri,
            EventType::Normal,
            EventReason::ExpandingClaim,
            "Expand",
            format!("Requested {size} for PersistentVolumeClaim {claim_name}"),
        )
        .await;
    }
    Ok(())
}

/// Deletion: record `Terminated`, apply the claim policy; the children go by owner reference.
async fn cleanup(ri: &RedisInstance, ctx: &Context) -> Result<Action> {
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    let observation = Observation {
        generation: ri.metadata.generation.unwrap_or_default(),
        deletion_requested: true,
        spec_replicas: ri.spec.replicas,
        ..Default::default()
    };
    publish_status(ri, ctx, &observation).await?;
    let delete_claims = ri
        .spec
        .storage
        .as_ref()
        .is_some_and(|s| s.when_deleted == ClaimDeletePolicy::Delete);
    if delete_claims {
        // The only place the operator ever deletes a claim: the user asked for it with `whenDeleted: Delete`.
        let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
        for claim in data_claims(ctx, &name, &namespace) {
            let claim_name = claim.name_any();
            if claim.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match api.delete(&claim_name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => continue,
                Err(e) => {
                    ctx.metrics.record_api_error("delete", &e);
                    return Err(e.into());
                }
            }
            event(
                ctx,
                ri,
                EventType::Normal,
                EventReason::DeletingClaim,
                "Delete",
                format!("Deleted PersistentVolumeClaim {claim_name} (storage.whenDeleted: Delete)"),
            )
            .await;
        }
    }
    reset_backoff(ri, ctx);
    Ok(Action::await_change())
}

/// Runs the phase engine on an observation and writes the resulting status if it differs from the cached one.
/// The write is synchronous and guarded by the cached resourceVersion: a stale view gets a conflict instead of
/// overwriting newer status, and the watch event that made it stale triggers the next reconcile.
async fn publish_status(
    ri: &RedisInstance,
    ctx: &Context,
    observation: &Observation,
) -> Result<Decision> {
    Ok(publish_status_with(ri, ctx, observation, None, None, None)
        .await?
        .0)
}

/// [`publish_status`] with this pass's topology; also says whether the status now holds what was computed
/// (written, or already equal), which is what label moves must wait for.
async fn publish_status_with(
    ri: &RedisInstance,
    ctx: &Context,
    observation: &Observation,
    topology: Option<&TopologyPass>,
    auth: Option<&crate::api::AuthStatus>,
    tls: Option<&Option<crate::api::TlsStatus>>,
) -> Result<(Decision, bool)> {
    let previous = ri.phase();
    let now = now();
    let decision = step(previous, observation, &now);
    let mut status = next_status(
        ri.status.as_ref(),
        &decision,
        observation.generation,
        observation.statefulset.as_ref(),
        &now,
    );
    if let Some(pass) = topology {
        topology::record_topology(&mut status, &pass.status);
        status.pods = pass.pods.clone();
        let summary = ReplicationSummary {
            replicas: ri.spec.replicas,
            primary: pass
                .roles
                .iter()
                .find(|(_, role)| *role == Some(RoleLabel::Primary))
                .map(|(pod, _)| pod.as_str()),
            failover: pass.failover.as_deref(),
            pending: pass.pending.as_deref(),
        };
        let previous = ri
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        status.conditions.extend(replication_conditions(
            previous,
            &summary,
            observation.generation,
            &now,
        ));
    }
    let previous_conditions = ri
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let exposure = crate::status::exposure_condition(
        &ri.name_any(),
        &ri.spec,
        previous_conditions,
        observation.generation,
        &now,
    );
    let newly_exposed = exposure.as_ref().filter(|_| {
        !previous_conditions
            .iter()
            .any(|c| c.type_ == crate::status::EXPOSED_WITHOUT_TLS)
    });
    let exposure_note = newly_exposed.map(|c| c.message.clone());
    status.conditions.extend(exposure);
    if let Some(auth) = auth {
        status.auth = Some(auth.clone());
    }
    if let Some(tls) = tls {
        status.tls = tls.clone();
    }
    // Lag and last-seen times alone are no reason to write: a converged instance costs no writes.
    if ri.status.as_ref().map(topology::without_volatile)
        == Some(topology::without_volatile(&status))
    {
        debug!("status unchanged");
        return Ok((decision, true));
    }
    let api: Api<RedisInstance> =
        Api::namespaced(ctx.client.clone(), &ri.namespace().unwrap_or_default());
    let mut updated = ri.clone();
    updated.status = Some(status);
    updated.metadata.managed_fields = None;
    match api
        .replace_status(&ri.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            debug!("status write conflicted with a newer version; the next event reconciles again");
            return Ok((decision, false));
        }
        Err(kube::Error::Api(e)) if e.code == 404 && observation.deletion_requested => {
            debug!("instance was deleted before its status was written");
            return Ok((decision, false));
        }
        Err(e) => {
            ctx.metrics.record_api_error("replace_status", &e);
            return Err(e.into());
        }
    }
    if let Some(note) = exposure_note {
        event(
            ctx,
            ri,
            EventType::Warning,
            EventReason::ExposedWithoutTLS,
            "CheckExposure",
            note,
        )
        .await;
    }
    if let Some(transition) = &decision.transition {
        ctx.metrics
            .record_transition(transition.from, transition.to);
        info!(from = %transition.from, to = %transition.to, reason = %decision.reason, "phase transition");
        let type_ = if decision.phase == Phase::Failed {
            EventType::Warning
        } else {
            EventType::Normal
        };
        event(
            ctx,
            ri,
            type_,
            decision.reason.into(),
            "PhaseTransition",
            format!(
                "{} -> {}: {}",
                transition.from, transition.to, decision.message
            ),
        )
        .await;
    }
    Ok((decision, true))
}

/// Publishes a Kubernetes Event about the instance; failures are logged, never fatal.
pub(crate) async fn event(
    ctx: &Context,
    ri: &RedisInstance,
    type_: EventType,
    reason: EventReason,
    action: &str,
    note: String,
) {
    let ev = KubeEvent {
        type_,
        reason: reason.to_string(),
        note: Some(event_note(note)),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &ri.object_ref(&())).await {
        ctx.metrics.record_api_error("event", &e);
        warn!(error = %e, "could not publish event");
    }
}

/// The API server refuses an Event whose message is longer than this many bytes.
const EVENT_NOTE_LIMIT: usize = 1024;

/// `note` cut to what an Event can hold (at a character boundary, marked with `…`): a failing pod's message
/// carries its last output, which can be longer, and an Event refused for its length is an Event lost.
fn event_note(mut note: String) -> String {
    if note.len() <= EVENT_NOTE_LIMIT {
        return note;
    }
    let mut end = EVENT_NOTE_LIMIT - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push('…');
    note
}

fn api_for<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Builds the watch caches and the controller, and runs it until `shutdown` resolves. Topology commands are
/// sent to Redis servers only while `leadership` is held.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: tokio::sync::watch::Sender<bool>,
    leadership: Leadership,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = settings.namespace.as_deref();
    let labelled = watcher::Config::default()
        .labels(MANAGED_SELECTOR)
        .any_semantic();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: settings.reporter.clone(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );

    let (instance_store, instance_writer) = reflector::store();
    let instance_stream = watch::instances(client.clone(), ns, recorder.clone())
        .backoff(WatchBackoff::default())
        .modify(drop_managed_fields)
        .reflect(instance_writer)
        .applied_objects();
    // Anyone may label an object: of the labelled ones, only those an instance owns are kept (see
    // `observe::ownership`), and of those only what is read.
    let (statefulsets, sts_stream) = cached_watch(
        api_for(&client, ns),
        &labelled,
        ownership::controlled_by_an_instance,
        drop_managed_fields,
    );
    let (config_maps, cm_stream) = cached_watch(
        api_for(&client, ns),
        &labelled,
        ownership::controlled_by_an_instance,
        drop_managed_fields,
    );
    let (services, svc_stream) = cached_watch(
        api_for(&client, ns),
        &labelled,
        ownership::controlled_by_an_instance,
        drop_managed_fields,
    );
    let (pods, pod_stream) = cached_watch(
        api_for(&client, ns),
        &labelled,
        ownership::pod_of_an_instance,
        ownership::trim_pod,
    );
    let (budgets, budget_stream) = cached_watch(
        api_for(&client, ns),
        &labelled,
        ownership::controlled_by_an_instance,
        drop_managed_fields,
    );
    let (network_policies, network_policy_stream) = cached_watch(
        api_for(&client, ns),
        &labelled,
        ownership::controlled_by_an_instance,
        drop_managed_fields,
    );
    let (nodes, node_stream) = if settings.watch_nodes {
        let (store, stream) = cached_watch(
            Api::<Node>::all(client.clone()),
            &watcher::Config::default().any_semantic(),
            |_| true,
            |node: &mut Node| {
                // Only `spec.unschedulable` is read.
                node.status = None;
                node.metadata.annotations = None;
                node.metadata.labels = None;
                drop_managed_fields(node);
            },
        );
        (Some(store), Some(stream))
    } else {
        (None, None)
    };
    let (claims, claim_stream) = cached_watch(
        api_for(&client, ns),
        &labelled,
        ownership::claim_of_an_instance,
        ownership::trim_claim,
    );
    // Every Secret, metadata only: a user's password or TLS Secret carries no label of ours, and its content
    // is read by name when an instance that names it is reconciled.
    // (A watch of `PartialObjectMeta` asks the API server for metadata only.)
    let (secrets, secret_stream) = cached_watch(
        api_for::<SecretMeta>(&client, ns),
        &watcher::Config::default().any_semantic(),
        |_| true,
        secrets::trim_metadata,
    );
    let refused_pods = watcher::Config::default()
        .fields(&format!(
            "involvedObject.kind=StatefulSet,reason={FAILED_CREATE}"
        ))
        .any_semantic();
    let (create_failures, failure_stream) = cached_watch(
        api_for(&client, ns),
        &refused_pods,
        |_| true,
        ownership::trim_event,
    );

    // The controller backs off its merged trigger streams on any error, by default growing to minutes: after an
    // API server restart that, not the watches' own back-off, kept status stale (each stream's 410 grew it).
    let controller = Controller::for_stream(instance_stream, instance_store)
        .trigger_backoff(WatchBackoff::default());
    let stores = Stores {
        instances: controller.store(),
        statefulsets,
        config_maps,
        services,
        pods,
        claims,
        create_failures,
        budgets,
        network_policies,
        secrets,
        nodes,
    };
    let ctx = Arc::new(Context {
        secrets: Secrets::new(client.clone(), stores.secrets.clone()),
        client,
        recorder,
        stores: stores.clone(),
        metrics: metrics.clone(),
        settings,
        leadership,
        redis_timeouts: Timeouts::default(),
        failures: Mutex::default(),
        auth_verified: Mutex::default(),
        acl_reported: Mutex::default(),
    });
    let readiness = stores.clone();
    tokio::spawn(async move {
        if readiness.wait_ready().await.is_ok() {
            info!("watch caches synced");
            let _ = ready.send(true);
        }
    });
    let state_metrics = metrics.clone();
    let phase_stores = stores.instances.clone();
    let node_pods = stores.pods.clone();
    let controller = match node_stream {
        // A cordoned node concerns the instances with a pod on it.
        Some(stream) => controller.watches_stream(stream, move |node: Node| {
            let node = node.name_any();
            node_pods
                .state()
                .into_iter()
                .filter(|pod| pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&node))
                .filter_map(|pod| map_to_instance((*pod).clone()))
                .collect::<Vec<_>>()
        }),
        None => controller,
    };
    let secret_users = stores.instances.clone();
    controller
        .watches_stream(secret_stream, move |secret: SecretMeta| {
            // Every instance that names it, and the one it belongs to: by its owner reference, or by its name
            // (`NAME-auth`, `NAME-acl`), so that a foreign Secret in such a place unblocks the instance once it
            // goes.
            let Some(namespace) = secret.namespace() else {
                return Vec::new();
            };
            let name = secret.name_any();
            let own = secrets::owning_instance(&secret);
            let named = instance_named_by(&name);
            secret_users
                .state()
                .iter()
                .filter(|ri| ri.namespace().as_deref() == Some(namespace.as_str()))
                .filter(|ri| {
                    let instance = ri.name_any();
                    own.as_deref() == Some(instance.as_str())
                        || named == Some(instance.as_str())
                        || referenced_secrets(&ri.spec).contains(&name)
                })
                .map(|ri| ObjectRef::from_obj(&**ri))
                .collect::<Vec<_>>()
        })
        .owns_stream(sts_stream)
        .owns_stream(cm_stream)
        .owns_stream(svc_stream)
        .owns_stream(budget_stream)
        .owns_stream(network_policy_stream)
        .watches_stream(pod_stream, map_to_instance)
        .watches_stream(claim_stream, map_to_instance)
        .watches_stream(failure_stream, |event: CoreEvent| {
            // A StatefulSet has its instance's name.
            let sts = event.involved_object;
            Some(ObjectRef::new(&sts.name?).within(&sts.namespace?))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            if let Err(error) = result {
                debug!(%error, "reconcile loop error");
            }
            state_metrics.set_phases(phase_stores.state().iter().map(|ri| {
                (
                    ri.namespace().unwrap_or_default(),
                    ri.name_any(),
                    ri.phase(),
                )
            }));
            std::future::ready(())
        })
        .await;
    info!("controller stopped");
}

/// The Secrets of the user's that an instance reads (a change of one reconciles it), the TLS Secret included.
fn referenced_secrets(spec: &crate::api::RedisInstanceSpec) -> Vec<String> {
    spec.auth
        .secret_ref
        .iter()
        .map(|r| r.name.clone())
        .chain(crate::tls::referenced_secret(spec))
        .collect()
}

/// A watch of `K` that keeps a cache of the objects `keep` accepts (after `trim`) and yields every touched object
/// it accepts.
fn cached_watch<K>(
    api: Api<K>,
    config: &watcher::Config,
    keep: fn(&K) -> bool,
    trim: impl FnMut(&mut K) + Send + 'static,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, config.clone())
        .backoff(WatchBackoff::default())
        .filter_map(move |event| {
            std::future::ready(match event {
                Ok(event) => ownership::only_kept(event, keep).map(Ok),
                Err(error) => Some(Err(error)),
            })
        })
        .modify(trim)
        .reflect(writer)
        .touched_objects()
        .try_filter(move |object| std::future::ready(keep(object)));
    (store, stream)
}

/// Server-side apply bookkeeping is never read by the reconciler and is much of an object's size.
fn drop_managed_fields<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

fn map_to_instance<K: Resource>(object: K) -> Option<ObjectRef<RedisInstance>> {
    let name = object.labels().get(INSTANCE_LABEL)?;
    Some(ObjectRef::new(name).within(&object.namespace()?))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::runtime::finalizer::Error as FinalizerError;

    use super::*;
    use crate::desired::children::tests::instance;

    #[test]
    fn backoff_doubles_from_one_second_to_its_cap() {
        let delays: Vec<u64> = (1..=11).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 256, 256]);
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_CAP);
        assert_eq!(BACKOFF_CAP.as_secs(), 256);
    }

    #[test]
    fn event_notes_are_cut_to_what_an_event_holds() {
        assert_eq!(event_note("short".into()), "short");
        let exact = "x".repeat(EVENT_NOTE_LIMIT);
        assert_eq!(event_note(exact.clone()), exact);
        // Multi-byte characters straddling the limit are not split.
        let long = "é".repeat(EVENT_NOTE_LIMIT);
        let cut = event_note(long);
        assert!(cut.len() <= EVENT_NOTE_LIMIT, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.trim_end_matches('…').chars().all(|c| c == 'é'));
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

    #[test]
    fn only_a_controller_reference_with_the_instance_uid_makes_a_child_ours() {
        let mut ri = instance("cache");
        ri.metadata.uid = Some("uid-1".into());
        let mut service = Service::default();
        assert!(!controlled_by(&service, &ri), "no owner: someone else's");
        let owner = |uid: &str, controller: bool| OwnerReference {
            api_version: "redis.github.com/v1".into(),
            kind: "RedisInstance".into(),
            name: "cache".into(),
            uid: uid.into(),
            controller: Some(controller),
            ..Default::default()
        };
        service.metadata.owner_references = Some(vec![owner("uid-0", true)]);
        assert!(
            !controlled_by(&service, &ri),
            "an earlier instance of the same name"
        );
        service.metadata.owner_references = Some(vec![owner("uid-1", false)]);
        assert!(!controlled_by(&service, &ri), "not as controller");
        service.metadata.owner_references = Some(vec![owner("uid-1", true)]);
        assert!(controlled_by(&service, &ri));
        let desired = children::build(&ri);
        assert!(
            controlled_by(&desired.config_map, &ri),
            "what the operator builds is its own"
        );
    }
}
