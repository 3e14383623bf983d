//! Reconcile-level tests: the operator's real `reconcile` against a fake Kubernetes API ([`fake_api`]) that
//! records every request. Between two reconciles the watch caches are re-listed from what the fake API holds, so
//! every object the operator applied (and every status it wrote) is what the next reconcile reads, as in a
//! cluster. Each test names the exact write set of one reconcile: every request but a GET, as `METHOD path?query`
//! (a POST also names what it creates), with the Events it published counted apart by reason.
//!
//! In most tests nothing answers at the pods' addresses: pods are absent or have no `podIP` (unobserved), which
//! is what a cluster shows while the pods are being created. The replication tests at the end run a real
//! `redis-server` per pod ([`servers`]), started as the pod template starts it, and play the kubelet.

mod fake_api;
#[path = "shared/server_binary.rs"]
mod server_binary;
#[path = "reconcile/servers.rs"]
mod servers;

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    Pod, PodCondition, PodStatus, Secret, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::ObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Resource, ResourceExt};
use redis_fsm::{Phase, ServerRole};
use redis_operator::api::{RedisInstance, RedisInstanceSpec};
use redis_operator::names::{FINALIZER, ROLE_LABEL};
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
    /// The containers the kubelet runs, by pod name (only in the tests with real servers).
    containers: BTreeMap<String, Container>,
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
            concurrency: 32,
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
            containers: BTreeMap::new(),
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
/// The children are applied at once, so their order varies: `requests` must be `expected` in some order that has
/// the ConfigMap and the NetworkPolicy (when applied) before the StatefulSet, and ends with `last` (kept in
/// place). Returns `requests` with that order checked and the rest sorted as `expected` is.
fn concurrently_applied(requests: &[String], expected: &[String]) -> Vec<String> {
    let at = |line: &str| requests.iter().position(|r| r == line);
    if let Some(sts) = at(&apply::<StatefulSet>("cache")) {
        for before in [
            apply::<ConfigMap>("cache-config"),
            apply::<NetworkPolicy>("cache"),
        ] {
            if let Some(i) = at(&before) {
                assert!(i < sts, "{before} after the StatefulSet in {requests:#?}");
            }
        }
    }
    let mut sorted = requests.to_vec();
    sorted.sort_by_key(|r| expected.iter().position(|e| e == r).unwrap_or(usize::MAX));
    sorted
}

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
        let written = writes(&requests);
        assert_eq!(
            written.requests.last(),
            Some(&status_write()),
            "replicas: {replicas}"
        );
        assert_eq!(
            Writes {
                requests: concurrently_applied(&written.requests, &expected),
                events: written.events,
            },
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
    // The Secrets the first reconcile wrote are not read back: the API server's answers to those writes are
    // their content at the versions the cache now holds.
    let secret_reads: Vec<String> = requests
        .iter()
        .map(Recorded::line)
        .filter(|line| line.starts_with("GET") && line.contains("/secrets/"))
        .collect();
    assert_eq!(secret_reads, Vec::<String>::new());
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

/// A reconcile whose Secret cache holds the generated `NAME-auth` but not yet `NAME-acl` (created a moment later)
/// stops, and leaves `NAME-acl` with the internal passwords the servers start with.
#[tokio::test]
async fn a_cache_without_the_users_secret_does_not_overwrite_its_passwords() {
    let mut world = World::new();
    world.api.insert(&instance(spec(1)));
    while world.api.get::<Secret>(NAMESPACE, "cache-acl").is_none() {
        world.reconcile().await;
    }
    let created: Secret = world.api.get(NAMESPACE, "cache-acl").expect("created");
    world.caches.sync(&world.api, NAMESPACE);
    world.caches.lag_secret(&world.api, NAMESPACE, "cache-acl");
    world.api.take_requests();

    let result = reconcile(Arc::new(world.instance()), world.ctx.clone()).await;

    let requests = world.api.take_requests();
    assert!(
        result.is_err(),
        "the stale reconcile went on: {requests:#?}"
    );
    assert_eq!(writes(&requests).requests, Vec::<String>::new());
    let now: Secret = world.api.get(NAMESPACE, "cache-acl").expect("kept");
    assert_eq!(now.data, created.data, "the internal passwords changed");
    // Once the cache has caught up, the instance converges with the passwords it had.
    world.converge(ROUNDS_TO_CONVERGE).await;
    let now: Secret = world.api.get(NAMESPACE, "cache-acl").expect("kept");
    assert_eq!(now.data, created.data, "the internal passwords changed");
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
    let written = writes(&requests);
    let expected = vec![
        apply::<PodDisruptionBudget>("cache-primary"),
        apply::<StatefulSet>("cache"),
        status_write(),
    ];
    assert_eq!(written.requests.last(), Some(&status_write()));
    assert_eq!(
        Writes {
            requests: concurrently_applied(&written.requests, &expected),
            events: written.events,
        },
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

    // Nothing is created, not even the instance's own Secrets: only the refusal is written.
    assert_eq!(
        writes(&requests),
        Writes {
            requests: vec![status_write()],
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

// Replication with real servers: one `redis-server` per pod, at the pod's address.

/// The topology a status records: `currentPrimary`, `targetPrimary`, and whether `primaryFailingSince` is set.
#[derive(Debug, PartialEq)]
struct Topology {
    current: Option<String>,
    target: Option<String>,
    failing: bool,
}

/// The recorded topology `current`/`target`, with `failing` as said.
fn recorded(current: &str, target: &str, failing: bool) -> Topology {
    Topology {
        current: Some(current.into()),
        target: Some(target.into()),
        failing,
    }
}

/// A pod's container as the kubelet runs it.
struct Container {
    /// The pod's address (`status.podIP`), kept across container restarts.
    ip: String,
    /// The running server; `None` once it was killed.
    server: Option<servers::Server>,
    /// `restartCount`: how often the kubelet restarted the container.
    restarts: i32,
}

/// A pod's `Ready` condition.
fn ready_condition(ready: bool) -> PodCondition {
    PodCondition {
        type_: "Ready".into(),
        status: if ready { "True" } else { "False" }.into(),
        ..Default::default()
    }
}

/// A time of the kubelet's reports.
fn time(text: &str) -> Time {
    Time(text.parse().expect("an RFC 3339 time"))
}

impl World {
    /// The Redis container's arguments in the StatefulSet's pod template, and the `redis.conf` its ConfigMap
    /// renders: how a pod starts its server.
    fn pod_command(&self) -> (Vec<String>, String) {
        let sts: StatefulSet = self
            .api
            .get(NAMESPACE, NAME)
            .expect("the StatefulSet exists");
        let pod = sts.spec.and_then(|s| s.template.spec).expect("a pod spec");
        let args = pod.containers[0].args.clone().expect("arguments");
        let config: ConfigMap = self
            .api
            .get(NAMESPACE, "cache-config")
            .expect("the ConfigMap exists");
        let conf = config
            .data
            .and_then(|d| d.get("redis.conf").cloned())
            .expect("redis.conf");
        (args, conf)
    }

    /// Plays the kubelet starting pod `pod`'s container for the first time: its server at a new address.
    async fn start_container(&mut self, pod: &str) {
        let (args, conf) = self.pod_command();
        for _ in 0..20 {
            let ip = servers::next_address();
            if let Some(server) = servers::Server::start(&ip, &args, &conf).await {
                self.containers.insert(
                    pod.to_string(),
                    Container {
                        ip,
                        server: Some(server),
                        restarts: 0,
                    },
                );
                return;
            }
        }
        panic!("no free loopback address for {pod}");
    }

    /// Kills pod `pod`'s server with SIGKILL (the process is gone when this returns).
    fn kill_container(&mut self, pod: &str) {
        let container = self.containers.get_mut(pod).expect("a running container");
        container.server.take().expect("a running server").kill();
    }

    /// Plays the kubelet restarting pod `pod`'s container after its server was killed: the same address, the
    /// same arguments (so it boots parked), an empty data directory, one more restart.
    async fn restart_container(&mut self, pod: &str) {
        let (args, conf) = self.pod_command();
        self.restart_container_with(pod, &args, &conf).await;
    }

    /// [`World::restart_container`] with the container arguments `args` and the configuration `conf`.
    async fn restart_container_with(&mut self, pod: &str, args: &[String], conf: &str) {
        let container = self.containers.get_mut(pod).expect("a container");
        assert!(container.server.is_none(), "{pod} still runs");
        let server = servers::Server::start(&container.ip, args, conf)
            .await
            .unwrap_or_else(|| panic!("{pod} could not start again at {}", container.ip));
        container.server = Some(server);
        container.restarts += 1;
    }

    /// The address of pod `pod`.
    fn ip(&self, pod: &str) -> String {
        self.containers[pod].ip.clone()
    }

    /// The addresses of every pod's server that runs.
    fn live_ips(&self) -> Vec<String> {
        self.containers
            .values()
            .filter(|c| c.server.is_some())
            .map(|c| c.ip.clone())
            .collect()
    }

    /// Plays the kubelet's status reports: every pod with a container is Running at its address, Ready as its
    /// readiness probe says, with its container's state and restart count; the StatefulSet counts the ready
    /// pods.
    async fn report_pods(&self) {
        let mut ready_pods = 0;
        for (name, container) in &self.containers {
            let mut pod: Pod = self.api.get(NAMESPACE, name).expect("the pod exists");
            let running = container.server.is_some();
            let ready = running && servers::ready(&container.ip).await;
            ready_pods += i32::from(ready);
            let state = if running {
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(time("2024-01-01T02:00:00Z")),
                    }),
                    ..Default::default()
                }
            } else {
                ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 137,
                        reason: Some("Error".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            };
            // A server that served for an hour and was killed: a restart, not a crash.
            let last_state = (container.restarts > 0).then(|| ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 137,
                    reason: Some("Error".into()),
                    started_at: Some(time("2024-01-01T00:00:00Z")),
                    finished_at: Some(time("2024-01-01T01:00:00Z")),
                    ..Default::default()
                }),
                ..Default::default()
            });
            pod.status = Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(container.ip.clone()),
                conditions: Some(vec![ready_condition(ready)]),
                container_statuses: Some(vec![ContainerStatus {
                    name: "redis".into(),
                    image: "redis:7.2".into(),
                    image_id: "redis@sha256:0".into(),
                    ready,
                    started: Some(running),
                    restart_count: container.restarts,
                    state: Some(state),
                    last_state,
                    ..Default::default()
                }]),
                ..Default::default()
            });
            self.api.update_status(&pod);
        }
        let mut sts: StatefulSet = self
            .api
            .get(NAMESPACE, NAME)
            .expect("the StatefulSet exists");
        if let Some(status) = sts.status.as_mut() {
            status.ready_replicas = Some(ready_pods);
            status.available_replicas = Some(ready_pods);
        }
        self.api.update_status(&sts);
    }

    /// One step of the cluster with real servers: the servers settle after what the last reconcile told them,
    /// the kubelet reports the pods, then one reconcile; returns what it wrote.
    async fn step(&mut self) -> Writes {
        servers::settle(&self.live_ips()).await;
        self.report_pods().await;
        writes(&self.reconcile().await)
    }

    /// Steps until `done` holds after a step, at most `bound` steps; returns what each step wrote and the
    /// topology it recorded.
    async fn step_until(
        &mut self,
        bound: usize,
        done: impl Fn(&World) -> bool,
    ) -> Vec<(Writes, Topology)> {
        let mut steps = Vec::new();
        while steps.is_empty() || !done(self) {
            assert!(
                steps.len() < bound,
                "not done after {bound} steps: {steps:#?}\nstatus: {:#?}",
                self.instance().status
            );
            let writes = self.step().await;
            steps.push((writes, self.topology()));
        }
        steps
    }

    /// The topology the status records.
    fn topology(&self) -> Topology {
        let status = self.instance().status.unwrap_or_default();
        Topology {
            current: status.current_primary,
            target: status.target_primary,
            failing: status.primary_failing_since.is_some(),
        }
    }

    /// Whether the instance is `Running`.
    fn is_running(&self) -> bool {
        self.instance()
            .status
            .is_some_and(|s| s.status == Phase::Running)
    }

    /// The recorded current primary, when no failover is in flight.
    fn settled_primary(&self) -> Option<String> {
        let status = self.instance().status?;
        let current = status.current_primary?;
        (status.target_primary.as_deref() == Some(current.as_str())).then_some(current)
    }

    /// The role label of pod `pod`.
    fn role_label(&self, pod: &str) -> Option<String> {
        let pod: Pod = self.api.get(NAMESPACE, pod).expect("the pod exists");
        pod.labels().get(ROLE_LABEL).cloned()
    }
}

