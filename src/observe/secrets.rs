//! Secrets without keeping other people's: the operator watches every Secret of the watched namespaces as
//! metadata only (name, namespace, resourceVersion, the controller owner reference), which is what tells it that
//! a Secret an instance names changed, and reads the content of the few Secrets an instance names by name when
//! it reconciles that instance. Of those it keeps only the keys it reads, until their resourceVersion changes.
//!
//! Caching every Secret's data (as a plain watch does) let anyone who may create Secrets anywhere grow the
//! operator without bound: 120 Secrets of 700 KB in an unrelated namespace added 84 MiB.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};

/// The metadata the Secret watch keeps of a Secret.
pub type SecretMeta = PartialObjectMeta<Secret>;

/// Which keys of a Secret a reader uses.
#[derive(Clone, Copy, Debug)]
pub enum Keys<'a> {
    /// Every key: the operator's own Secrets (`NAME-acl`), whose content it wrote.
    All,
    /// Only these (a user's Secret may hold anything else).
    Only(&'a [&'a str]),
}

/// A Secret's content as last read, with the keys it was cut to.
struct Read {
    version: Option<String>,
    /// `None`: every key was kept.
    kept: Option<BTreeSet<String>>,
    secret: Arc<Secret>,
}

impl Read {
    /// `secret` as read at its version, cut to `kept`.
    fn of(secret: Arc<Secret>, kept: Option<BTreeSet<String>>) -> Read {
        Read {
            version: secret.metadata.resource_version.clone(),
            kept,
            secret,
        }
    }

    fn covers(&self, keys: Keys<'_>) -> bool {
        match (keys, &self.kept) {
            (_, None) => true,
            (Keys::All, Some(_)) => false,
            (Keys::Only(wanted), Some(kept)) => wanted.iter().all(|k| kept.contains(*k)),
        }
    }
}

/// Reads Secrets by name: the metadata watch cache says whether one exists and at which version; the content
/// is read from the API server (`get`) when the version differs from the one last read.
pub struct Secrets {
    client: Client,
    metadata: Store<SecretMeta>,
    read: Mutex<HashMap<ObjectRef<Secret>, Read>>,
}

impl Secrets {
    /// A reader over the metadata watch cache `metadata`.
    pub fn new(client: Client, metadata: Store<SecretMeta>) -> Self {
        Self {
            client,
            metadata,
            read: Mutex::default(),
        }
    }

    /// The metadata watch cache.
    pub fn metadata(&self) -> &Store<SecretMeta> {
        &self.metadata
    }

