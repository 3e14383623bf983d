//! The container's environment and command line, resolved the way the kubelet does it.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::{Api, Client, ResourceExt};
use tracing::warn;

use crate::error::{Error, Result};
use crate::expand::expand;

/// Variables every process gets before the container's own (`HOSTNAME`, `KUBERNETES_SERVICE_*`, `PATH`).
pub fn base_env(pod: &Pod, api_host: &str, api_port: u16) -> Vec<(String, String)> {
    vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("HOSTNAME".into(), pod.name_any()),
        ("KUBERNETES_SERVICE_HOST".into(), api_host.into()),
        ("KUBERNETES_SERVICE_PORT".into(), api_port.to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), api_port.to_string()),
    ]
}

/// The value of a downward-API `fieldRef`, or `None` for an unsupported path.
pub fn field_ref_value(pod: &Pod, pod_ip: Ipv4Addr, field_path: &str) -> Option<String> {
    let spec = pod.spec.as_ref();
    let from_map = |map: &BTreeMap<String, String>, prefix: &str| {
        let key = field_path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.get(key).cloned().unwrap_or_default())
    };
    match field_path {
        "metadata.name" => Some(pod.name_any()),
        "metadata.namespace" => pod.namespace(),
        "metadata.uid" => pod.uid(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.podIPs" => Some(pod_ip.to_string()),
        "status.hostIP" | "status.hostIPs" => Some("127.0.0.1".to_string()),
        path if path.starts_with("metadata.labels['") => {
            from_map(pod.labels(), "metadata.labels['")
        }
        path if path.starts_with("metadata.annotations['") => {
            from_map(pod.annotations(), "metadata.annotations['")
        }
        _ => None,
    }
}

/// The binary standing in for a `redis_exporter` image (Debian's `prometheus-redis-exporter` package).
pub const EXPORTER_BINARY: &str = "prometheus-redis-exporter";

/// Whether an image is the Redis metrics exporter (`oliver006/redis_exporter`, `bitnami/redis-exporter`, ...).
pub fn is_exporter_image(image: &str) -> bool {
    // The repository name only: a registry host or a tag could contain anything.
    let repository = image.rsplit('/').next().unwrap_or_default();
    let name = repository.split([':', '@']).next().unwrap_or_default();
    name.contains("redis_exporter") || name.contains("redis-exporter")
}

/// The argv to run: `command` + `args` with `$(VAR)` expanded. Without a `command` the image's entrypoint would
/// run: an exporter image's is [`EXPORTER_BINARY`] (configured by its env and args); any other image is taken
/// for a Redis image, whose entrypoint runs `redis-server` with the args (or alone).
pub fn argv(container: &Container, vars: &HashMap<String, String>) -> Vec<String> {
    let command = container.command.clone().unwrap_or_default();
    let args = container.args.clone().unwrap_or_default();
    let mut argv: Vec<String> = command
        .iter()
        .chain(args.iter())
        .map(|a| expand(a, vars))
        .collect();
    let exporter = container.image.as_deref().is_some_and(is_exporter_image);
    if command.is_empty() && exporter {
        argv.insert(0, EXPORTER_BINARY.to_string());
        return argv;
    }
    let looks_like_redis_args = argv
        .first()
        .is_none_or(|first| first.starts_with('-') || first.ends_with(".conf"));
    if command.is_empty() && looks_like_redis_args {
        argv.insert(0, "redis-server".to_string());
    }
    argv
}

