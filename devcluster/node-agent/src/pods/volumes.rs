//! Materialises a pod's volumes as host directories, ready to be bind-mounted at the containers' mount paths.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod,
    Secret, ServiceAccount, ServiceAccountTokenProjection, Volume,
};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use tracing::warn;

use crate::error::{Error, Result};
use crate::pods::env::field_ref_value;

/// Host directory of every volume of the pod, by volume name.
pub type VolumeDirs = HashMap<String, PathBuf>;

/// Prepares all volumes of `pod` under `pod_dir/volumes`; fails with [`Error::NotReadyToStart`] while a
/// referenced claim, ConfigMap or Secret is missing.
pub async fn materialise(
    client: &Client,
    pod: &Pod,
    pod_dir: &Path,
    pod_ip: Ipv4Addr,
) -> Result<VolumeDirs> {
    let namespace = pod.namespace().unwrap_or_default();
    let mut dirs = VolumeDirs::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let own_dir = pod_dir.join("volumes").join(&volume.name);
        let dir = prepare(client, &namespace, pod, pod_ip, volume, &own_dir).await?;
        dirs.insert(volume.name.clone(), dir);
    }
    Ok(dirs)
}

async fn prepare(
    client: &Client,
    namespace: &str,
    pod: &Pod,
    pod_ip: Ipv4Addr,
    volume: &Volume,
    own_dir: &Path,
) -> Result<PathBuf> {
    if let Some(claim) = &volume.persistent_volume_claim {
        return claim_dir(client, namespace, &claim.claim_name).await;
    }
    if let Some(host) = &volume.host_path {
        let path = PathBuf::from(&host.path);
        create_dir(&path)?;
        return Ok(path);
    }
    if volume.empty_dir.is_some() {
        // Survives container restarts; removed with the pod directory.
        create_dir(own_dir)?;
        return Ok(own_dir.to_path_buf());
    }
    let mut files = Files::default();
    if let Some(cm) = &volume.config_map {
        let data =
            config_map_data(client, namespace, &cm.name, cm.optional.unwrap_or(false)).await?;
        files.add_keys(data, cm.items.as_deref(), cm.default_mode)?;
    } else if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        let data = secret_data(client, namespace, &name, secret.optional.unwrap_or(false)).await?;
        files.add_keys(data, secret.items.as_deref(), secret.default_mode)?;
    } else if let Some(downward) = &volume.downward_api {
        files.add_downward(
            pod,
            pod_ip,
            downward.items.as_deref().unwrap_or_default(),
            downward.default_mode,
        );
    } else if let Some(projected) = &volume.projected {
        for source in projected.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                let data =
                    config_map_data(client, namespace, &cm.name, cm.optional.unwrap_or(false))
                        .await?;
                files.add_keys(data, cm.items.as_deref(), projected.default_mode)?;
            } else if let Some(secret) = &source.secret {
                let data = secret_data(
                    client,
                    namespace,
                    &secret.name,
                    secret.optional.unwrap_or(false),
                )
                .await?;
                files.add_keys(data, secret.items.as_deref(), projected.default_mode)?;
            } else if let Some(downward) = &source.downward_api {
                let items = downward.items.as_deref().unwrap_or_default();
                files.add_downward(pod, pod_ip, items, projected.default_mode);
            } else if let Some(token) = &source.service_account_token {
                // Current API servers give pods a projected `kube-api-access-*` volume instead of a token
                // Secret: ask for a bound token the way the kubelet does (TokenRequest).
                let jwt = service_account_token(client, namespace, pod, token).await?;
                let default_mode = mode(projected.default_mode, 0o644);
                files.insert(&token.path, jwt.into_bytes(), default_mode);
            } else {
                warn!(volume = %volume.name, "projected source not supported; skipped");
            }
        }
    } else {
        warn!(volume = %volume.name, "volume type not supported; an empty directory stands in");
    }
    files.write(own_dir)?;
    Ok(own_dir.to_path_buf())
}

/// The host directory of the PersistentVolume bound to a claim.
async fn claim_dir(client: &Client, namespace: &str, claim: &str) -> Result<PathBuf> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pvc = claims.get_opt(claim).await?.ok_or_else(|| {
        Error::NotReadyToStart(format!("PersistentVolumeClaim {claim:?} not found"))
    })?;
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|_| bound);
    let volume_name = volume_name.ok_or_else(|| {
        Error::NotReadyToStart(format!("PersistentVolumeClaim {claim:?} is not bound"))
    })?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = volumes.get(&volume_name).await?;
    let spec = pv.spec.unwrap_or_default();
    let path = spec
        .host_path
        .map(|h| h.path)
        .or(spec.local.map(|l| l.path))
        .ok_or_else(|| {
            Error::NotReadyToStart(format!("PersistentVolume {volume_name:?} has no host path"))
        })?;
    let path = PathBuf::from(path);
    create_dir(&path)?;
    Ok(path)
}

/// A token for the pod's ServiceAccount, bound to the pod, from the TokenRequest API.
async fn service_account_token(
    client: &Client,
    namespace: &str,
    pod: &Pod,
    source: &ServiceAccountTokenProjection,
) -> Result<String> {
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".to_string());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: source.audience.iter().cloned().collect(),
            expiration_seconds: source.expiration_seconds,
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("Pod".to_string()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let answer = accounts
        .create_token_request(&account, &PostParams::default(), &request)
        .await?;
    answer
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::NotReadyToStart(format!("no token issued for ServiceAccount {account:?}"))
        })
}

