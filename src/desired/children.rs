//! Pure builders of the objects an instance owns: ConfigMap, StatefulSet, client and headless Services.
//! Nothing here talks to the API; the reconciler decides whether and how to apply what is built.

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ExecAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use redis_fsm::RoleLabel;

use crate::api::RedisInstance;
use crate::desired::container::{readiness_script, restricted_container, CONTAINER};
use crate::desired::exporter;
use crate::desired::metadata::{labels, metadata, selector_labels};
use crate::desired::placement::{self, ClientService};
use crate::desired::redis_conf::{self, CONFIG_DIR, CONFIG_FILE, DATA_DIR, REDIS_PORT};
use crate::names::{
    config_map_name, headless_name, replicas_service_name, CONFIG_HASH_ANNOTATION, DATA_VOLUME,
    ROLE_LABEL,
};

const CONFIG_VOLUME: &str = "config";
/// UID and GID of the `redis` user in the official images.
const REDIS_UID: i64 = 999;

/// Everything an instance owns, as it should be.
#[derive(Clone, Debug)]
pub struct Desired {
    /// `NAME-config` with the rendered `redis.conf`.
    pub config_map: ConfigMap,
    /// `NAME`, the Redis pods.
    pub statefulset: StatefulSet,
    /// `NAME`, for clients: selects the pod labelled primary (read-write).
    pub service: Service,
    /// `NAME-replicas`, for read-only clients: selects the pods labelled replica (in sync).
    pub replicas_service: Service,
    /// `NAME-headless`, the StatefulSet's governing Service.
    pub headless: Service,
    /// `NAME-metrics`, in front of the exporters; `None` when the exporter is off.
    pub metrics_service: Option<Service>,
    /// Hex SHA-256 of the restart-relevant configuration (the pod template's config hash).
    pub config_hash: String,
    /// `NAME-primary` and `NAME-replicas`, the PodDisruptionBudgets (see [`crate::desired::budget`]).
    pub budgets: [PodDisruptionBudget; 2],
}

/// The rendered `redis.conf` a ConfigMap holds (empty when it holds none).
pub fn config_text(config_map: &ConfigMap) -> &str {
    config_map
        .data
        .as_ref()
        .and_then(|data| data.get(CONFIG_FILE))
        .map_or("", String::as_str)
}

/// The update strategy of the StatefulSet controller's own rolling update (highest ordinal first, whatever
/// the roles), used instead of `OnDelete` only when the operator runs with `REDIS_OPERATOR_ROLLOUT=statefulset`
/// (the baseline of the rolling-update benchmark).
pub fn controller_rolling_update() -> StatefulSetUpdateStrategy {
    StatefulSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateStatefulSetStrategy {
            partition: Some(0),
            ..Default::default()
        }),
    }
}

/// Builds every child of an (already validated) instance.
pub fn build(ri: &RedisInstance) -> Desired {
    let name = ri.name_any();
    let owner = ri
        .controller_owner_ref(&())
        .expect("instances read from the API have a name and uid");
    let rendered = redis_conf::render(&ri.spec.config, &ri.spec.replication);
    let config_hash = redis_conf::config_hash(&redis_conf::restart_view(
        &ri.spec.config,
        &ri.spec.replication,
    ));
    let config_map = ConfigMap {
        metadata: metadata(ri, config_map_name(&name), &owner),
        data: Some([(CONFIG_FILE.to_string(), rendered)].into()),
        ..Default::default()
    };
    let mut statefulset = statefulset(ri, &owner, &config_hash);
    placement::place_pods(&ri.spec, &name, &mut statefulset);
    exporter::add_sidecar(&ri.spec.monitoring.exporter, &mut statefulset);
    crate::desired::auth::add_to_pod(&name, &ri.spec.auth, &mut statefulset);
    crate::desired::tls::add_to_pod(ri.spec.tls.as_ref(), &ri.spec.auth, &mut statefulset);
    for container in statefulset
        .spec
        .iter_mut()
        .flat_map(|s| s.template.spec.iter_mut())
        .flat_map(|p| p.containers.iter_mut())
        .filter(|c| c.name == crate::desired::container::CONTAINER)
    {
        crate::desired::container::use_image_programs(container);
    }
    let mut primary = service(ri, &owner, ServiceKind::Primary);
    placement::expose(&ri.spec.service, ClientService::Primary, &mut primary);
    let mut replicas_service = service(ri, &owner, ServiceKind::Replicas);
    placement::expose(
        &ri.spec.service,
        ClientService::Replicas,
        &mut replicas_service,
    );
    Desired {
        config_map,
        statefulset,
        service: primary,
        replicas_service,
        headless: service(ri, &owner, ServiceKind::Headless),
        budgets: crate::desired::budget::budgets(ri, &owner),
        metrics_service: exporter::metrics_service(ri, &owner),
        config_hash,
    }
}

