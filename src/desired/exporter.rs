//! Pure builders for Redis metrics: the `redis_exporter` sidecar added to the pod template and the
//! `NAME-metrics` Service a Prometheus ServiceMonitor selects.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector,
    Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::api::{ExporterSpec, RedisInstance};
use crate::desired::container::CONTAINER;
use crate::desired::metadata::{metadata, selector_labels};
use crate::names::{metrics_service_name, COMPONENT_LABEL};

/// Name of the exporter container.
pub const EXPORTER_CONTAINER: &str = "metrics";
/// Name of the metrics port, on the container and on the `NAME-metrics` Service (what a ServiceMonitor or
/// PodMonitor names).
pub const METRICS_PORT_NAME: &str = "http-metrics";
/// The exporter's port (its usual one).
pub const METRICS_PORT: i32 = 9121;
/// Value of [`COMPONENT_LABEL`] on the `NAME-metrics` Service.
pub const METRICS_COMPONENT: &str = "metrics";

pub use crate::names::{REDIS_SOCKET, REDIS_SOCKET_ADDR, SOCKET_DIR};
const SOCKET_VOLUME: &str = "redis-socket";

/// Adds the exporter container to the StatefulSet's pod template when the spec enables it.
pub fn add_sidecar(exporter: &ExporterSpec, statefulset: &mut StatefulSet) {
    if !exporter.enabled {
        return;
    }
    let pod = statefulset
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut());
    let Some(pod) = pod else {
        return;
    };
    let socket_mount = VolumeMount {
        name: SOCKET_VOLUME.into(),
        mount_path: SOCKET_DIR.into(),
        ..Default::default()
    };
    pod.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: SOCKET_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
    for container in pod.containers.iter_mut().filter(|c| c.name == CONTAINER) {
        // Besides the pod address: a socket only the pod's own containers that mount it can reach, owner-only.
        container.args.get_or_insert_with(Vec::new).extend([
            "--unixsocket".into(),
            REDIS_SOCKET.into(),
            "--unixsocketperm".into(),
            "700".into(),
        ]);
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(socket_mount.clone());
    }
    let mut sidecar = sidecar(exporter);
    sidecar.volume_mounts = Some(vec![socket_mount]);
    pod.containers.push(sidecar);
}