async fn config_map_data(
    client: &Client,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await? {
        Some(cm) => Ok(cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .chain(
                cm.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            )
            .collect()),
        None if optional => Ok(BTreeMap::new()),
        None => Err(Error::NotReadyToStart(format!(
            "ConfigMap {name:?} not found"
        ))),
    }
}

async fn secret_data(
    client: &Client,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await? {
        Some(secret) => Ok(secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()),
        None if optional => Ok(BTreeMap::new()),
        None => Err(Error::NotReadyToStart(format!("Secret {name:?} not found"))),
    }
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))
}

/// Files of one volume: relative path → (content, mode).
#[derive(Debug, Default, PartialEq, Eq)]
struct Files(BTreeMap<PathBuf, (Vec<u8>, u32)>);

impl Files {
    /// Adds every key as a file, or only the listed items under their paths.
    fn add_keys(
        &mut self,
        mut data: BTreeMap<String, Vec<u8>>,
        items: Option<&[KeyToPath]>,
        default_mode: Option<i32>,
    ) -> Result<()> {
        let default_mode = mode(default_mode, 0o644);
        match items {
            None => {
                for (key, content) in data {
                    self.insert(&key, content, default_mode);
                }
            }
            Some(items) => {
                for item in items {
                    match data.remove(&item.key) {
                        Some(content) => {
                            self.insert(&item.path, content, mode(item.mode, default_mode))
                        }
                        None => {
                            return Err(Error::NotReadyToStart(format!(
                                "key {:?} not found",
                                item.key
                            )));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn add_downward(
        &mut self,
        pod: &Pod,
        pod_ip: Ipv4Addr,
        items: &[DownwardAPIVolumeFile],
        default_mode: Option<i32>,
    ) {
        for item in items {
            let value = match &item.field_ref {
                Some(field) if field.field_path == "metadata.labels" => {
                    Some(key_values(pod.labels()))
                }
                Some(field) if field.field_path == "metadata.annotations" => {
                    Some(key_values(pod.annotations()))
                }
                Some(field) => field_ref_value(pod, pod_ip, &field.field_path),
                None => None,
            };
            match value {
                Some(value) => self.insert(
                    &item.path,
                    value.into_bytes(),
                    mode(item.mode, mode(default_mode, 0o644)),
                ),
                None => warn!(path = %item.path, "downward API item not supported; skipped"),
            }
        }
    }

    fn insert(&mut self, relative: &str, content: Vec<u8>, mode: u32) {
        match safe_relative(relative) {
            Some(path) => {
                self.0.insert(path, (content, mode));
            }
            None => warn!(
                path = relative,
                "refusing a volume file path that leaves the volume"
            ),
        }
    }

    /// Replaces the directory's content with these files.
    fn write(&self, dir: &Path) -> Result<()> {
        let io = |what: &str, path: &Path, e| Error::io(format!("{what} {}", path.display()), e);
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| io("clearing", dir, e))?;
        }
        create_dir(dir)?;
        for (relative, (content, mode)) in &self.0 {
            let path = dir.join(relative);
            if let Some(parent) = path.parent() {
                create_dir(parent)?;
            }
            std::fs::write(&path, content).map_err(|e| io("writing", &path, e))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
                .map_err(|e| io("chmod", &path, e))?;
        }
        Ok(())
    }
}

/// A volume-relative path without `..`, root or prefix components.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    let normal = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    (normal && !path.as_os_str().is_empty()).then(|| path.to_path_buf())
}

fn mode(mode: Option<i32>, default: u32) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok())
        .map_or(default, |m| m & 0o7777)
}

fn key_values(map: &BTreeMap<String, String>) -> String {
    map.iter().map(|(k, v)| format!("{k}={v:?}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([
            ("redis.conf".to_string(), b"port 6379".to_vec()),
            ("other".to_string(), b"x".to_vec()),
        ])
    }

    #[test]
    fn all_keys_become_files() {
        let mut files = Files::default();
        files.add_keys(data(), None, Some(0o600)).unwrap();
        assert_eq!(files.0.len(), 2);
        assert_eq!(
            files.0[Path::new("redis.conf")],
            (b"port 6379".to_vec(), 0o600)
        );
    }

    #[test]
    fn items_select_and_rename() {
        let items = [KeyToPath {
            key: "redis.conf".into(),
            path: "conf/main.conf".into(),
            mode: Some(0o400),
        }];
        let mut files = Files::default();
        files.add_keys(data(), Some(&items), None).unwrap();
        assert_eq!(files.0.len(), 1);
        assert_eq!(files.0[Path::new("conf/main.conf")].1, 0o400);
    }

    #[test]
    fn missing_item_key_is_an_error() {
        let items = [KeyToPath {
            key: "absent".into(),
            path: "a".into(),
            mode: None,
        }];
        assert!(Files::default()
            .add_keys(data(), Some(&items), None)
            .is_err());
    }

    #[test]
    fn paths_cannot_escape() {
        assert!(safe_relative("../etc/passwd").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("").is_none());
        assert_eq!(safe_relative("a/b"), Some(PathBuf::from("a/b")));
    }

    #[test]
    fn writes_and_replaces_a_directory() {
        let dir =
            std::env::temp_dir().join(format!("node-agent-volume-test-{}", std::process::id()));
        let mut files = Files::default();
        files.add_keys(data(), None, None).unwrap();
        files.write(&dir).unwrap();
        assert_eq!(std::fs::read(dir.join("redis.conf")).unwrap(), b"port 6379");
        Files::default().write(&dir).unwrap();
        assert!(!dir.join("redis.conf").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