    /// Secret `name` of `namespace`, with the keys `keys` names (others removed), or `None` when the watch cache
    /// holds no such Secret (its watch event reconciles the instance once it exists).
    pub async fn get(
        &self,
        namespace: &str,
        name: &str,
        keys: Keys<'_>,
    ) -> Result<Option<Arc<Secret>>, kube::Error> {
        let key = ObjectRef::<Secret>::new(name).within(namespace);
        let meta_key = ObjectRef::<SecretMeta>::new(name).within(namespace);
        let Some(meta) = self.metadata.get(&meta_key) else {
            self.forget(&key);
            return Ok(None);
        };
        let version = meta.metadata.resource_version.clone();
        if let Some(read) = self.lock().get(&key) {
            if read.version == version && read.covers(keys) {
                return Ok(Some(read.secret.clone()));
            }
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let Some(secret) = api.get_opt(name).await? else {
            self.forget(&key);
            return Ok(None);
        };
        let mut read = self.lock();
        // Keys an earlier reader of the same version asked for stay, so readers of one Secret do not evict
        // each other's keys.
        let kept = match (keys, read.get(&key)) {
            (Keys::All, _) => None,
            (Keys::Only(wanted), previous) => {
                let mut kept: BTreeSet<String> = wanted.iter().map(|k| k.to_string()).collect();
                if let Some(Read {
                    version: v,
                    kept: Some(before),
                    ..
                }) = previous
                {
                    if *v == secret.metadata.resource_version {
                        kept.extend(before.iter().cloned());
                    }
                }
                Some(kept)
            }
        };
        let secret = Arc::new(trim(secret, kept.as_ref()));
        // Forget what was read of Secrets that are gone, so the map holds only Secrets that still exist.
        read.retain(|r, _| {
            self.metadata
                .get(&ObjectRef::new(&r.name).within(r.namespace.as_deref().unwrap_or_default()))
                .is_some()
        });
        read.insert(key, Read::of(secret.clone(), kept));
        Ok(Some(secret))
    }

    /// Keeps `secret`, as the API server answered a write of it, as its content at its version (every key: the
    /// operator's own Secret, whose content it wrote): the next `get` at that version reads nothing.
    pub fn remember(&self, secret: Secret) {
        let key = ObjectRef::<Secret>::new(&secret.name_any())
            .within(&secret.namespace().unwrap_or_default());
        let read = Read::of(Arc::new(trim(secret, None)), None);
        self.lock().insert(key, read);
    }

    fn forget(&self, key: &ObjectRef<Secret>) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<Secret>, Read>> {
        self.read.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `secret` with only the keys in `kept` (every key when `None`), without annotations and server-side apply
/// bookkeeping, which nothing reads.
fn trim(mut secret: Secret, kept: Option<&BTreeSet<String>>) -> Secret {
    if let Some(kept) = kept {
        if let Some(data) = secret.data.as_mut() {
            data.retain(|k, _| kept.contains(k));
        }
        if let Some(data) = secret.string_data.as_mut() {
            data.retain(|k, _| kept.contains(k));
        }
    }
    secret.metadata.annotations = None;
    secret.metadata.managed_fields = None;
    secret
}

/// What the metadata watch keeps of a Secret: its identity and version, and the controller owner reference when
/// that is a RedisInstance (to map a change of `NAME-auth` or `NAME-acl` to its instance). Labels, annotations
/// and other references can be large and are never read.
pub fn trim_metadata(secret: &mut SecretMeta) {
    let meta = secret.meta_mut();
    meta.annotations = None;
    meta.managed_fields = None;
    meta.finalizers = None;
    meta.labels = None;
    meta.owner_references = meta.owner_references.take().map(|owners| {
        owners
            .into_iter()
            .filter(|o| o.controller == Some(true) && o.kind == "RedisInstance")
            .take(1)
            .collect()
    });
}

/// The instance whose own Secret (`NAME-auth`, `NAME-acl`) this is, by its controller owner reference.
pub fn owning_instance(secret: &SecretMeta) -> Option<String> {
    secret
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "RedisInstance")
        .map(|o| o.name.clone())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use k8s_openapi::ByteString;

    use super::*;

    fn owner(kind: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: "redis-operator.github.io/v1beta1".into(),
            kind: kind.into(),
            name: "cache".into(),
            uid: "u".into(),
            controller: Some(controller),
            ..Default::default()
        }
    }

    #[test]
    fn the_metadata_kept_of_a_secret_is_bounded() {
        let mut meta = SecretMeta::default();
        meta.metadata.name = Some("big".into());
        meta.metadata.resource_version = Some("7".into());
        meta.metadata.annotations = Some([("a".to_string(), "x".repeat(200_000))].into());
        meta.metadata.labels = Some(
            (0..100)
                .map(|i| (format!("l{i}"), "v".to_string()))
                .collect(),
        );
        meta.metadata.owner_references = Some(
            (0..50)
                .map(|_| owner("Other", true))
                .chain([owner("RedisInstance", false), owner("RedisInstance", true)])
                .collect(),
        );
        trim_metadata(&mut meta);
        assert_eq!(meta.metadata.annotations, None);
        assert_eq!(meta.metadata.labels, None);
        assert_eq!(meta.owner_references().len(), 1);
        assert_eq!(owning_instance(&meta).as_deref(), Some("cache"));
        assert_eq!(meta.metadata.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn a_read_secret_keeps_only_the_keys_read() {
        let secret = Secret {
            data: Some(
                [("pw", "a"), ("blob", "huge"), ("previousPassword", "b")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        let kept: BTreeSet<String> = ["pw".to_string(), "previousPassword".to_string()].into();
        let trimmed = trim(secret.clone(), Some(&kept));
        let keys: Vec<&String> = trimmed.data.as_ref().unwrap().keys().collect();
        assert_eq!(keys, ["previousPassword", "pw"]);
        assert_eq!(trim(secret, None).data.unwrap().len(), 3);
    }

    #[test]
    fn a_read_covers_the_keys_it_kept() {
        let read = Read {
            version: None,
            kept: Some(["pw".to_string()].into()),
            secret: Arc::new(Secret::default()),
        };
        assert!(read.covers(Keys::Only(&["pw"])));
        assert!(!read.covers(Keys::Only(&["pw", "other"])));
        assert!(!read.covers(Keys::All));
    }
}
