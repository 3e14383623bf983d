//! What every reconcile shares: the settings, the watch caches and their readers, and per-instance memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event as CoreEvent, Node, PersistentVolumeClaim, Pod, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};

use crate::api::RedisInstance;
use crate::error::{Error, Result};
use crate::names::INSTANCE_LABEL;
use crate::observe::secrets::{SecretMeta, Secrets};
use crate::redis::Timeouts;
use crate::runtime::leader::Leadership;
use crate::runtime::metrics::Metrics;

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
    /// Reconciles running at once (different instances; one instance is never reconciled twice at once).
    pub concurrency: u16,
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
    /// RedisBackups (for the instances' scheduled backups and `status.backup`). Not waited for: without its
    /// CRD installed the instances are managed all the same.
    pub backups: Store<crate::api::RedisBackup>,
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

pub(super) async fn ready<K>(store: &Store<K>, kind: &'static str) -> Result<()>
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
    pub(super) failures: Mutex<HashMap<ObjectRef<RedisInstance>, u32>>,
    /// Per instance and pass, what its servers were last all found holding, and when (see [`Verified`]).
    pub(super) verified: Mutex<HashMap<(ObjectRef<RedisInstance>, Verified), VerifiedAt>>,
    /// Per instance and pod, what each server reported for its users after the operator set them.
    pub(super) acl_reported: Mutex<
        HashMap<
            ObjectRef<RedisInstance>,
            std::collections::BTreeMap<String, crate::converge::auth::Reported>,
        >,
    >,
    /// Status writes and role labels the watch caches have not seen yet.
    pub(super) own_writes: super::own_writes::OwnWrites,
    /// Per instance, the last topology command sent to its servers, and when (see [`Context::command_is_new`]).
    pub(super) commands:
        Mutex<HashMap<ObjectRef<RedisInstance>, (redis_fsm::TopologyAction, Instant)>>,
    /// Per instance, how a backup reaches its servers (the replication user's login, TLS), as of its last
    /// reconcile.
    pub(super) access: Mutex<HashMap<ObjectRef<RedisInstance>, crate::redis::Access>>,
    /// The restores (`spec.bootstrap.fromBackup`) under way in this process.
    pub restores: Arc<crate::backup::restore::Restores>,
    /// The archivers (`spec.backup.archive`) running in this process.
    pub archivers: crate::backup::archiver::Archivers,
}

impl Context {
    /// The shared state of the reconciles over `stores`, with no failures or verified servers remembered yet.
    pub fn new(
        client: Client,
        recorder: Recorder,
        stores: Stores,
        metrics: Arc<Metrics>,
        settings: Settings,
        leadership: Leadership,
    ) -> Context {
        Context {
            secrets: Secrets::new(client.clone(), stores.secrets.clone()),
            client,
            recorder,
            stores,
            metrics,
            settings,
            leadership,
            redis_timeouts: Timeouts::default(),
            failures: Mutex::default(),
            verified: Mutex::default(),
            acl_reported: Mutex::default(),
            own_writes: Default::default(),
            commands: Mutex::default(),
            access: Mutex::default(),
            restores: Arc::default(),
            archivers: Default::default(),
        }
    }

    /// How a backup reaches the servers of `ri` (the replication user's login), as of its last reconcile in this
    /// process.
    pub fn last_access(&self, ri: &RedisInstance) -> Option<crate::redis::Access> {
        self.access
            .lock()
            .ok()?
            .get(&ObjectRef::from_obj(ri))
            .cloned()
    }

    /// The pods of instance `namespace/name`, from the watch cache.
    pub fn instance_pods(&self, name: &str, namespace: &str) -> Vec<Arc<Pod>> {
        instance_objects(&self.stores.pods, name, namespace)
    }
}

/// A pass's fingerprint of what every pod held, and when it was found.
pub(super) type VerifiedAt = (u64, Instant);

/// The passes that are skipped while nothing they depend on changed since every pod was found holding what
/// they bring, less than [`CONVERGED_RECHECK`] ago: a converged instance sends them no command.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(super) enum Verified {
    /// The users and replication credentials (`auth::converge_pass`).
    Auth,
    /// The live configuration (`runtime_config::live_config_pass`).
    LiveConfig,
}

/// A topology command sent again within this long (a server that answered it without carrying it out) is
/// observed again at the pass's usual pace, not at once.
pub(super) const REPEATED_COMMAND: Duration = Duration::from_secs(2);

/// Whether `action` repeats `previous` (the last command sent and when) within [`REPEATED_COMMAND`] of `now`.
fn repeats(
    previous: Option<&(redis_fsm::TopologyAction, Instant)>,
    action: &redis_fsm::TopologyAction,
    now: Instant,
) -> bool {
    previous.is_some_and(|(sent, at)| sent == action && now.duration_since(*at) < REPEATED_COMMAND)
}

/// How often a pass whose servers held everything is run anyway: values changed through an administrative
/// connection (`ACL SETUSER exporter +@all`, `CONFIG SET maxmemory 1`) change without any watch event, and are
/// put back within this long.
pub(super) const CONVERGED_RECHECK: Duration = Duration::from_secs(30);

