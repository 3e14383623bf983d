//! Materialises a pod's volumes as host directories, ready to be bind-mounted at the containers' mount paths.
//! The same file sync brings them up to date while the pod runs ([`crate::pods::refresh`]): files are replaced
//! in place, never the directory, so bind mounts of it stay live.

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

/// The directory the agent keeps a volume's content in (configMap, secret, downwardAPI, projected, emptyDir).
pub fn own_dir(pod_dir: &Path, volume: &str) -> PathBuf {
    pod_dir.join("volumes").join(volume)
}

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
        let own_dir = own_dir(pod_dir, &volume.name);
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
    match projection(client, namespace, pod, pod_ip, volume, Tokens::Request).await? {
        Some(files) => {
            for what in &files.skipped {
                warn!(volume = %volume.name, "{what} not supported; skipped");
            }
            files.sync(own_dir)?;
        }
        None => {
            warn!(volume = %volume.name, "volume type not supported; an empty directory stands in");
            create_dir(own_dir)?;
        }
    }
    Ok(own_dir.to_path_buf())
}

/// Where a projected ServiceAccount token comes from.
#[derive(Debug, Clone, Copy)]
pub enum Tokens<'a> {
    /// A new token from the TokenRequest API: the container starts.
    Request,
    /// The token already written in this volume directory, a new one only when there is none: a refresh, which
    /// must not ask for a token every few seconds.
    Keep(&'a Path),
}

/// The files a configMap, secret, downwardAPI or projected volume should hold now; `None` for other volume
/// types. Fails with [`Error::NotReadyToStart`] while a referenced ConfigMap, Secret or key is missing.
pub async fn projection(
    client: &Client,
    namespace: &str,
    pod: &Pod,
    pod_ip: Ipv4Addr,
    volume: &Volume,
    tokens: Tokens<'_>,
) -> Result<Option<Files>> {
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
                let written = match tokens {
                    Tokens::Keep(dir) => safe_relative(&token.path)
                        .and_then(|path| std::fs::read(dir.join(path)).ok()),
                    Tokens::Request => None,
                };
                let jwt = match written {
                    Some(jwt) => jwt,
                    // Current API servers give pods a projected `kube-api-access-*` volume instead of a token
                    // Secret: ask for a bound token the way the kubelet does (TokenRequest).
                    None => service_account_token(client, namespace, pod, token)
                        .await?
                        .into_bytes(),
                };
                let default_mode = mode(projected.default_mode, 0o644);
                files.insert(&token.path, jwt, default_mode);
            } else {
                files.skip(format!("projected source of volume {:?}", volume.name));
            }
        }
    } else {
        return Ok(None);
    }
    Ok(Some(files))
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

/// Files of one volume: relative path → (content, mode), and what was left out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Files {
    entries: FileMap,
    /// Items left out (unsupported or unsafe), to be logged once by whoever writes the volume first.
    skipped: Vec<String>,
}

/// Relative path → (content, mode).
type FileMap = BTreeMap<PathBuf, (Vec<u8>, u32)>;

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
                None => self.skip(format!("downward API item {:?}", item.path)),
            }
        }
    }

    fn insert(&mut self, relative: &str, content: Vec<u8>, mode: u32) {
        match safe_relative(relative) {
            Some(path) => {
                self.entries.insert(path, (content, mode));
            }
            None => self.skip(format!("file path {relative:?} leaving the volume")),
        }
    }

    fn skip(&mut self, what: String) {
        self.skipped.push(what);
    }

    /// Makes `dir` hold exactly these files, touching only what differs. A new or changed file is written
    /// beside its final name and renamed over it, so a process that has `dir` bind-mounted reads either the old
    /// or the new content, never a partial file; the directory itself stays, so its bind mounts stay live.
    pub fn sync(&self, dir: &Path) -> Result<Changes> {
        let io = |what: &str, path: &Path, e| Error::io(format!("{what} {}", path.display()), e);
        create_dir(dir)?;
        let mut on_disk = OnDisk::default();
        on_disk
            .read(dir, Path::new(""))
            .map_err(|e| io("reading", dir, e))?;
        let plan = plan(&self.entries, &on_disk);
        for relative in &plan.remove {
            let path = dir.join(relative);
            std::fs::remove_file(&path).map_err(|e| io("removing", &path, e))?;
        }
        for relative in &plan.prune {
            let path = dir.join(relative);
            std::fs::remove_dir(&path).map_err(|e| io("removing", &path, e))?;
        }
        for relative in &plan.write {
            let (content, mode) = &self.entries[relative];
            let path = dir.join(relative);
            let parent = path.parent().unwrap_or(dir);
            create_dir(parent)?;
            // Keys cannot start with `..` (API validation), so the temporary name never collides with a key.
            let name = relative.file_name().unwrap_or_default().to_string_lossy();
            let temporary = parent.join(format!("..tmp.{name}"));
            std::fs::write(&temporary, content).map_err(|e| io("writing", &temporary, e))?;
            std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(*mode))
                .map_err(|e| io("chmod", &temporary, e))?;
            std::fs::rename(&temporary, &path).map_err(|e| io("renaming over", &path, e))?;
        }
        Ok(Changes {
            written: plan.write.len(),
            removed: plan.remove.len(),
        })
    }
}

