//! Wiring: the watch caches (only objects an instance owns), the controller and what triggers a reconcile.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event as CoreEvent, Node};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{debug, info};

use crate::api::RedisInstance;
use crate::error::Result;
use crate::names::{instance_named_by, INSTANCE_LABEL, MANAGED_SELECTOR};
use crate::observe::ownership;
use crate::observe::rollout::FAILED_CREATE;
use crate::observe::secrets::{self, SecretMeta};
use crate::observe::watch::{self, WatchBackoff};
use crate::reconciler::{error_policy, reconcile, Context, Settings, Stores};
use crate::runtime::leader::Leadership;
use crate::runtime::metrics::Metrics;

pub(crate) fn api_for<K>(client: &Client, namespace: Option<&str>) -> Api<K>
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

/// The API clients of the controller: `requests` for reads and writes, `watches` for the watches behind the
/// caches (no retry of its own: each watch backs off itself).
pub struct Clients {
    /// Reads and writes.
    pub requests: Client,
    /// The watches.
    pub watches: Client,
}

/// Builds the watch caches and the controller, and runs it until `shutdown` resolves. Topology commands are
/// sent to Redis servers only while `leadership` is held.
pub async fn run(
    clients: Clients,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: tokio::sync::watch::Sender<bool>,
    leadership: Leadership,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let Clients {
        requests: client,
        watches,
    } = clients;
    let ns = settings.namespace.as_deref();
    let labelled = watch::list_config().labels(MANAGED_SELECTOR);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: settings.reporter.clone(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );

    let (instance_store, instance_writer) = reflector::store();
    let instance_stream = watch::instances(watches.clone(), ns, recorder.clone())
        .modify(drop_managed_fields)
        .reflect(instance_writer)
        .applied_objects()
        .filter_map(settled_errors);
    // Anyone may label an object: of the labelled ones, only those an instance owns are kept (see
    // `observe::ownership`), and of those only what is read.
    let (statefulsets, sts_stream) = cached_watch(
        api_for(&watches, ns),
        &labelled,
        ownership::controlled_by_an_instance,
        drop_managed_fields,
    );
    let (config_maps, cm_stream) = cached_watch(
        api_for(&watches, ns),
        &labelled,
        ownership::controlled_by_an_instance,
        drop_managed_fields,
    );
    let (services, svc_stream) = cached_watch(
        api_for(&watches, ns),
        &labelled,
        ownership::controlled_by_an_instance,
        drop_managed_fields,
    );
    let (pods, pod_stream) = cached_watch(
        api_for(&watches, ns),
        &labelled,
        ownership::pod_of_an_instance,
        ownership::trim_pod,
    );
    let (budgets, budget_stream) = cached_watch(
        api_for(&watches, ns),
        &labelled,
        ownership::controlled_by_an_instance,
        drop_managed_fields,
    );
    let (network_policies, network_policy_stream) = cached_watch(
        api_for(&watches, ns),
        &labelled,
        ownership::controlled_by_an_instance,
        drop_managed_fields,
    );
    let shutdown = futures::FutureExt::shared(shutdown);
    let (nodes, node_stream) = if settings.watch_nodes {
        let (store, stream) = cached_watch(
            Api::<Node>::all(watches.clone()),
            &watch::list_config(),
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
        api_for(&watches, ns),
        &labelled,
        ownership::claim_of_an_instance,
        ownership::trim_claim,
    );
    // Every Secret, metadata only: a user's password or TLS Secret carries no label of ours, and its content
    // is read by name when an instance that names it is reconciled.
    // (A watch of `PartialObjectMeta` asks the API server for metadata only.)
    let (secrets, secret_stream) = cached_watch(
        api_for::<SecretMeta>(&watches, ns),
        &watch::list_config(),
        |_| true,
        secrets::trim_metadata,
    );
    let (backups, backup_stream) = cached_watch(
        api_for::<crate::api::RedisBackup>(&watches, ns),
        &watch::list_config(),
        |_| true,
        drop_managed_fields,
    );
    let (instance_backup_triggers, backup_triggers) = fan_out(backup_stream);
    let refused_pods = watch::list_config().fields(&format!(
        "involvedObject.kind=StatefulSet,reason={FAILED_CREATE}"
    ));
    let (create_failures, failure_stream) = cached_watch(
        api_for(&watches, ns),
        &refused_pods,
        |_| true,
        ownership::trim_event,
    );

    // The controller backs off its merged trigger streams on any error: one back-off for every watch, so after an
    // API server outage each watch's failed attempt paused all of them again, one watch after another (65 s to
    // reflect a change with a dozen watches). Each watch backs off on its own, and no error reaches the merged
    // stream (`settled_errors`); this back-off stays for anything else.
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
        backups,
    };
    let ctx = Arc::new(Context::new(
        client,
        recorder,
        stores.clone(),
        metrics.clone(),
        settings,
        leadership,
    ));
    metrics.set_leader(true);
    let readiness = stores.clone();
    tokio::spawn(async move {
        if readiness.wait_ready().await.is_ok() {
            info!("watch caches synced");
            let _ = ready.send(true);
        }
    });
    // Backups: their own controller over `RedisBackup`, sharing the instances' context, and fed by the same
    // watch as the instances' cache of backups (one watch, each change to both controllers).
    let backups = Controller::for_stream(backup_triggers, stores.backups.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(
            crate::backup::controller::reconcile,
            crate::backup::controller::error_policy,
            Arc::new(crate::backup::controller::BackupContext {
                instances: ctx.clone(),
                backups: Default::default(),
            }),
        )
        .for_each(|result| {
            if let Err(error) = result {
                debug!(%error, "backup reconcile loop error");
            }
            std::future::ready(())
        });
    let backups = tokio::spawn(backups);
    metrics.follow_instances(Some(stores.instances.clone()));
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
        // A backup that finished changes its instance's `status.backup`.
        .watches_stream(
            instance_backup_triggers,
            |backup: crate::api::RedisBackup| {
                Some(ObjectRef::new(&backup.spec.instance).within(&backup.namespace()?))
            },
        )
        .watches_stream(claim_stream, map_to_instance)
        .watches_stream(failure_stream, |event: CoreEvent| {
            // A StatefulSet has its instance's name.
            let sts = event.involved_object;
            Some(ObjectRef::new(&sts.name?).within(&sts.namespace?))
        })
        .with_config(
            kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            if let Err(error) = result {
                debug!(%error, "reconcile loop error");
            }
            std::future::ready(())
        })
        .await;
    let _ = backups.await;
    metrics.follow_instances(None);
    metrics.set_leader(false);
    info!("controller stopped");
}