/// The spec of the replication tests: `replicas` pods, no authentication, and the shortest failover delay
/// unless `delay` says otherwise.
fn replicated(replicas: i32, delay: i32) -> RedisInstanceSpec {
    let mut spec = spec(replicas);
    spec.auth.enabled = false;
    spec.replication.failover_delay_seconds = delay;
    spec
}

/// A world whose instance with `spec` runs a real server in every pod, stepped until it is `Running`; returns
/// the steps after the pods started.
async fn running(spec: RedisInstanceSpec) -> (World, Vec<(Writes, Topology)>) {
    let mut world = World::new();
    world.api.insert(&instance(spec));
    // The finalizer, then the children.
    world.reconcile().await;
    world.reconcile().await;
    world.run_statefulset_controller();
    for pod in world.api.list::<Pod>(NAMESPACE) {
        world.start_container(&pod.name_any()).await;
    }
    let steps = world.step_until(12, World::is_running).await;
    (world, steps)
}

/// The merge patch of pod `pod`'s role label.
fn label(pod: &str) -> String {
    format!("PATCH {}?", path::<Pod>(pod))
}

/// A step's write set: `requests` in order, then the Events by reason.
fn wrote(requests: &[String], events: &[&str]) -> Writes {
    Writes {
        requests: requests.to_vec(),
        events: events.iter().map(|e| e.to_string()).collect(),
    }
}