/// Which of an instance's Services to build.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ServiceKind {
    /// `NAME`: the primary.
    Primary,
    /// `NAME-replicas`: the in-sync replicas.
    Replicas,
    /// `NAME-headless`: every pod, ready or not, for stable per-pod DNS.
    Headless,
}

fn service(ri: &RedisInstance, owner: &OwnerReference, kind: ServiceKind) -> Service {
    let name = ri.name_any();
    let headless = kind == ServiceKind::Headless;
    let (service_name, role) = match kind {
        ServiceKind::Primary => (name.clone(), Some(RoleLabel::Primary)),
        ServiceKind::Replicas => (replicas_service_name(&name), Some(RoleLabel::Replica)),
        ServiceKind::Headless => (headless_name(&name), None),
    };
    let mut selector = selector_labels(&name);
    if let Some(role) = role {
        selector.insert(ROLE_LABEL.to_string(), role.as_str().to_string());
    }
    Service {
        metadata: metadata(ri, service_name, owner),
        spec: Some(ServiceSpec {
            cluster_ip: headless.then(|| "None".to_string()),
            publish_not_ready_addresses: headless.then_some(true),
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some("redis".into()),
                port: REDIS_PORT,
                target_port: Some(IntOrString::String("redis".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn statefulset(ri: &RedisInstance, owner: &OwnerReference, config_hash: &str) -> StatefulSet {
    let name = ri.name_any();
    let pod_metadata = ObjectMeta {
        labels: Some(labels(&name)),
        annotations: Some([(CONFIG_HASH_ANNOTATION.to_string(), config_hash.to_string())].into()),
        ..Default::default()
    };
    let mut volumes = vec![Volume {
        name: CONFIG_VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map_name(&name),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let claim_templates = match &ri.spec.storage {
        Some(storage) => Some(vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(DATA_VOLUME.into()),
                labels: Some(labels(&name)),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: storage.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(
                        [("storage".to_string(), Quantity(storage.size.clone()))].into(),
                    ),
                    ..Default::default()
                }),
                volume_mode: Some("Filesystem".into()),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        None => {
            volumes.push(Volume {
                name: DATA_VOLUME.into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            });
            None
        }
    };
    StatefulSet {
        metadata: metadata(ri, name.clone(), owner),
        spec: Some(StatefulSetSpec {
            replicas: Some(ri.spec.replicas),
            service_name: Some(headless_name(&name)),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..Default::default()
            },
            // Parallel: a pod broken by a bad spec is replaced as soon as the spec is fixed, instead of
            // blocking the rollout forever (OrderedReady waits for the broken pod to become ready).
            pod_management_policy: Some("Parallel".into()),
            // The operator orders a rolling update itself (replicas first, a switchover, the old primary
            // last): the controller re-creates a deleted pod at the update revision but deletes none.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(pod_metadata),
                spec: Some(pod_spec(ri, volumes)),
            },
            volume_claim_templates: claim_templates,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_spec(ri: &RedisInstance, volumes: Vec<Volume>) -> PodSpec {
    // Ready: a master (the operator only labels the one it confirmed), or a replica whose link to its primary is
    // up with no full sync running. A parked pod (a replica of itself) and a replica still loading its first
    // sync are not Ready, so a scale-up or a rolling update only moves on once the new pod holds the data.
    let ready = readiness_script("redis-cli");
    PodSpec {
        containers: vec![Container {
            name: CONTAINER.into(),
            image: Some(ri.spec.image.clone()),
            command: Some(vec!["redis-server".into()]),
            // Listen on the pod's own address only. Boot guard: every server starts parked (a replica of
            // itself: read-only, data kept, replicating from nobody) and never makes itself primary; the
            // operator promotes or re-points it. Replicas announce the pod address, which is what the
            // operator points them at.
            args: Some(vec![
                format!("{CONFIG_DIR}/{CONFIG_FILE}"),
                "--bind".into(),
                "$(POD_IP)".into(),
                "--replicaof".into(),
                "$(POD_IP)".into(),
                REDIS_PORT.to_string(),
                "--replica-announce-ip".into(),
                "$(POD_IP)".into(),
            ]),
            env: Some(vec![EnvVar {
                name: "POD_IP".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "status.podIP".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ports: Some(vec![ContainerPort {
                name: Some("redis".into()),
                container_port: REDIS_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            resources: ri.spec.resources.clone(),
            // A server that exits with an error leaves its last output in the container's termination message,
            // which the status quotes (`PodsFailing`): Redis writes its reason for refusing a configuration or
            // an ACL file to its log, not to the termination-message file.
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            readiness_probe: Some(Probe {
                exec: Some(ExecAction {
                    command: Some(vec!["sh".into(), "-c".into(), ready]),
                }),
                period_seconds: Some(5),
                timeout_seconds: Some(2),
                ..Default::default()
            }),
            liveness_probe: Some(Probe {
                tcp_socket: Some(TCPSocketAction {
                    port: IntOrString::String("redis".into()),
                    ..Default::default()
                }),
                initial_delay_seconds: Some(15),
                period_seconds: Some(10),
                ..Default::default()
            }),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: CONFIG_VOLUME.into(),
                    mount_path: CONFIG_DIR.into(),
                    read_only: Some(true),
                    ..Default::default()
                },
                VolumeMount {
                    name: DATA_VOLUME.into(),
                    mount_path: DATA_DIR.into(),
                    ..Default::default()
                },
            ]),
            security_context: Some(restricted_container()),
            ..Default::default()
        }],
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(REDIS_UID),
            run_as_group: Some(REDIS_UID),
            fs_group: Some(REDIS_UID),
            // The runtime's default syscall filter (the "restricted" Pod Security level asks for it).
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        // Redis never talks to the API: a mounted token would only be something to steal.
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(30),
        volumes: Some(volumes),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::{ClaimDeletePolicy, RedisInstanceSpec, StorageSpec};
    use crate::names::{INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL, NAME_LABEL};

    /// A test fixture: an instance as read from the API.
    pub fn instance(name: &str) -> RedisInstance {
        let mut ri = RedisInstance::new(
            name,
            RedisInstanceSpec {
                image: "redis:7.2".into(),
                replicas: 3,
                resources: None,
                storage: None,
                config: [("maxmemory".to_string(), "100mb".to_string())].into(),
                replication: Default::default(),
                ..Default::default()
            },
        );
        ri.metadata.namespace = Some("ns".into());
        ri.metadata.uid = Some("uid-1".into());
        ri.metadata.generation = Some(1);
        ri
    }

    #[test]
    fn a_valkey_image_runs_valkey_server_and_probes_with_valkey_cli_and_a_redis_image_is_as_before()
    {
        let container = |ri: &RedisInstance| {
            build(ri)
                .statefulset
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
                .containers[0]
                .clone()
        };
        let probe = |c: &k8s_openapi::api::core::v1::Container| {
            c.readiness_probe
                .clone()
                .unwrap()
                .exec
                .unwrap()
                .command
                .unwrap()
                .join(" ")
        };
        let mut ri = instance("cache");
        let redis = container(&ri);
        assert_eq!(redis.command, Some(vec!["redis-server".to_string()]));
        assert!(probe(&redis).contains("redis-cli "), "{}", probe(&redis));
        ri.spec.image = "valkey/valkey:9".into();
        let valkey = container(&ri);
        assert_eq!(valkey.command, Some(vec!["valkey-server".to_string()]));
        assert!(probe(&valkey).contains("valkey-cli "), "{}", probe(&valkey));
        assert!(!probe(&valkey).contains("redis-cli"), "{}", probe(&valkey));
        // The same arguments, mounts and probe otherwise.
        assert_eq!(valkey.args, redis.args);
        assert_eq!(
            probe(&valkey).replace("valkey-cli", "redis-cli"),
            probe(&redis)
        );
    }

    #[test]
    fn children_are_labelled_and_owned() {
        let desired = build(&instance("cache"));
        let metas = [
            &desired.config_map.metadata,
            &desired.statefulset.metadata,
            &desired.service.metadata,
            &desired.replicas_service.metadata,
            &desired.headless.metadata,
        ];
        for meta in metas {
            let labels = meta.labels.as_ref().unwrap();
            assert_eq!(labels[INSTANCE_LABEL], "cache");
            assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
            assert_eq!(labels[NAME_LABEL], "redis");
            let owner = &meta.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.uid.as_str()),
                ("RedisInstance", "uid-1")
            );
            assert_eq!(owner.controller, Some(true));
            assert_eq!(meta.namespace.as_deref(), Some("ns"));
        }
        assert_eq!(
            desired.config_map.metadata.name.as_deref(),
            Some("cache-config")
        );
        assert_eq!(
            desired.headless.metadata.name.as_deref(),
            Some("cache-headless")
        );
    }

    #[test]
    fn statefulset_carries_config_hash_and_spec() {
        let ri = instance("cache");
        let desired = build(&ri);
        let spec = desired.statefulset.spec.unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("cache-headless"));
        let template = spec.template;
        let hash = &template.metadata.unwrap().annotations.unwrap()[CONFIG_HASH_ANNOTATION];
        let rendered = &desired.config_map.data.unwrap()[CONFIG_FILE];
        assert_eq!(
            hash,
            &redis_conf::config_hash(&redis_conf::restart_view(
                &ri.spec.config,
                &ri.spec.replication
            ))
        );
        assert!(rendered.contains("maxmemory 100mb"));
        let pod = template.spec.unwrap();
        assert_eq!(pod.containers[0].image.as_deref(), Some("redis:7.2"));
        let security = pod.security_context.clone().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(
            security.seccomp_profile.map(|p| p.type_).as_deref(),
            Some("RuntimeDefault")
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert!(spec.volume_claim_templates.is_none());
        let volumes = pod.volumes.unwrap();
        assert!(volumes
            .iter()
            .any(|v| v.name == DATA_VOLUME && v.empty_dir.is_some()));
    }

    #[test]
    fn storage_becomes_a_claim_template() {
        let mut ri = instance("cache");
        ri.spec.storage = Some(StorageSpec {
            size: "2Gi".into(),
            storage_class_name: Some("fast".into()),
            when_deleted: ClaimDeletePolicy::Retain,
        });
        let spec = build(&ri).statefulset.spec.unwrap();
        let claim = &spec.volume_claim_templates.unwrap()[0];
        assert_eq!(claim.metadata.name.as_deref(), Some(DATA_VOLUME));
        let claim_spec = claim.spec.as_ref().unwrap();
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
        let requests = claim_spec
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap();
        assert_eq!(requests["storage"].0, "2Gi");
        let volumes = spec.template.spec.unwrap().volumes.unwrap();
        assert!(volumes.iter().all(|v| v.name != DATA_VOLUME));
    }

    #[test]
    fn a_restart_only_change_changes_only_the_hash_annotation_of_the_template() {
        let a = build(&instance("cache"));
        let mut ri = instance("cache");
        ri.spec.config.insert("databases".into(), "32".into());
        let b = build(&ri);
        assert_ne!(a.config_hash, b.config_hash);
        let (ta, tb) = (
            a.statefulset.spec.unwrap().template,
            b.statefulset.spec.unwrap().template,
        );
        assert_eq!(ta.spec, tb.spec);
        assert_ne!(ta.metadata, tb.metadata);
    }

    #[test]
    fn a_live_change_leaves_the_statefulset_alone_and_updates_the_config_map() {
        let a = build(&instance("cache"));
        let mut ri = instance("cache");
        ri.spec.config.insert("maxmemory".into(), "200mb".into());
        let b = build(&ri);
        assert_eq!(a.statefulset, b.statefulset, "no rollout for a live value");
        assert_ne!(
            a.config_map.data, b.config_map.data,
            "restarts keep the new value"
        );
        assert!(b.config_map.data.unwrap()[CONFIG_FILE].contains("\nmaxmemory 200mb\n"));
    }

    #[test]
    fn services_select_by_role_and_the_headless_one_every_pod() {
        let desired = build(&instance("cache"));
        let selector = |svc: &Service| svc.spec.as_ref().unwrap().selector.clone().unwrap();
        assert_eq!(selector(&desired.service)[ROLE_LABEL], "primary");
        assert_eq!(
            desired.replicas_service.metadata.name.as_deref(),
            Some("cache-replicas")
        );
        assert_eq!(selector(&desired.replicas_service)[ROLE_LABEL], "replica");
        assert!(!selector(&desired.headless).contains_key(ROLE_LABEL));
        for svc in [&desired.service, &desired.replicas_service] {
            assert_eq!(selector(svc)[INSTANCE_LABEL], "cache");
        }
    }

    #[test]
    fn every_pod_boots_parked_and_announces_its_address() {
        let spec = build(&instance("cache")).statefulset.spec.unwrap();
        let args = spec.template.spec.unwrap().containers[0]
            .args
            .clone()
            .unwrap();
        let joined = args.join(" ");
        assert!(joined.contains("--replicaof $(POD_IP) 6379"), "{joined}");
        assert!(
            joined.contains("--replica-announce-ip $(POD_IP)"),
            "{joined}"
        );
    }
}