/// The Secrets of the user's that an instance reads (a change of one reconciles it), the TLS Secret included.
pub(crate) fn referenced_secrets(spec: &crate::api::RedisInstanceSpec) -> Vec<String> {
    spec.auth
        .secret_ref
        .iter()
        .map(|r| r.name.clone())
        .chain(crate::tls::referenced_secret(spec))
        .collect()
}

/// A watch of `K` that keeps a cache of the objects `keep` accepts (after `trim`) and yields every touched object
/// it accepts.
pub(crate) fn cached_watch<K>(
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
    let stream = watch::retried(watcher(api, config.clone()))
        .filter_map(move |event| {
            std::future::ready(match event {
                Ok(event) => ownership::only_kept(event, keep).map(Ok),
                Err(error) => Some(Err(error)),
            })
        })
        .modify(trim)
        .reflect(writer)
        .touched_objects()
        .try_filter(move |object| std::future::ready(keep(object)))
        .filter_map(settled_errors);
    (store, stream)
}

/// Drives `stream` and hands each object to two trigger streams (two controllers over one watch). A consumer
/// that is gone no longer gets any.
#[allow(clippy::type_complexity)]
fn fan_out<K: Clone + Send + 'static>(
    stream: impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) -> (
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) {
    let (first, first_rx) = futures::channel::mpsc::unbounded();
    let (second, second_rx) = futures::channel::mpsc::unbounded();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            // Errors were settled by the watch (see `settled_errors`); objects are what triggers.
            if let Ok(object) = item {
                let _ = first.unbounded_send(object.clone());
                let _ = second.unbounded_send(object);
            }
        }
    });
    (first_rx.map(Ok), second_rx.map(Ok))
}

/// Drops a watch's error from its trigger stream: the watch has already backed off on its own (see
/// [`WatchBackoff`]) and kube's client logged it; passed on, it would pause every other watch too.
fn settled_errors<K>(
    item: Result<K, watcher::Error>,
) -> std::future::Ready<Option<Result<K, watcher::Error>>> {
    std::future::ready(match item {
        Ok(object) => Some(Ok(object)),
        Err(error) => {
            debug!(%error, "watch error, retried by the watch's own back-off");
            None
        }
    })
}

/// Server-side apply bookkeeping is never read by the reconciler and is much of an object's size.
pub(crate) fn drop_managed_fields<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

pub(crate) fn map_to_instance<K: Resource>(object: K) -> Option<ObjectRef<RedisInstance>> {
    let name = object.labels().get(INSTANCE_LABEL)?;
    Some(ObjectRef::new(name).within(&object.namespace()?))
}