/// The exporter container: it scrapes the Redis server of its own pod through Redis' Unix socket (the only
/// address its password file names, so it sends no password to any other: see `crate::auth`) and serves the
/// metrics on the pod's address. Over the socket it needs no TLS, whatever `spec.tls` says.
fn sidecar(exporter: &ExporterSpec) -> Container {
    let var = |name: &str, value: String| EnvVar {
        name: name.into(),
        value: Some(value),
        ..Default::default()
    };
    // With authentication on, `crate::desired::auth::add_to_pod` adds the exporter's least-privilege user as REDIS_USER
    // and its password file (mounted from NAME-acl, never a literal value).
    let env = vec![
        EnvVar {
            name: "POD_IP".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        var("REDIS_ADDR", REDIS_SOCKET_ADDR.into()),
        var(
            "REDIS_EXPORTER_WEB_LISTEN_ADDRESS",
            format!("$(POD_IP):{METRICS_PORT}"),
        ),
    ];
    Container {
        name: EXPORTER_CONTAINER.into(),
        image: Some(exporter.image.clone()),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(METRICS_PORT_NAME.into()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        resources: exporter.resources.clone(),
        security_context: Some(crate::desired::container::restricted_container()),
        ..Default::default()
    }
}

/// `NAME-metrics`: every pod's exporter, ready or not (a replica that is not ready is exactly what the
/// alerts want to see), labelled for a ServiceMonitor. `None` when the exporter is off.
pub fn metrics_service(ri: &RedisInstance, owner: &OwnerReference) -> Option<Service> {
    if !ri.spec.monitoring.exporter.enabled {
        return None;
    }
    let name = ri.name_any();
    let mut metadata = metadata(ri, metrics_service_name(&name), owner);
    metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(COMPONENT_LABEL.into(), METRICS_COMPONENT.into());
    Some(Service {
        metadata,
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(&name)),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![ServicePort {
                name: Some(METRICS_PORT_NAME.into()),
                port: METRICS_PORT,
                target_port: Some(IntOrString::String(METRICS_PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;
    use crate::desired::children::{build, tests::instance};
    use crate::names::{INSTANCE_LABEL, MANAGED_BY_LABEL};

    #[test]
    fn off_by_default() {
        let desired = build(&instance("cache"));
        let pod = desired.statefulset.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.containers.len(), 1);
        assert!(desired.metrics_service.is_none());
    }

    #[test]
    fn enabled_adds_the_sidecar_and_the_metrics_service() {
        let mut ri = instance("cache");
        let resources = ResourceRequirements {
            limits: Some([("memory".to_string(), Quantity("64Mi".into()))].into()),
            ..Default::default()
        };
        ri.spec.monitoring.exporter.enabled = true;
        ri.spec.monitoring.exporter.resources = Some(resources.clone());
        let desired = build(&ri);
        let pod = desired.statefulset.spec.unwrap().template.spec.unwrap();
        assert_eq!(
            pod.containers[0].name, "redis",
            "Redis stays the first container"
        );
        let sidecar = &pod.containers[1];
        assert_eq!(sidecar.name, EXPORTER_CONTAINER);
        assert_eq!(
            sidecar.image.as_deref(),
            Some(crate::api::DEFAULT_EXPORTER_IMAGE)
        );
        assert_eq!(sidecar.resources, Some(resources));
        let env = sidecar.env.clone().unwrap();
        let value = |name: &str| {
            env.iter()
                .find(|v| v.name == name)
                .and_then(|v| v.value.clone())
        };
        let pod_ip_at = env.iter().position(|v| v.name == "POD_IP").unwrap();
        let addr_at = env.iter().position(|v| v.name == "REDIS_ADDR").unwrap();
        assert!(
            pod_ip_at < addr_at,
            "$(POD_IP) expands only if defined first"
        );
        assert_eq!(
            value("REDIS_ADDR").as_deref(),
            Some("unix:///run/redis-socket/redis.sock")
        );
        // Redis opens the socket in a directory only its own container and the exporter mount.
        let args = pod.containers[0].args.clone().unwrap().join(" ");
        assert!(
            args.contains("--unixsocket /run/redis-socket/redis.sock --unixsocketperm 700"),
            "{args}"
        );
        let mounted = |c: &Container| {
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == SOCKET_VOLUME && m.mount_path == SOCKET_DIR)
        };
        assert!(mounted(&pod.containers[0]) && mounted(sidecar));
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == SOCKET_VOLUME);
        assert!(volume.and_then(|v| v.empty_dir.as_ref()).is_some());
        assert_eq!(
            value("REDIS_EXPORTER_WEB_LISTEN_ADDRESS").as_deref(),
            Some("$(POD_IP):9121")
        );
        let port = &sidecar.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.container_port),
            (Some(METRICS_PORT_NAME), METRICS_PORT)
        );

        let service = desired.metrics_service.unwrap();
        assert_eq!(service.metadata.name.as_deref(), Some("cache-metrics"));
        let labels = service.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[COMPONENT_LABEL], METRICS_COMPONENT);
        assert_eq!(labels[MANAGED_BY_LABEL], "redis-operator");
        let spec = service.spec.unwrap();
        assert_eq!(spec.selector.unwrap()[INSTANCE_LABEL], "cache");
        let port = &spec.ports.unwrap()[0];
        assert_eq!(port.name.as_deref(), Some(METRICS_PORT_NAME));
        assert_eq!(
            port.target_port,
            Some(IntOrString::String(METRICS_PORT_NAME.into()))
        );
    }

    #[test]
    fn a_custom_image_is_used() {
        let mut ri = instance("cache");
        ri.spec.monitoring.exporter.enabled = true;
        ri.spec.monitoring.exporter.image = "example.com/redis_exporter:1".into();
        let pod = build(&ri).statefulset.spec.unwrap().template.spec.unwrap();
        assert_eq!(
            pod.containers[1].image.as_deref(),
            Some("example.com/redis_exporter:1")
        );
    }
}