/// How many files a [`Files::sync`] wrote and removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    /// Files created or replaced (content or mode changed).
    pub written: usize,
    /// Files that are no longer wanted.
    pub removed: usize,
}

impl Changes {
    /// Whether the directory already held the wanted files.
    pub fn is_empty(&self) -> bool {
        self.written == 0 && self.removed == 0
    }
}

/// What a volume directory holds now, relative to it.
#[derive(Debug, Default)]
struct OnDisk {
    files: FileMap,
    /// Entries that are neither regular files nor directories (never written by the agent).
    others: Vec<PathBuf>,
    directories: Vec<PathBuf>,
}

impl OnDisk {
    fn read(&mut self, root: &Path, relative: &Path) -> std::io::Result<()> {
        for entry in std::fs::read_dir(root.join(relative))? {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            // The entry's own type: a symbolic link is not followed.
            let kind = entry.file_type()?;
            if kind.is_dir() {
                self.read(root, &path)?;
                self.directories.push(path);
            } else if kind.is_file() {
                let mode = entry.metadata()?.permissions().mode() & 0o7777;
                let content = std::fs::read(entry.path())?;
                self.files.insert(path, (content, mode));
            } else {
                self.others.push(path);
            }
        }
        Ok(())
    }
}

/// The steps from what is on disk to the wanted files, in the order [`Files::sync`] takes them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Files (and other non-directories) nobody wants any more, or in the way.
    remove: Vec<PathBuf>,
    /// Directories no wanted file lives under, deepest first, so each is empty when its turn comes.
    prune: Vec<PathBuf>,
    /// Files that are missing or differ in content or mode.
    write: Vec<PathBuf>,
}

