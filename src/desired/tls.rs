//! TLS in the pod template: the Secret's volume, Redis' TLS arguments and the readiness probe over TLS (see
//! [`crate::tls`] for what the certificate must be and how the operator's own handshakes verify it).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Container, ExecAction, KeyToPath, Probe, SecretVolumeSource, Volume, VolumeMount,
};

use crate::api::{AuthSpec, ClientAuth, TlsSpec};
use crate::desired::redis_conf::REDIS_PORT;
use crate::names::TLS_ANNOTATION;
use crate::tls::{template_annotation, CA_KEY, CERT_KEY, KEY_KEY, TLS_DIR};

pub(crate) const TLS_VOLUME: &str = "tls";

/// redis-server's TLS arguments: TLS on the Redis port, plain text off. Replication uses TLS from the moment the
/// operator points a server at its primary ([`crate::redis::RedisNode::replicaof`] sets `tls-replication yes`);
/// a server starts parked (replicating from itself) with `tls-replication no`: over TLS 1.3 a server
/// replicating from itself blocks in its own handshake for seconds at a time, answering nobody.
pub fn server_args(spec: &TlsSpec) -> Vec<String> {
    [
        ("port", "0".to_string()),
        ("tls-port", REDIS_PORT.to_string()),
        ("tls-cert-file", format!("{TLS_DIR}/{CERT_KEY}")),
        ("tls-key-file", format!("{TLS_DIR}/{KEY_KEY}")),
        ("tls-ca-cert-file", format!("{TLS_DIR}/{CA_KEY}")),
        ("tls-replication", "no".to_string()),
        (
            "tls-auth-clients",
            spec.client_auth.redis_value().to_string(),
        ),
    ]
    .into_iter()
    .flat_map(|(name, value)| [format!("--{name}"), value])
    .collect()
}

/// `redis-cli`'s TLS options for the readiness probe: verify the server against `ca.crt`; with client
/// certificates required, present the pod's own pair (what replicas present too).
pub fn cli_options(spec: &TlsSpec) -> String {
    let mut options = format!("--tls --cacert {TLS_DIR}/{CA_KEY}");
    if spec.client_auth == ClientAuth::Required {
        options.push_str(&format!(
            " --cert {TLS_DIR}/{CERT_KEY} --key {TLS_DIR}/{KEY_KEY}"
        ));
    }
    options
}

/// Adds TLS to the pod template: the annotation, the Secret's three keys as a volume (read-only, mode 0440),
/// Redis' TLS arguments and the readiness probe over TLS (keeping its authentication, see
/// [`crate::auth::probe_cli`]). Without `spec.tls` nothing changes.
pub fn add_to_pod(tls: Option<&TlsSpec>, auth: &AuthSpec, statefulset: &mut StatefulSet) {
    let Some(spec) = tls else {
        return;
    };
    let Some(template) = statefulset.spec.as_mut().map(|s| &mut s.template) else {
        return;
    };
    template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(Default::default)
        .insert(TLS_ANNOTATION.into(), template_annotation(spec));
    let Some(pod) = template.spec.as_mut() else {
        return;
    };
    pod.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: TLS_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(spec.secret_name.clone()),
            // Only the three keys Redis reads: the Secret may be any of the namespace's, and the pods run an image
            // the instance's creator chose.
            items: Some(
                [CERT_KEY, KEY_KEY, CA_KEY]
                    .into_iter()
                    .map(|key| KeyToPath {
                        key: key.into(),
                        path: key.into(),
                        mode: None,
                    })
                    .collect(),
            ),
            // Readable by the redis group (fsGroup), nobody else.
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    });
    // The exporter reads its server over the pod's Unix socket (`crate::desired::exporter`): no TLS, no key.
    for container in &mut pod.containers {
        if container.name == crate::desired::container::CONTAINER {
            add_to_redis(container, spec, auth);
        }
    }
}

fn mount() -> VolumeMount {
    VolumeMount {
        name: TLS_VOLUME.into(),
        mount_path: TLS_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

fn add_to_redis(container: &mut Container, spec: &TlsSpec, auth: &AuthSpec) {
    container
        .args
        .get_or_insert_with(Vec::new)
        .extend(server_args(spec));
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(mount());
    let cli = if auth.enabled {
        crate::auth::probe_cli()
    } else {
        "redis-cli".to_string()
    };
    if let Some(probe) = container.readiness_probe.as_mut() {
        *probe = Probe {
            exec: Some(ExecAction {
                command: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    crate::desired::container::readiness_script(&format!(
                        "{cli} {}",
                        cli_options(spec)
                    )),
                ]),
            }),
            ..probe.clone()
        };
    }
}
