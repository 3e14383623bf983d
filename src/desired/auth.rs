//! Authentication in the pod template: the `NAME-acl` volume, Redis' `--include auth.conf`, the readiness probe as
//! the probe user and the exporter as the exporter user (see [`crate::auth`] for the users and their Secrets).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Container, EnvVar, ExecAction, KeyToPath, Probe, SecretVolumeSource, Volume, VolumeMount,
};

use crate::api::AuthSpec;
use crate::auth::{
    probe_cli, probe_password_key, template_annotation, ACL_FILE, AUTH_CONF, AUTH_DIR,
    EXPORTER_AUTH_DIR, EXPORTER_PASSWORDS, EXPORTER_USER,
};
use crate::names::{users_secret_name, AUTH_ANNOTATION};

pub(crate) const AUTH_VOLUME: &str = "auth";
const EXPORTER_AUTH_VOLUME: &str = "exporter-auth";
const EXPORTER_PASSWORDS_FILE: &str = "passwords.json";

/// Adds authentication to the pod template: the annotation, the `NAME-acl` volume with the ACL file,
/// `auth.conf` and the probe's password; `--include auth.conf` on Redis' command line; the readiness probe as
/// the probe user; the exporter as the exporter user (its password file from `NAME-acl`). With authentication
/// off, the annotation and `--protected-mode no`: Redis 7 otherwise refuses every client but loopback ones
/// when the `default` user has no password, replicas and the operator included (the user chose no
/// authentication; the status says so).
pub fn add_to_pod(instance: &str, spec: &AuthSpec, statefulset: &mut StatefulSet) {
    let Some(template) = statefulset.spec.as_mut().map(|s| &mut s.template) else {
        return;
    };
    template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(Default::default)
        .insert(AUTH_ANNOTATION.into(), template_annotation(spec));
    let Some(pod) = template.spec.as_mut() else {
        return;
    };
    if !spec.enabled {
        let redis = pod
            .containers
            .iter_mut()
            .find(|c| c.name == crate::desired::container::CONTAINER);
        if let Some(redis) = redis {
            let args = redis.args.get_or_insert_with(Vec::new);
            args.extend(["--protected-mode".to_string(), "no".to_string()]);
        }
        return;
    }
    let secret = users_secret_name(instance);
    let item = |key: &str| KeyToPath {
        key: key.into(),
        path: key.into(),
        ..Default::default()
    };
    pod.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: AUTH_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.clone()),
            items: Some(vec![
                item(ACL_FILE),
                item(AUTH_CONF),
                item(probe_password_key()),
            ]),
            // Readable by the redis group (fsGroup), nobody else.
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut exporter = false;
    for container in &mut pod.containers {
        if container.name == crate::desired::container::CONTAINER {
            add_to_redis(container);
        } else if container.name == crate::desired::exporter::EXPORTER_CONTAINER {
            add_to_exporter(container);
            exporter = true;
        }
    }
    if exporter {
        // Only the exporter's password file: the exporter sees no other password and no hash.
        pod.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: EXPORTER_AUTH_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                items: Some(vec![KeyToPath {
                    key: EXPORTER_PASSWORDS.into(),
                    path: EXPORTER_PASSWORDS_FILE.into(),
                    ..Default::default()
                }]),
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
}

fn add_to_redis(container: &mut Container) {
    container
        .args
        .get_or_insert_with(Vec::new)
        .extend(["--include".to_string(), format!("{AUTH_DIR}/{AUTH_CONF}")]);
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: AUTH_VOLUME.into(),
            mount_path: AUTH_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    if let Some(probe) = container.readiness_probe.as_mut() {
        *probe = Probe {
            exec: Some(ExecAction {
                command: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    crate::desired::container::readiness_script(&probe_cli()),
                ]),
            }),
            ..probe.clone()
        };
    }
}

/// The exporter's user, and its password as a file mapping its own server's socket to it (never
/// `REDIS_PASSWORD`, which redis_exporter would send to any target a `/scrape?target=` names).
fn add_to_exporter(container: &mut Container) {
    let env = container.env.get_or_insert_with(Vec::new);
    env.push(EnvVar {
        name: "REDIS_USER".into(),
        value: Some(EXPORTER_USER.into()),
        ..Default::default()
    });
    env.push(EnvVar {
        name: "REDIS_PASSWORD_FILE".into(),
        value: Some(format!("{EXPORTER_AUTH_DIR}/{EXPORTER_PASSWORDS_FILE}")),
        ..Default::default()
    });
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: EXPORTER_AUTH_VOLUME.into(),
            mount_path: EXPORTER_AUTH_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
}