impl Context {
    /// Whether `pass` found every pod of `ri` holding `fingerprint` less than [`CONVERGED_RECHECK`] ago.
    pub(super) fn verified(&self, ri: &RedisInstance, pass: Verified, fingerprint: u64) -> bool {
        let key = (ObjectRef::from_obj(ri), pass);
        self.verified
            .lock()
            .map(|v| {
                v.get(&key).is_some_and(|(held, at)| {
                    *held == fingerprint && at.elapsed() < CONVERGED_RECHECK
                })
            })
            .unwrap_or(false)
    }

    /// Records that `pass` found every pod of `ri` holding `fingerprint` now.
    pub(super) fn record_verified(&self, ri: &RedisInstance, pass: Verified, fingerprint: u64) {
        if let Ok(mut v) = self.verified.lock() {
            v.insert(
                (ObjectRef::from_obj(ri), pass),
                (fingerprint, Instant::now()),
            );
        }
    }

    /// Records that `action`'s command was sent to the servers of `ri`; says whether it differs from the last
    /// command sent there less than [`REPEATED_COMMAND`] ago.
    pub(super) fn command_is_new(
        &self,
        ri: &RedisInstance,
        action: &redis_fsm::TopologyAction,
    ) -> bool {
        let mut commands = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let previous = commands.insert(ObjectRef::from_obj(ri), (action.clone(), now));
        !repeats(previous.as_ref(), action, now)
    }

    /// Forgets what is remembered of an instance that is gone.
    pub(super) fn forget(&self, ri: &RedisInstance) {
        let key = ObjectRef::from_obj(ri);
        if let Ok(mut v) = self.verified.lock() {
            v.retain(|(instance, _), _| *instance != key);
        }
        if let Ok(mut r) = self.acl_reported.lock() {
            r.remove(&key);
        }
        self.own_writes.forget(&key);
        if let Ok(mut c) = self.commands.lock() {
            c.remove(&key);
        }
        if let Ok(mut a) = self.access.lock() {
            a.remove(&key);
        }
    }
}

/// Hashes what a pass on the pods depends on, besides its plan: each pod's identity, restarts, address,
/// template auth mode and deletion. A restarted server (it read its files again) or a new pod changes it.
pub(super) fn hash_pods(pods: &[Arc<Pod>], hasher: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    for pod in pods {
        pod.uid().hash(hasher);
        pod.annotations()
            .get(crate::names::AUTH_ANNOTATION)
            .hash(hasher);
        let status = pod.status.as_ref();
        status.and_then(|s| s.pod_ip.clone()).hash(hasher);
        status
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum::<i32>())
            .hash(hasher);
        pod.metadata.deletion_timestamp.is_some().hash(hasher);
    }
}

pub(crate) fn lookup<K>(store: &Store<K>, name: &str, namespace: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(namespace))
}

/// Objects of the given kind that carry this instance's label, from a watch cache, by name. A cache is a hash
/// map whose order changes with every re-list (and differs in a restarted operator): what is built from these
/// lists (the status names pods in their order) must not change with it.
pub(crate) fn instance_objects<K>(store: &Store<K>, name: &str, namespace: &str) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut objects: Vec<Arc<K>> = store
        .state()
        .into_iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
        .filter(|o| o.labels().get(INSTANCE_LABEL).map(String::as_str) == Some(name))
        .collect();
    objects.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
    objects
}

/// What one reconcile reads of the instance's own objects from the watch caches, once at its start: every step
/// sees the same StatefulSet and pods.
pub(super) struct Snapshot {
    /// The instance's StatefulSet.
    pub(super) statefulset: Option<Arc<StatefulSet>>,
    /// The instance's pods (every pod with its instance label that the cache keeps).
    pub(super) pods: Vec<Arc<Pod>>,
    /// The time of this reconcile, read once: every deadline, timestamp and certificate check of one
    /// reconcile uses it, so its steps agree on what "now" is.
    pub(super) now: Timestamp,
}

impl Snapshot {
    /// Reads the instance's StatefulSet and pods from `stores`.
    pub(super) fn read(ri: &RedisInstance, stores: &Stores) -> Snapshot {
        let name = ri.name_any();
        let namespace = ri.namespace().unwrap_or_default();
        Snapshot {
            statefulset: lookup(&stores.statefulsets, &name, &namespace),
            pods: instance_objects(&stores.pods, &name, &namespace),
            now: Timestamp::now(),
        }
    }

    /// The pod named `name`, as this reconcile read it.
    pub(super) fn pod(&self, name: &str) -> Option<&Pod> {
        self.pods
            .iter()
            .map(Arc::as_ref)
            .find(|pod| pod.metadata.name.as_deref() == Some(name))
    }
}

#[cfg(test)]
mod tests {
    use redis_fsm::TopologyAction;

    use super::*;

    #[test]
    fn a_command_repeats_only_the_same_command_sent_shortly_before() {
        let promote = |pod: &str| TopologyAction::Promote { pod: pod.into() };
        let sent = Instant::now();
        let previous = (promote("c-1"), sent);
        assert!(!repeats(None, &promote("c-1"), sent));
        assert!(repeats(
            Some(&previous),
            &promote("c-1"),
            sent + Duration::from_millis(20)
        ));
        assert!(!repeats(
            Some(&previous),
            &promote("c-2"),
            sent + Duration::from_millis(20)
        ));
        assert!(!repeats(
            Some(&previous),
            &promote("c-1"),
            sent + REPEATED_COMMAND
        ));
    }
}
