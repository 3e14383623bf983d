//! What this process wrote and its watch caches have not seen yet.
//!
//! A reconcile reads the instance and its pods from watch caches, which trail the API server by the time a
//! watch event takes. A reconcile that starts right after another wrote the status (or a pod's role label)
//! reads the version that write replaced: its status write would conflict (the write is guarded by the
//! resourceVersion) and its label patch would repeat one already made. Both cost an API request and change
//! nothing, and on a converging instance they were one request in five. This memory says when a cached object
//! still holds the version one of our writes replaced; it is forgotten as soon as the cache holds any other
//! version (ours, or a newer one by anybody), so it never hides a change made by someone else.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::runtime::reflector::ObjectRef;
use redis_fsm::RoleLabel;

use crate::api::RedisInstance;

/// Per instance: the resourceVersion its last status write replaced, and per pod the version a role-label
/// patch replaced with the label it set.
#[derive(Default)]
pub(super) struct OwnWrites(Mutex<HashMap<ObjectRef<RedisInstance>, Written>>);

#[derive(Default)]
struct Written {
    status_over: Option<String>,
    labels: HashMap<String, (String, Option<RoleLabel>)>,
}

impl OwnWrites {
    /// Records that the status of `instance` was written over version `over`.
    pub(super) fn status_written(&self, instance: &ObjectRef<RedisInstance>, over: Option<String>) {
        self.record(instance, |w| w.status_over = over);
    }

    /// Whether the cached `version` of `instance` is the one this process last wrote its status over: the cache
    /// has not seen that write yet (its watch event brings the next reconcile).
    pub(super) fn status_unseen(
        &self,
        instance: &ObjectRef<RedisInstance>,
        version: Option<&str>,
    ) -> bool {
        self.check(instance, |w| {
            let unseen = version.is_some() && w.status_over.as_deref() == version;
            if !unseen {
                w.status_over = None;
            }
            unseen
        })
    }

    /// Records that pod `pod` of `instance`, cached at `over`, was labelled `role`.
    pub(super) fn label_set(
        &self,
        instance: &ObjectRef<RedisInstance>,
        pod: &str,
        over: Option<String>,
        role: Option<RoleLabel>,
    ) {
        self.record(instance, |w| match over {
            Some(over) => {
                w.labels.insert(pod.to_owned(), (over, role));
            }
            None => {
                w.labels.remove(pod);
            }
        });
    }

    /// The role label of pod `pod` of `instance` as this process set it, when the cache still holds the
    /// version (`version`) that patch replaced; `None` when the cache holds the pod as it is.
    pub(super) fn unseen_label(
        &self,
        instance: &ObjectRef<RedisInstance>,
        pod: &str,
        version: Option<&str>,
    ) -> Option<Option<RoleLabel>> {
        self.check(instance, |w| match w.labels.get(pod) {
            Some((over, role)) if Some(over.as_str()) == version => Some(*role),
            Some(_) => {
                w.labels.remove(pod);
                None
            }
            None => None,
        })
    }

    /// Forgets an instance that is gone.
    pub(super) fn forget(&self, instance: &ObjectRef<RedisInstance>) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(instance);
        }
    }

    /// Records a write of `instance`'s.
    fn record(&self, instance: &ObjectRef<RedisInstance>, f: impl FnOnce(&mut Written)) {
        let mut map = self.lock();
        f(map.entry(instance.clone()).or_default());
        prune(&mut map, instance);
    }

    /// Checks `instance`'s writes; `T::default()` when none is remembered (what every reconcile of a converged
    /// instance finds: nothing is added to the map then).
    fn check<T: Default>(
        &self,
        instance: &ObjectRef<RedisInstance>,
        f: impl FnOnce(&mut Written) -> T,
    ) -> T {
        let mut map = self.lock();
        let Some(written) = map.get_mut(instance) else {
            return T::default();
        };
        let result = f(written);
        prune(&mut map, instance);
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<RedisInstance>, Written>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Only instances with a write in flight are kept.
fn prune(
    map: &mut HashMap<ObjectRef<RedisInstance>, Written>,
    instance: &ObjectRef<RedisInstance>,
) {
    if map
        .get(instance)
        .is_some_and(|w| w.status_over.is_none() && w.labels.is_empty())
    {
        map.remove(instance);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> ObjectRef<RedisInstance> {
        ObjectRef::new("cache").within("ns")
    }

    #[test]
    fn a_status_write_is_unseen_only_while_the_cache_holds_the_version_it_replaced() {
        let writes = OwnWrites::default();
        assert!(!writes.status_unseen(&instance(), Some("5")));
        // A check of an instance with nothing remembered adds nothing.
        assert!(writes.0.lock().unwrap().is_empty());
        writes.status_written(&instance(), Some("5".into()));
        assert!(writes.status_unseen(&instance(), Some("5")));
        assert!(writes.status_unseen(&instance(), Some("5")));
        // The cache moved on (to our write or anyone's): forgotten, even if "5" came back.
        assert!(!writes.status_unseen(&instance(), Some("6")));
        assert!(!writes.status_unseen(&instance(), Some("5")));
        assert!(writes.0.lock().unwrap().is_empty());
    }

    #[test]
    fn a_label_counts_as_set_until_the_cache_holds_another_version_of_the_pod() {
        let writes = OwnWrites::default();
        writes.label_set(
            &instance(),
            "cache-0",
            Some("7".into()),
            Some(RoleLabel::Primary),
        );
        writes.label_set(&instance(), "cache-1", Some("8".into()), None);
        assert_eq!(
            writes.unseen_label(&instance(), "cache-0", Some("7")),
            Some(Some(RoleLabel::Primary))
        );
        assert_eq!(
            writes.unseen_label(&instance(), "cache-1", Some("8")),
            Some(None)
        );
        assert_eq!(writes.unseen_label(&instance(), "cache-2", Some("7")), None);
        assert_eq!(writes.unseen_label(&instance(), "cache-0", Some("9")), None);
        assert_eq!(writes.unseen_label(&instance(), "cache-0", Some("7")), None);
        writes.forget(&instance());
        assert_eq!(writes.unseen_label(&instance(), "cache-1", Some("8")), None);
        assert!(writes.0.lock().unwrap().is_empty());
    }
}