/// Keys written on the primary, each confirmed by a replica (`WAIT 1`).
const CONFIRMED: [&str; 5] = ["k0", "k1", "k2", "k3", "k4"];

/// Writes [`CONFIRMED`] on the primary `primary`, then waits until every replica has them too (so which replica
/// is the most advanced does not depend on timing).
async fn write_confirmed(world: &World, primary: &str) {
    let ip = world.ip(primary);
    for key in CONFIRMED {
        servers::set_confirmed(&ip, key, &format!("{key}-value")).await;
    }
    servers::settle(&world.live_ips()).await;
}

/// Asserts that pod `pod`'s server holds every key of [`CONFIRMED`].
async fn assert_holds_confirmed(world: &World, pod: &str) {
    for key in CONFIRMED {
        assert_eq!(
            servers::get(&world.ip(pod), key).await,
            Some(format!("{key}-value")),
            "{key} on {pod}"
        );
    }
}

/// The replica a failover away from `cache-0` must elect: the most advanced of `cache-1` and `cache-2`, the
/// lower ordinal on a tie.
async fn most_advanced_replica(world: &World) -> (&'static str, &'static str) {
    let offset = |pod: &str| {
        let ip = world.ip(pod);
        async move {
            servers::observe(&ip)
                .await
                .expect("the replica answers")
                .repl_offset
        }
    };
    if offset("cache-2").await > offset("cache-1").await {
        ("cache-2", "cache-1")
    } else {
        ("cache-1", "cache-2")
    }
}

