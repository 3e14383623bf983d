//! Reconcile-level tests: the operator's real `reconcile` against a fake Kubernetes API ([`fake_api`]) that
//! records every request. Between two reconciles the watch caches are re-listed from what the fake API holds, so
//! every object the operator applied (and every status it wrote) is what the next reconcile reads, as in a
//! cluster. Each test names the exact write set of one reconcile: every request but a GET, as `METHOD path?query`
//! (a POST also names what it creates), with the Events it published counted apart by reason.
//!
//! Nothing answers at the pods' addresses here: pods are absent or have no `podIP` (unobserved), which is what
//! a cluster shows while the pods are being created.

mod fake_api;

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodStatus, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Resource, ResourceExt};
use redis_fsm::Phase;
use redis_operator::api::{RedisInstance, RedisInstanceSpec};
use redis_operator::names::FINALIZER;
use redis_operator::observe::rollout::REVISION_LABEL;
use redis_operator::reconciler::{reconcile, Context, RolloutMode, Settings};
use redis_operator::runtime::leader::Leadership;
use redis_operator::runtime::metrics::Metrics;

use fake_api::caches::Caches;
use fake_api::{FakeApi, Recorded};

/// The namespace every test instance lives in.
const NAMESPACE: &str = "ns";
/// The name of every test instance.
const NAME: &str = "cache";
/// The query of every server-side apply the operator makes: forced, as its own field manager.
const APPLY_QUERY: &str = "?&force=true&fieldManager=redis-operator";
/// How many reconciles a new instance takes to converge when nothing else changes: the finalizer, the children,
/// then the status of the first observation of the StatefulSet's pods.
const ROUNDS_TO_CONVERGE: usize = 3;

/// The operator (its context and caches) and the fake API it talks to.
struct World {
    /// The fake API server.
    api: FakeApi,
    /// The writing side of the operator's watch caches.
    caches: Caches,
    /// The operator's shared context, as `controller::run` builds it.
    ctx: Arc<Context>,
}

impl World {
    /// An operator with empty caches in front of an empty API.
    fn new() -> Self {
        Self::over(FakeApi::new())
    }

