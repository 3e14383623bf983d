//! The operator's watch caches, filled from the fake API as its watches would fill them (`controller::run`): the
//! same label selector, the same "is it an instance's own" filters and the same trimming, so an object a watch
//! would not deliver (a foreign ConfigMap without the operator's labels) is not in the caches either.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event as CoreEvent, PersistentVolumeClaim, Pod, Secret, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::PartialObjectMetaExt;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use redis_operator::api::{RedisBackup, RedisInstance};
use redis_operator::names::{MANAGED_BY, MANAGED_BY_LABEL};
use redis_operator::observe::ownership;
use redis_operator::observe::rollout::FAILED_CREATE;
use redis_operator::observe::secrets::{trim_metadata, SecretMeta};
use redis_operator::reconciler::Stores;
use serde::de::DeserializeOwned;

use super::FakeApi;

/// The writing side of every cache in [`Stores`].
pub struct Caches {
    instances: Writer<RedisInstance>,
    statefulsets: Writer<StatefulSet>,
    config_maps: Writer<ConfigMap>,
    services: Writer<Service>,
    pods: Writer<Pod>,
    claims: Writer<PersistentVolumeClaim>,
    create_failures: Writer<CoreEvent>,
    budgets: Writer<PodDisruptionBudget>,
    network_policies: Writer<NetworkPolicy>,
    secrets: Writer<SecretMeta>,
    backups: Writer<RedisBackup>,
}

impl Caches {
    /// Empty caches that have not listed yet, and the stores reading them (without Nodes, as a namespaced
    /// install runs).
    pub fn new() -> (Stores, Caches) {
        let (instances, instances_writer) = reflector::store();
        let (statefulsets, statefulsets_writer) = reflector::store();
        let (config_maps, config_maps_writer) = reflector::store();
        let (services, services_writer) = reflector::store();
        let (pods, pods_writer) = reflector::store();
        let (claims, claims_writer) = reflector::store();
        let (create_failures, create_failures_writer) = reflector::store();
        let (budgets, budgets_writer) = reflector::store();
        let (network_policies, network_policies_writer) = reflector::store();
        let (secrets, secrets_writer) = reflector::store();
        let (backups, backups_writer) = reflector::store();
        let stores = Stores {
            instances,
            statefulsets,
            config_maps,
            services,
            pods,
            claims,
            create_failures,
            budgets,
            network_policies,
            secrets,
            nodes: None,
            backups,
        };
        let caches = Caches {
            instances: instances_writer,
            statefulsets: statefulsets_writer,
            config_maps: config_maps_writer,
            services: services_writer,
            pods: pods_writer,
            claims: claims_writer,
            create_failures: create_failures_writer,
            budgets: budgets_writer,
            network_policies: network_policies_writer,
            secrets: secrets_writer,
            backups: backups_writer,
        };
        (stores, caches)
    }

    /// Re-lists every cache from what the fake API holds in `namespace`, as the watches would after the
    /// changes they were told about.
    pub fn sync(&mut self, api: &FakeApi, namespace: &str) {
        relist(&mut self.instances, everything(api, namespace), |_| true);
        relist(
            &mut self.statefulsets,
            labelled(api, namespace),
            ownership::controlled_by_an_instance,
        );
        relist(
            &mut self.config_maps,
            labelled(api, namespace),
            ownership::controlled_by_an_instance,
        );
        relist(
            &mut self.services,
            labelled(api, namespace),
            ownership::controlled_by_an_instance,
        );
        let mut pods: Vec<Pod> = labelled(api, namespace);
        pods.iter_mut().for_each(ownership::trim_pod);
        relist(&mut self.pods, pods, ownership::pod_of_an_instance);
        let mut claims: Vec<PersistentVolumeClaim> = labelled(api, namespace);
        claims.iter_mut().for_each(ownership::trim_claim);
        relist(&mut self.claims, claims, ownership::claim_of_an_instance);
        let mut failures: Vec<CoreEvent> = everything(api, namespace);
        failures.retain(|e| {
            e.involved_object.kind.as_deref() == Some("StatefulSet")
                && e.reason.as_deref() == Some(FAILED_CREATE)
        });
        failures.iter_mut().for_each(ownership::trim_event);
        relist(&mut self.create_failures, failures, |_| true);
        relist(
            &mut self.budgets,
            labelled(api, namespace),
            ownership::controlled_by_an_instance,
        );
        relist(
            &mut self.network_policies,
            labelled(api, namespace),
            ownership::controlled_by_an_instance,
        );
        let secrets = api
            .list::<Secret>(namespace)
            .into_iter()
            .map(|secret| {
                let mut meta: SecretMeta = secret.metadata.into_response_partial();
                trim_metadata(&mut meta);
                meta
            })
            .collect();
        relist(&mut self.secrets, secrets, |_| true);
        relist(&mut self.backups, everything(api, namespace), |_| true);
    }
}

impl Caches {
    /// The Secret watch has not delivered Secret `name` yet (a lagging cache): it is dropped from the cache.
    pub fn lag_secret(&mut self, api: &FakeApi, namespace: &str, name: &str) {
        let secret: Secret = api.get(namespace, name).expect("the Secret exists");
        let mut meta: SecretMeta = secret.metadata.into_response_partial();
        trim_metadata(&mut meta);
        self.secrets
            .apply_watcher_event(&watcher::Event::Delete(meta));
    }
}

/// Every object of kind `K` in `namespace`, without server-side apply bookkeeping (which the watches drop).
fn everything<K>(api: &FakeApi, namespace: &str) -> Vec<K>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let mut objects: Vec<K> = api.list(namespace);
    for object in &mut objects {
        object.meta_mut().managed_fields = None;
    }
    objects
}

/// The objects of kind `K` in `namespace` that the operator's label selector (`MANAGED_SELECTOR`) matches.
fn labelled<K>(api: &FakeApi, namespace: &str) -> Vec<K>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let mut objects: Vec<K> = everything(api, namespace);
    objects.retain(|o| o.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY));
    objects
}

/// Replaces the content of a cache with the `objects` that `keep` accepts, and marks it ready.
fn relist<K>(writer: &mut Writer<K>, objects: Vec<K>, keep: fn(&K) -> bool)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects.into_iter().filter(keep) {
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
}