/// `reconciles` reconciles (after the servers settled and the kubelet reported) make no request at all, and
/// leave every server as it was.
async fn assert_idle(world: &mut World, reconciles: usize) {
    let before: Vec<_> = {
        let mut states = Vec::new();
        for ip in world.live_ips() {
            states.push(servers::observe(&ip).await.expect("answers").run_id);
        }
        states
    };
    for round in 0..reconciles {
        servers::settle(&world.live_ips()).await;
        world.report_pods().await;
        let requests = world.reconcile().await;
        assert_eq!(
            requests.iter().map(Recorded::line).collect::<Vec<_>>(),
            Vec::<String>::new(),
            "reconcile {round} of a converged instance"
        );
    }
    let mut after = Vec::new();
    for ip in world.live_ips() {
        after.push(servers::observe(&ip).await.expect("answers").run_id);
    }
    assert_eq!(before, after, "no server restarted");
    assert!(world.is_running());
}

/// The last steps of a failover once the old primary `cache-0` runs again (restarted, parked, empty): it and
/// `other` are pointed at `primary` (a command; the status is written only when it recorded `cache-0` as
/// unreachable, `was_down`), then labelled replicas once in sync, and the instance is `Running`.
fn rejoined(primary: &str, other: &str, was_down: bool) -> Vec<(Writes, Topology)> {
    let repoint = if was_down {
        wrote(&[status_write()], &[])
    } else {
        wrote(&[], &[])
    };
    vec![
        (repoint, recorded(primary, primary, false)),
        (
            wrote(
                &[status_write(), label("cache-0"), label(other)],
                &["AllReplicasReady"],
            ),
            recorded(primary, primary, false),
        ),
    ]
}