    /// A newly started operator (no memory of earlier reconciles) in front of `api`.
    fn over(api: FakeApi) -> Self {
        let client = api.client();
        let (stores, caches) = Caches::new();
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "redis-operator".into(),
                instance: None,
            },
        );
        let settings = Settings {
            namespace: Some(NAMESPACE.into()),
            resync: Duration::from_secs(300),
            reporter: "redis-operator".into(),
            rollout: RolloutMode::PrimaryLast,
            watch_nodes: false,
            operator_namespace: Some("redis-operator".into()),
        };
        let ctx = Context::new(
            client,
            recorder,
            stores,
            Arc::new(Metrics::default()),
            settings,
            Leadership::unconditional(),
        );
        World {
            api,
            caches,
            ctx: Arc::new(ctx),
        }
    }

    /// One reconcile of the instance as the API holds it, after the caches caught up with the API; returns every
    /// request it made. A failed reconcile fails the test.
    async fn reconcile(&mut self) -> Vec<Recorded> {
        self.caches.sync(&self.api, NAMESPACE);
        let ri = self.instance();
        self.api.take_requests();
        let result = reconcile(Arc::new(ri), self.ctx.clone()).await;
        let requests = self.api.take_requests();
        if let Err(error) = result {
            panic!("reconcile failed: {error}; requests: {requests:#?}");
        }
        requests
    }

    /// Reconciles until a reconcile writes nothing; returns how many reconciles wrote something. Fails the test
    /// when the instance still writes after `bound` reconciles.
    async fn converge(&mut self, bound: usize) -> usize {
        for round in 0..=bound {
            let requests = self.reconcile().await;
            if !requests.iter().any(Recorded::is_write) {
                return round;
            }
        }
        let requests = self.reconcile().await;
        panic!(
            "still writing after {bound} reconciles: {:#?}",
            writes(&requests)
        );
    }

    /// The instance as the API holds it.
    fn instance(&self) -> RedisInstance {
        self.api.get(NAMESPACE, NAME).expect("the instance exists")
    }

    /// The instance's phase and reason, as its status says.
    fn phase(&self) -> (Phase, String) {
        let status = self.instance().status.expect("a status was written");
        (status.status, status.reason)
    }

    /// Plays the StatefulSet controller once: the pods `NAME-0` … of the StatefulSet's replicas exist (pending,
    /// without an address, so nothing observes a Redis server in them), extra ones are gone, and the
    /// StatefulSet's status counts them.
    fn run_statefulset_controller(&self) {
        let mut sts: StatefulSet = self
            .api
            .get(NAMESPACE, NAME)
            .expect("the StatefulSet exists");
        let spec = sts.spec.clone().expect("a StatefulSet has a spec");
        let replicas = spec.replicas.unwrap_or(1);
        // A revision names a pod template (as the controller's hash of it does): scaling keeps it.
        let mut hasher = DefaultHasher::new();
        serde_json::to_string(&spec.template)
            .expect("a template serializes")
            .hash(&mut hasher);
        let revision = format!("{NAME}-{:x}", hasher.finish());
        let template = spec.template.metadata.unwrap_or_default();
        let owner = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: NAME.into(),
            uid: sts.uid().expect("a stored StatefulSet has a uid"),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        for ordinal in 0..replicas {
            let name = format!("{NAME}-{ordinal}");
            if self.api.get::<Pod>(NAMESPACE, &name).is_some() {
                continue;
            }
            let mut labels = template.labels.clone().unwrap_or_default();
            labels.insert(REVISION_LABEL.into(), revision.clone());
            self.api.insert(&Pod {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: Some(NAMESPACE.into()),
                    labels: Some(labels),
                    annotations: template.annotations.clone(),
                    owner_references: Some(vec![owner.clone()]),
                    ..Default::default()
                },
                spec: None,
                status: Some(PodStatus {
                    phase: Some("Pending".into()),
                    ..Default::default()
                }),
            });
        }
        for pod in self.api.list::<Pod>(NAMESPACE) {
            let ordinal = pod.name_any()[NAME.len() + 1..].parse::<i32>();
            if ordinal.is_ok_and(|o| o >= replicas) {
                self.api.delete::<Pod>(NAMESPACE, &pod.name_any());
            }
        }
        sts.status = Some(StatefulSetStatus {
            observed_generation: sts.metadata.generation,
            replicas,
            ready_replicas: Some(0),
            updated_replicas: Some(replicas),
            current_revision: Some(revision.clone()),
            update_revision: Some(revision),
            ..Default::default()
        });
        self.api.update_status(&sts);
    }
}