/// Resolves `envFrom` then `env` in order, each value expanded against the variables defined before it.
pub async fn container_env(
    client: &Client,
    pod: &Pod,
    container: &Container,
    pod_ip: Ipv4Addr,
    base: Vec<(String, String)>,
) -> Result<Vec<(String, String)>> {
    let namespace = pod.namespace().unwrap_or_default();
    let mut sources = Sources::new(client, &namespace);
    let mut env = Env::default();
    for (name, value) in base {
        env.set(name, value);
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(cm) = &from.config_map_ref {
            sources
                .config_map(&cm.name, cm.optional.unwrap_or(false))
                .await?
        } else if let Some(secret) = &from.secret_ref {
            sources
                .secret(&secret.name, secret.optional.unwrap_or(false))
                .await?
        } else {
            BTreeMap::new()
        };
        for (key, value) in data {
            env.set(format!("{prefix}{key}"), value);
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => Some(expand(var.value.as_deref().unwrap_or_default(), &env.vars)),
            Some(from) => {
                if let Some(field) = &from.field_ref {
                    let value = field_ref_value(pod, pod_ip, &field.field_path);
                    if value.is_none() {
                        warn!(field = %field.field_path, "unsupported fieldRef; variable left unset");
                    }
                    value
                } else if let Some(key) = &from.config_map_key_ref {
                    let optional = key.optional.unwrap_or(false);
                    let data = sources.config_map(&key.name, optional).await?;
                    lookup(data, &key.key, optional, "ConfigMap", &key.name)?
                } else if let Some(key) = &from.secret_key_ref {
                    let optional = key.optional.unwrap_or(false);
                    let data = sources.secret(&key.name, optional).await?;
                    lookup(data, &key.key, optional, "Secret", &key.name)?
                } else {
                    warn!(variable = %var.name, "resourceFieldRef is not supported; variable left unset");
                    None
                }
            }
        };
        if let Some(value) = value {
            env.set(var.name.clone(), value);
        }
    }
    Ok(env.ordered)
}

fn lookup(
    mut data: BTreeMap<String, String>,
    key: &str,
    optional: bool,
    kind: &str,
    name: &str,
) -> Result<Option<String>> {
    match data.remove(key) {
        Some(value) => Ok(Some(value)),
        None if optional => Ok(None),
        None => Err(Error::NotReadyToStart(format!(
            "key {key:?} not found in {kind} {name:?}"
        ))),
    }
}

/// Variables in definition order (later definitions replace earlier ones in place) plus a lookup map.
#[derive(Default)]
struct Env {
    ordered: Vec<(String, String)>,
    vars: HashMap<String, String>,
}

impl Env {
    fn set(&mut self, name: String, value: String) {
        match self.ordered.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value.clone(),
            None => self.ordered.push((name.clone(), value.clone())),
        }
        self.vars.insert(name, value);
    }
}

/// ConfigMaps and Secrets read once per resolution.
struct Sources {
    config_maps: Api<ConfigMap>,
    secrets: Api<Secret>,
}