/// The steps of a bootstrap from parked pods with real servers: the lowest ordinal is recorded, promoted,
/// confirmed (and labelled) once it answers as a master; the others are pointed at it and labelled once in sync.
fn bootstrap_of_cache_0() -> Vec<(Writes, Topology)> {
    vec![
        (
            wrote(&[status_write()], &["PodsPending"]),
            recorded("cache-0", "cache-0", false),
        ),
        (wrote(&[], &[]), recorded("cache-0", "cache-0", false)),
        (
            wrote(&[status_write(), label("cache-0")], &["PrimaryConfirmed"]),
            recorded("cache-0", "cache-0", false),
        ),
        (wrote(&[], &[]), recorded("cache-0", "cache-0", false)),
        (
            wrote(
                &[status_write(), label("cache-1"), label("cache-2")],
                &["AllReplicasReady"],
            ),
            recorded("cache-0", "cache-0", false),
        ),
    ]
}

#[tokio::test]
async fn real_servers_get_one_confirmed_primary_and_then_no_request() {
    let (mut world, steps) = running(replicated(3, 0)).await;

    // Every pod boots parked. The first pass with the password in force on every pod writes NAME-connection,
    // once.
    let mut expected = bootstrap_of_cache_0();
    expected[0]
        .0
        .requests
        .insert(0, apply::<Secret>("cache-connection"));
    assert_eq!(steps, expected);
    assert_eq!(world.role_label("cache-0").as_deref(), Some("primary"));
    assert_eq!(world.role_label("cache-1").as_deref(), Some("replica"));
    assert_eq!(world.role_label("cache-2").as_deref(), Some("replica"));
    let status = world.instance().status.expect("written");
    assert_eq!(
        status.primary_run_id,
        servers::observe(&world.ip("cache-0"))
            .await
            .map(|s| s.run_id)
    );

    assert_idle(&mut world, 3).await;
}

#[tokio::test]
async fn a_killed_primary_is_failed_over_to_a_replica_that_holds_every_confirmed_write() {
    let (mut world, _) = running(replicated(3, 0)).await;
    write_confirmed(&world, "cache-0").await;

    world.kill_container("cache-0");
    let (new, other) = most_advanced_replica(&world).await;
    let steps = world
        .step_until(12, |w| w.settled_primary().is_some_and(|p| p != "cache-0"))
        .await;

    let every_label = [
        status_write(),
        label("cache-0"),
        label("cache-1"),
        label("cache-2"),
    ];
    assert_eq!(
        steps,
        [
            // Unreachable: marked failing, and no pod keeps a role label (none is confirmed).
            (
                wrote(&every_label, &["PodsPending"]),
                recorded("cache-0", "cache-0", true)
            ),
            // failoverDelaySeconds: 0 has passed at the next look.
            (
                wrote(&[status_write()], &["FailoverStarted", "Failover"]),
                recorded("cache-0", "Pending", true)
            ),
            // The replicas that followed it are parked (commands only).
            (wrote(&[], &[]), recorded("cache-0", "Pending", true)),
            (
                wrote(&[status_write()], &[]),
                recorded("cache-0", new, true)
            ),
            // REPLICAOF NO ONE.
            (wrote(&[], &[]), recorded("cache-0", new, true)),
            (
                wrote(&[status_write(), label(new)], &["PrimaryConfirmed"]),
                recorded(new, new, false)
            ),
        ]
    );
    assert_holds_confirmed(&world, new).await;
    assert_eq!(world.role_label(new).as_deref(), Some("primary"));
    assert_eq!(world.role_label("cache-0"), None);
    assert_eq!(world.role_label(other), None);

    // The kubelet restarts the killed container: parked and empty, it rejoins as a replica of the new primary.
    world.restart_container("cache-0").await;
    let steps = world.step_until(12, World::is_running).await;
    assert_eq!(steps, rejoined(new, other, true));
    assert_holds_confirmed(&world, "cache-0").await;
    assert_idle(&mut world, 3).await;
}