fn plan(wanted: &FileMap, on_disk: &OnDisk) -> Plan {
    let remove = on_disk
        .files
        .keys()
        .filter(|path| !wanted.contains_key(*path))
        .chain(&on_disk.others)
        .cloned()
        .collect();
    let mut prune: Vec<PathBuf> = on_disk
        .directories
        .iter()
        .filter(|dir| {
            !wanted
                .keys()
                .any(|file| file.starts_with(dir) && file != *dir)
        })
        .cloned()
        .collect();
    prune.sort_by_key(|dir| std::cmp::Reverse(dir.components().count()));
    let write = wanted
        .iter()
        .filter(|(path, file)| on_disk.files.get(*path) != Some(*file))
        .map(|(path, _)| path.clone())
        .collect();
    Plan {
        remove,
        prune,
        write,
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

    /// A fresh, empty directory under the system temp directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("node-agent-volume-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn files(entries: &[(&str, &[u8], u32)]) -> Files {
        let mut files = Files::default();
        for (path, content, mode) in entries {
            files.insert(path, content.to_vec(), *mode);
        }
        files
    }

    fn file_mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    /// Every entry under `dir`, relative, sorted (directories end in `/`).
    fn listing(dir: &Path) -> Vec<String> {
        let mut on_disk = OnDisk::default();
        on_disk.read(dir, Path::new("")).unwrap();
        let mut all: Vec<String> = on_disk
            .files
            .keys()
            .map(|p| p.display().to_string())
            .chain(
                on_disk
                    .directories
                    .iter()
                    .map(|d| format!("{}/", d.display())),
            )
            .collect();
        all.sort();
        all
    }

    #[test]
    fn all_keys_become_files() {
        let mut files = Files::default();
        files.add_keys(data(), None, Some(0o600)).unwrap();
        assert_eq!(files.entries.len(), 2);
        assert_eq!(
            files.entries[Path::new("redis.conf")],
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
        assert_eq!(files.entries.len(), 1);
        assert_eq!(files.entries[Path::new("conf/main.conf")].1, 0o400);
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
        let escaping = files(&[("../escape", b"x", 0o644)]);
        assert!(escaping.entries.is_empty());
        assert_eq!(escaping.skipped.len(), 1);
    }

    #[test]
    fn plan_writes_only_what_differs_and_removes_what_is_gone() {
        let on_disk = OnDisk {
            files: files(&[
                ("same", b"1", 0o644),
                ("content", b"old", 0o644),
                ("mode", b"m", 0o644),
                ("gone", b"g", 0o644),
                ("old/deep/file", b"d", 0o644),
                ("kept/file", b"k", 0o644),
            ])
            .entries,
            others: vec![PathBuf::from("link")],
            directories: ["old/deep", "old", "kept", "was-dir"]
                .map(PathBuf::from)
                .to_vec(),
        };
        let wanted = files(&[
            ("same", b"1", 0o644),
            ("content", b"new", 0o644),
            ("mode", b"m", 0o600),
            ("new", b"n", 0o644),
            ("kept/file", b"k", 0o644),
            ("was-dir", b"w", 0o644),
        ]);
        let plan = plan(&wanted.entries, &on_disk);
        let paths = |list: &[&str]| list.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(plan.remove, paths(&["gone", "old/deep/file", "link"]));
        assert_eq!(plan.prune, paths(&["old/deep", "old", "was-dir"]));
        assert_eq!(plan.write, paths(&["content", "mode", "new", "was-dir"]));
    }

    #[test]
    fn sync_of_the_same_files_changes_nothing() {
        let dir = TempDir::new("unchanged");
        let wanted = files(&[("a", b"1", 0o600), ("sub/b", b"2", 0o644)]);
        let first = wanted.sync(&dir.0).unwrap();
        assert_eq!(
            first,
            Changes {
                written: 2,
                removed: 0
            }
        );
        let before = inode(&dir.0.join("a"));
        assert!(wanted.sync(&dir.0).unwrap().is_empty());
        assert_eq!(
            inode(&dir.0.join("a")),
            before,
            "an unchanged file is not rewritten"
        );
    }

    #[test]
    fn sync_replaces_changed_files_in_place_and_removes_vanished_ones() {
        let dir = TempDir::new("update");
        let volume_inode = {
            files(&[("tls.crt", b"old cert", 0o640), ("gone/key", b"k", 0o600)])
                .sync(&dir.0)
                .unwrap();
            inode(&dir.0)
        };
        // An open handle keeps the old content: the new one arrives by rename, not by rewriting the old file.
        let mut held = std::fs::File::open(dir.0.join("tls.crt")).unwrap();
        let changes = files(&[("tls.crt", b"new cert", 0o600), ("ca.crt", b"ca", 0o644)])
            .sync(&dir.0)
            .unwrap();
        assert_eq!(
            changes,
            Changes {
                written: 2,
                removed: 1
            }
        );
        assert_eq!(std::fs::read(dir.0.join("tls.crt")).unwrap(), b"new cert");
        assert_eq!(file_mode(&dir.0.join("tls.crt")), 0o600);
        assert_eq!(file_mode(&dir.0.join("ca.crt")), 0o644);
        let mut old = String::new();
        std::io::Read::read_to_string(&mut held, &mut old).unwrap();
        assert_eq!(old, "old cert");
        assert_eq!(
            listing(&dir.0),
            ["ca.crt", "tls.crt"],
            "no temporary file or empty directory left"
        );
        assert_eq!(
            inode(&dir.0),
            volume_inode,
            "the directory itself stays, so bind mounts stay live"
        );
    }

    #[test]
    fn sync_clears_leftovers_and_swaps_files_and_directories() {
        let dir = TempDir::new("leftovers");
        std::fs::write(dir.0.join("..tmp.a"), b"interrupted write").unwrap();
        std::fs::create_dir_all(dir.0.join("a/inner")).unwrap();
        std::fs::write(dir.0.join("a/inner/x"), b"x").unwrap();
        std::fs::write(dir.0.join("b"), b"file").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.0.join("c")).unwrap();
        files(&[
            ("a", b"now a file", 0o644),
            ("b/now-a-dir", b"y", 0o644),
            ("c", b"z", 0o644),
        ])
        .sync(&dir.0)
        .unwrap();
        assert_eq!(listing(&dir.0), ["a", "b/", "b/now-a-dir", "c"]);
        assert_eq!(std::fs::read(dir.0.join("a")).unwrap(), b"now a file");
        assert!(!std::fs::symlink_metadata(dir.0.join("c"))
            .unwrap()
            .is_symlink());
        Files::default().sync(&dir.0).unwrap();
        assert!(listing(&dir.0).is_empty());
    }
}