/// A new instance `NAME` with `spec`, as a user creates it (no finalizer, no status).
fn instance(spec: RedisInstanceSpec) -> RedisInstance {
    RedisInstance {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

/// The default spec (`spec: {}`) with `replicas` pods.
fn spec(replicas: i32) -> RedisInstanceSpec {
    RedisInstanceSpec {
        replicas,
        ..Default::default()
    }
}

/// A world whose API holds a new instance with `spec` that already carries the operator's finalizer (the first
/// reconcile's only write, see `a_new_instance_first_gets_only_the_finalizer`).
fn world_with_finalized(spec: RedisInstanceSpec) -> World {
    let world = World::new();
    let mut ri = instance(spec);
    ri.metadata.finalizers = Some(vec![FINALIZER.into()]);
    world.api.insert(&ri);
    world
}

/// A world whose instance with `spec` has converged: reconciled until a reconcile wrote nothing (asserting that
/// this took the expected number of reconciles), with the StatefulSet controller's pending pods when `pods`.
async fn converged(spec: RedisInstanceSpec, pods: bool) -> World {
    let mut world = World::new();
    world.api.insert(&instance(spec));
    let mut rounds = 0;
    loop {
        let requests = world.reconcile().await;
        if pods && world.api.get::<StatefulSet>(NAMESPACE, NAME).is_some() {
            world.run_statefulset_controller();
        }
        if !requests.iter().any(Recorded::is_write) {
            break;
        }
        rounds += 1;
        assert!(
            rounds <= ROUNDS_TO_CONVERGE,
            "still writing after {rounds} reconciles: {:#?}",
            writes(&requests)
        );
    }
    assert_eq!(rounds, ROUNDS_TO_CONVERGE, "reconciles that wrote");
    world
}

/// What one reconcile wrote: every request but GETs and Events, in order, and the reasons of the Events.
#[derive(Debug, PartialEq)]
struct Writes {
    /// `METHOD path?query`, a POST followed by the name it creates.
    requests: Vec<String>,
    /// The reason of every Event published, in order.
    events: Vec<String>,
}

/// The write set of `requests`.
fn writes(requests: &[Recorded]) -> Writes {
    let mut writes = Writes {
        requests: Vec::new(),
        events: Vec::new(),
    };
    for request in requests.iter().filter(|r| r.is_write()) {
        let body = request.body.clone().unwrap_or_default();
        if request.is_event() {
            writes
                .events
                .push(body["reason"].as_str().unwrap_or_default().to_string());
        } else if request.method == Method::POST {
            let created = body["metadata"]["name"].as_str().unwrap_or_default();
            writes
                .requests
                .push(format!("{} {created}", request.line()));
        } else {
            writes.requests.push(request.line());
        }
    }
    writes
}

/// The path of object `name` of kind `K` in the test namespace.
fn path<K: Resource<DynamicType = ()>>(name: &str) -> String {
    format!("{}/{name}", K::url_path(&(), Some(NAMESPACE)))
}

/// The server-side apply of object `name` of kind `K`.
fn apply<K: Resource<DynamicType = ()>>(name: &str) -> String {
    format!("PATCH {}{APPLY_QUERY}", path::<K>(name))
}

/// The status write of the instance (a PUT guarded by its resourceVersion).
fn status_write() -> String {
    format!("PUT {}/status?", path::<RedisInstance>(NAME))
}

/// The creation of Secret `name`.
fn create_secret(name: &str) -> String {
    format!("POST {}? {name}", Secret::url_path(&(), Some(NAMESPACE)))
}

/// Every child the operator applies to a new instance with the default spec, in the order it applies them:
/// the users Secret, the ConfigMap, the Services, the PodDisruptionBudgets, the NetworkPolicy, the StatefulSet.
fn children_applied() -> Vec<String> {
    vec![
        apply::<Secret>("cache-acl"),
        apply::<ConfigMap>("cache-config"),
        apply::<Service>("cache"),
        apply::<Service>("cache-replicas"),
        apply::<Service>("cache-headless"),
        apply::<PodDisruptionBudget>("cache-primary"),
        apply::<PodDisruptionBudget>("cache-replicas"),
        apply::<NetworkPolicy>("cache"),
        apply::<StatefulSet>("cache"),
    ]
}

#[tokio::test]
async fn a_new_instance_first_gets_only_the_finalizer() {
    let mut world = World::new();
    world.api.insert(&instance(spec(1)));

    let requests = world.reconcile().await;

    assert_eq!(
        writes(&requests),
        Writes {
            requests: vec![format!("PATCH {}?", path::<RedisInstance>(NAME))],
            events: vec![],
        }
    );
    assert_eq!(
        requests.len(),
        1,
        "nothing is read before the finalizer is there"
    );
    assert_eq!(world.instance().finalizers(), [FINALIZER]);
    assert!(
        world.instance().status.is_none(),
        "no status before the finalizer"
    );
}

#[tokio::test]
async fn a_new_instance_with_its_finalizer_gets_every_child_and_one_status_write() {
    for replicas in [1, 3] {
        let mut world = world_with_finalized(spec(replicas));

        let requests = world.reconcile().await;

        let mut expected = vec![create_secret("cache-auth")];
        expected.extend(children_applied());
        expected.push(status_write());
        assert_eq!(
            writes(&requests),
            Writes {
                requests: expected,
                events: vec!["Creating".into()],
            },
            "replicas: {replicas}"
        );
        let sts: StatefulSet = world.api.get(NAMESPACE, NAME).expect("applied");
        assert_eq!(sts.spec.and_then(|s| s.replicas), Some(replicas));
        assert_eq!(world.phase(), (Phase::Creating, "Creating".into()));
        let auth: Secret = world.api.get(NAMESPACE, "cache-auth").expect("created");
        assert!(
            auth.data
                .is_some_and(|d| d.get("password").is_some_and(|p| p.0.len() >= 32)),
            "a generated password"
        );
    }
}

#[tokio::test]
async fn a_created_instance_records_its_first_observation_then_writes_nothing() {
    let mut world = world_with_finalized(spec(1));
    world.reconcile().await;

    // The StatefulSet is in the cache now: the topology pass runs and records the pod it did not find.
    let requests = world.reconcile().await;
    assert_eq!(
        writes(&requests),
        Writes {
            requests: vec![status_write()],
            events: vec![],
        }
    );
    let status = world.instance().status.expect("written");
    assert_eq!(status.pods.len(), 1);
    assert_eq!(status.pods[0].name, "cache-0");

    let requests = world.reconcile().await;
    assert_eq!(
        requests.iter().map(Recorded::line).collect::<Vec<_>>(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_converged_instance_makes_no_request() {
    // Without pods the instance stays Creating; with pods that have no address yet, Pending.
    for (replicas, pods, phase) in [
        (1, false, Phase::Creating),
        (1, true, Phase::Pending),
        (3, true, Phase::Pending),
    ] {
        let mut world = converged(spec(replicas), pods).await;

        for _ in 0..3 {
            let requests = world.reconcile().await;
            assert_eq!(
                requests.iter().map(Recorded::line).collect::<Vec<_>>(),
                Vec::<String>::new(),
                "replicas {replicas}, pods {pods}: no write, and no read either (everything is in the caches)"
            );
        }
        assert_eq!(world.phase().0, phase, "replicas {replicas}, pods {pods}");
    }
}

#[tokio::test]
async fn a_restarted_operator_writes_nothing_to_a_converged_instance() {
    let world = converged(spec(3), true).await;
    let mut restarted = World::over(world.api.clone());

    let requests = restarted.reconcile().await;

    assert_eq!(
        writes(&requests),
        Writes {
            requests: vec![],
            events: vec![]
        }
    );
    // Only the content of the instance's own Secrets is read again (their metadata is in the caches).
    let reads: Vec<String> = requests.iter().map(Recorded::line).collect();
    assert_eq!(
        reads,
        [
            format!("GET {}", path::<Secret>("cache-auth")),
            format!("GET {}", path::<Secret>("cache-acl")),
        ]
    );
    assert_eq!(restarted.converge(0).await, 0);
}

#[tokio::test]
async fn scaling_up_applies_the_statefulset_and_the_primary_budget_and_writes_status_once() {
    let mut world = converged(spec(1), true).await;
    let mut ri = world.instance();
    ri.spec.replicas = 3;
    world.api.update(&ri);

    let requests = world.reconcile().await;

    // With replicas the primary's budget keeps it (minAvailable 1) where a single server could be evicted.
    assert_eq!(
        writes(&requests),
        Writes {
            requests: vec![
                apply::<PodDisruptionBudget>("cache-primary"),
                apply::<StatefulSet>("cache"),
                status_write(),
            ],
            events: vec!["StatefulSetUpdate".into()],
        }
    );
    let sts: StatefulSet = world.api.get(NAMESPACE, NAME).expect("exists");
    assert_eq!(sts.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(world.phase().0, Phase::Updating);
}

#[tokio::test]
async fn scaling_within_replicated_sizes_applies_only_the_statefulset() {
    let mut world = converged(spec(3), true).await;
    let mut ri = world.instance();
    ri.spec.replicas = 5;
    world.api.update(&ri);

    let requests = world.reconcile().await;

    assert_eq!(
        writes(&requests),
        Writes {
            requests: vec![apply::<StatefulSet>("cache"), status_write()],
            events: vec!["StatefulSetUpdate".into()],
        }
    );
    world.run_statefulset_controller();
    assert_eq!(
        world.converge(2).await,
        1,
        "one status write records the new pods, then nothing"
    );
    assert_eq!(world.api.list::<Pod>(NAMESPACE).len(), 5);
}

#[tokio::test]
async fn an_invalid_new_instance_gets_one_status_write_and_nothing_else() {
    let mut invalid = spec(1);
    invalid.config = BTreeMap::from([("port".to_string(), "7000".to_string())]);
    let mut world = world_with_finalized(invalid);

    let requests = world.reconcile().await;

    assert_eq!(
        writes(&requests),
        Writes {
            requests: vec![status_write()],
            events: vec!["InvalidSpec".into()],
        }
    );
    assert_eq!(world.phase(), (Phase::Failed, "InvalidSpec".into()));
    assert_eq!(
        world.api.list::<Secret>(NAMESPACE).len(),
        0,
        "not even a password is generated"
    );
    assert_eq!(world.converge(0).await, 0, "the refusal waits for a change");
}

#[tokio::test]
async fn an_invalid_change_of_a_converged_instance_applies_nothing() {
    let mut world = converged(spec(3), true).await;
    let mut ri = world.instance();
    ri.spec.replication.failover_delay_seconds = -1;
    ri.spec.image = "redis:7.4".into();
    world.api.update(&ri);

    let requests = world.reconcile().await;

    assert_eq!(
        writes(&requests),
        Writes {
            requests: vec![status_write()],
            events: vec!["InvalidSpec".into()],
        }
    );
    assert_eq!(world.phase(), (Phase::Failed, "InvalidSpec".into()));
    let sts: StatefulSet = world.api.get(NAMESPACE, NAME).expect("kept");
    let image = sts.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(
        image.as_deref(),
        Some("redis:7.2"),
        "the valid part of the change is not applied either"
    );
    assert_eq!(world.converge(0).await, 0, "the refusal waits for a change");
}

/// A ConfigMap `cache-config` someone else made: no owner reference, none of the operator's labels (so no watch
/// of the operator's delivers it).
fn foreign_config_map() -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some("cache-config".into()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "redis.conf".to_string(),
            "someone else's".to_string(),
        )])),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_foreign_config_map_in_a_converged_instance_s_place_blocks_it_untouched() {
    let mut world = converged(spec(3), true).await;
    world.api.delete::<ConfigMap>(NAMESPACE, "cache-config");
    world.api.insert(&foreign_config_map());

    let requests = world.reconcile().await;

    assert_eq!(
        writes(&requests),
        Writes {
            requests: vec![status_write()],
            events: vec!["ChildConflict".into()],
        }
    );
    assert!(
        requests
            .iter()
            .any(|r| r.line() == format!("GET {}", path::<ConfigMap>("cache-config"))),
        "the missing child is read from the API"
    );
    assert_eq!(world.phase(), (Phase::Failed, "ChildConflict".into()));
    let config: ConfigMap = world.api.get(NAMESPACE, "cache-config").expect("kept");
    assert_eq!(config, {
        let mut stored = foreign_config_map();
        stored.metadata = config.metadata.clone();
        stored
    });
    assert!(config.owner_references().is_empty(), "not adopted");
}

#[tokio::test]
async fn a_foreign_config_map_blocks_a_new_instance_before_any_child_is_applied() {
    let mut world = world_with_finalized(spec(1));
    world.api.insert(&foreign_config_map());

    let requests = world.reconcile().await;

    // The authentication step, which runs before the children are checked, makes the instance's own Secrets
    // (owned by the instance, they go with it); no other child is applied.
    assert_eq!(
        writes(&requests),
        Writes {
            requests: vec![
                create_secret("cache-auth"),
                apply::<Secret>("cache-acl"),
                status_write()
            ],
            events: vec!["ChildConflict".into()],
        }
    );
    assert_eq!(world.phase(), (Phase::Failed, "ChildConflict".into()));
}

#[tokio::test]
async fn a_foreign_users_secret_blocks_a_new_instance_before_anything_is_written() {
    let mut world = world_with_finalized(spec(1));
    world.api.insert(&Secret {
        metadata: ObjectMeta {
            name: Some("cache-acl".into()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    });

    let requests = world.reconcile().await;

    assert_eq!(
        writes(&requests),
        Writes {
            requests: vec![status_write()],
            events: vec!["ChildConflict".into()],
        }
    );
    assert_eq!(world.phase(), (Phase::Failed, "ChildConflict".into()));
}