/// The old primary `cache-0` is killed and restarted by the kubelet as its pod starts it (parked, a replica
/// of itself), with an empty data directory and one more restart, at its address; when `seen_down`, one
/// reconcile sees it unreachable in between. The failover delay is an hour: only the restart (a new run id)
/// lets the operator fail over at once.
async fn fail_over_a_primary_restarted_empty(seen_down: bool) {
    let (mut world, _) = running(replicated(3, 3600)).await;
    write_confirmed(&world, "cache-0").await;

    world.kill_container("cache-0");
    let (new, other) = most_advanced_replica(&world).await;
    let mut start = Vec::new();
    if seen_down {
        assert_eq!(
            world.step().await,
            wrote(
                &[
                    status_write(),
                    label("cache-0"),
                    label("cache-1"),
                    label("cache-2")
                ],
                &["PodsPending"]
            ),
            "marked failing, labels removed"
        );
        assert_eq!(world.topology(), recorded("cache-0", "cache-0", true));
        start.push((
            wrote(&[status_write()], &["FailoverStarted", "Failover"]),
            recorded("cache-0", "Pending", true),
        ));
    } else {
        start.push((
            wrote(
                &[
                    status_write(),
                    label("cache-0"),
                    label("cache-1"),
                    label("cache-2"),
                ],
                &["FailoverStarted", "Failover"],
            ),
            recorded("cache-0", "Pending", false),
        ));
    }
    world.restart_container("cache-0").await;
    let ip = world.ip("cache-0");
    let restarted = servers::observe(&ip).await.expect("cache-0 answers");
    assert_eq!(restarted.keys, 0, "restarted empty");
    assert!(
        matches!(&restarted.role, ServerRole::Replica(link) if link.master_host == ip && !link.link_up),
        "parked: {:?}",
        restarted.role
    );
    let steps = world
        .step_until(12, |w| w.settled_primary().is_some_and(|p| p != "cache-0"))
        .await;

    let failing = seen_down;
    let mut expected = start;
    expected.extend([
        (wrote(&[], &[]), recorded("cache-0", "Pending", failing)),
        (
            wrote(&[status_write()], &[]),
            recorded("cache-0", new, failing),
        ),
        (wrote(&[], &[]), recorded("cache-0", new, failing)),
        (
            wrote(&[status_write(), label(new)], &["PrimaryConfirmed"]),
            recorded(new, new, false),
        ),
    ]);
    assert_eq!(steps, expected);
    assert_holds_confirmed(&world, new).await;

    let steps = world.step_until(12, World::is_running).await;
    assert_eq!(steps, rejoined(new, other, false));
    assert_holds_confirmed(&world, "cache-0").await;
    assert_idle(&mut world, 3).await;
}

#[tokio::test]
async fn a_primary_restarted_empty_at_its_address_is_failed_over_at_once() {
    fail_over_a_primary_restarted_empty(false).await;
}

#[tokio::test]
async fn a_primary_seen_down_then_restarted_empty_is_failed_over_at_once() {
    fail_over_a_primary_restarted_empty(true).await;
}

/// The control experiment of the two tests above: the same restart without the boot guard (no `--replicaof
/// $(POD_IP) 6379`, which the pod template always passes). The empty server comes back as a master at the address
/// its replicas still follow, and they resynchronise from it (a full sync: its history is new) before the
/// operator looks. The failover then finds no pod that shares the recorded history and no data anywhere, and
/// can only start again from the lowest ordinal: `cache-0` is confirmed again, and the confirmed writes are gone.
/// This is why every pod boots parked.
#[tokio::test]
async fn without_the_boot_guard_a_primary_restarted_empty_empties_its_replicas_first() {
    let (mut world, _) = running(replicated(3, 3600)).await;
    write_confirmed(&world, "cache-0").await;
    world.kill_container("cache-0");
    let (mut args, conf) = world.pod_command();
    let guard = args
        .iter()
        .position(|a| a == "--replicaof")
        .expect("the boot guard");
    args.drain(guard..guard + 3);
    world.restart_container_with("cache-0", &args, &conf).await;
    servers::settle(&world.live_ips()).await;
    for pod in ["cache-1", "cache-2"] {
        let state = servers::observe(&world.ip(pod)).await.expect("answers");
        assert_eq!(state.keys, 0, "{pod} copied the empty dataset");
    }

    let steps = world.step_until(12, World::is_running).await;

    assert_eq!(
        steps,
        [
            (
                wrote(
                    &[
                        status_write(),
                        label("cache-0"),
                        label("cache-1"),
                        label("cache-2")
                    ],
                    &["FailoverStarted", "Failover"]
                ),
                recorded("cache-0", "Pending", false)
            ),
            // cache-0 (a master) and the replicas following it are parked.
            (wrote(&[], &[]), recorded("cache-0", "Pending", false)),
        ]
        .into_iter()
        // No pod shares the recorded history, none holds data: start from the lowest ordinal.
        .chain(bootstrap_of_cache_0())
        .collect::<Vec<_>>()
    );
    for key in CONFIRMED {
        assert_eq!(servers::get(&world.ip("cache-0"), key).await, None, "{key}");
    }
}