impl Sources {
    fn new(client: &Client, namespace: &str) -> Self {
        Self {
            config_maps: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client.clone(), namespace),
        }
    }

    async fn config_map(&mut self, name: &str, optional: bool) -> Result<BTreeMap<String, String>> {
        match self.config_maps.get_opt(name).await? {
            Some(cm) => Ok(cm.data.unwrap_or_default()),
            None if optional => Ok(BTreeMap::new()),
            None => Err(Error::NotReadyToStart(format!(
                "ConfigMap {name:?} not found"
            ))),
        }
    }

    async fn secret(&mut self, name: &str, optional: bool) -> Result<BTreeMap<String, String>> {
        match self.secrets.get_opt(name).await? {
            Some(secret) => Ok(secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect()),
            None if optional => Ok(BTreeMap::new()),
            None => Err(Error::NotReadyToStart(format!("Secret {name:?} not found"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("redis-0".into()),
                namespace: Some("team".into()),
                labels: Some(BTreeMap::from([("role".into(), "primary".into())])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("devcluster".into()),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn field_refs() {
        let ip = Ipv4Addr::new(127, 1, 0, 3);
        let pod = pod();
        assert_eq!(
            field_ref_value(&pod, ip, "status.podIP").as_deref(),
            Some("127.1.0.3")
        );
        assert_eq!(
            field_ref_value(&pod, ip, "metadata.name").as_deref(),
            Some("redis-0")
        );
        assert_eq!(
            field_ref_value(&pod, ip, "metadata.namespace").as_deref(),
            Some("team")
        );
        assert_eq!(
            field_ref_value(&pod, ip, "spec.nodeName").as_deref(),
            Some("devcluster")
        );
        assert_eq!(
            field_ref_value(&pod, ip, "metadata.labels['role']").as_deref(),
            Some("primary")
        );
        assert_eq!(
            field_ref_value(&pod, ip, "metadata.labels['none']").as_deref(),
            Some("")
        );
        assert_eq!(field_ref_value(&pod, ip, "status.phase"), None);
    }

    fn container(command: &[&str], args: &[&str]) -> Container {
        let list = |items: &[&str]| {
            (!items.is_empty()).then(|| items.iter().map(|s| s.to_string()).collect())
        };
        Container {
            name: "redis".into(),
            command: list(command),
            args: list(args),
            ..Container::default()
        }
    }

    #[test]
    fn argv_expands_command_and_args() {
        let vars = HashMap::from([("POD_IP".to_string(), "127.1.0.3".to_string())]);
        let c = container(
            &["redis-server", "/etc/redis/redis.conf"],
            &["--bind", "$(POD_IP)"],
        );
        assert_eq!(
            argv(&c, &vars),
            [
                "redis-server",
                "/etc/redis/redis.conf",
                "--bind",
                "127.1.0.3"
            ]
        );
    }

    #[test]
    fn argv_defaults_to_the_redis_entrypoint() {
        let vars = HashMap::new();
        assert_eq!(argv(&container(&[], &[]), &vars), ["redis-server"]);
        assert_eq!(
            argv(&container(&[], &["/etc/redis.conf"]), &vars),
            ["redis-server", "/etc/redis.conf"]
        );
        assert_eq!(
            argv(&container(&[], &["--port", "7000"]), &vars),
            ["redis-server", "--port", "7000"]
        );
        assert_eq!(
            argv(&container(&[], &["sh", "-c", "x"]), &vars),
            ["sh", "-c", "x"]
        );
    }

    #[test]
    fn an_exporter_image_runs_the_exporter_binary() {
        let vars = HashMap::from([("POD_IP".to_string(), "127.1.0.3".to_string())]);
        let mut c = container(&[], &["--redis.addr", "redis://$(POD_IP):6379"]);
        c.image = Some("oliver006/redis_exporter:v1.62.0".into());
        assert_eq!(
            argv(&c, &vars),
            [EXPORTER_BINARY, "--redis.addr", "redis://127.1.0.3:6379"]
        );
        c.args = None;
        c.image = Some("example.com/bitnami/redis-exporter@sha256:abc".into());
        assert_eq!(argv(&c, &vars), [EXPORTER_BINARY]);
        c.image = Some("redis:7.2".into());
        assert_eq!(argv(&c, &vars), ["redis-server"]);
        c.image = Some("redis_exporter.example.com/redis:7".into());
        assert_eq!(
            argv(&c, &vars),
            ["redis-server"],
            "only the repository name counts"
        );
        c.image = Some("oliver006/redis_exporter".into());
        c.command = Some(vec!["/bin/true".into()]);
        assert_eq!(argv(&c, &vars), ["/bin/true"], "an explicit command wins");
    }

    #[test]
    fn env_redefinition_keeps_order_and_updates_lookup() {
        let mut env = Env::default();
        env.set("A".into(), "1".into());
        env.set("B".into(), "2".into());
        env.set("A".into(), "3".into());
        assert_eq!(
            env.ordered,
            [
                ("A".to_string(), "3".to_string()),
                ("B".to_string(), "2".to_string())
            ]
        );
        assert_eq!(env.vars["A"], "3");
    }
}
