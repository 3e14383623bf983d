//! Switchovers a person asks for: the `redis-operator.github.io/switchover-to` annotation, which the
//! `redis-operator switchover NAME --to POD` command writes.
//!
//! The reconciler turns a valid request into persisted intent (`status.targetPrimary` and
//! `status.switchover`, reason `Requested`) as soon as the target is a caught-up replica, then
//! removes the annotation: the request is consumed once, and a later failover is never undone by a
//! stale one. A request that cannot be carried out (no such pod, no replicas) is refused with a
//! Warning Event and removed, touching nothing else.

use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::api::RedisInstance;
use crate::names::{pod_name, SWITCHOVER_ANNOTATION};

/// The pod a request on `ri` names, if any (surrounding whitespace ignored).
pub fn requested(ri: &RedisInstance) -> Option<String> {
    ri.annotations()
        .get(SWITCHOVER_ANNOTATION)
        .map(|to| to.trim().to_string())
}

/// Why the request to make `to` the primary of `ri` cannot be carried out, or `None` when it can.
pub fn refusal(ri: &RedisInstance, to: &str) -> Option<String> {
    let name = ri.name_any();
    let ordinal = to
        .strip_prefix(name.as_str())
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|&n| to == pod_name(&name, n));
    if ri.spec.replicas < 2 {
        return Some(format!(
            "switchover to {to} refused: the instance has no replica (spec.replicas is {})",
            ri.spec.replicas
        ));
    }
    match ordinal {
        Some(n) if i64::from(n) < i64::from(ri.spec.replicas) => None,
        _ => Some(format!(
            "switchover to {to} refused: it is not a pod of {name} (pods are {name}-0 to {name}-{})",
            ri.spec.replicas - 1
        )),
    }
}

/// The merge patch that sets (`Some`) or removes (`None`) the request.
pub fn annotation_patch(to: Option<&str>) -> serde_json::Value {
    serde_json::json!({"metadata": {"annotations": {SWITCHOVER_ANNOTATION: to}}})
}

/// Writes the request on the instance `namespace/name`, after checking it names one of its pods.
pub async fn request(
    client: &Client,
    namespace: &str,
    name: &str,
    to: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let api: Api<RedisInstance> = Api::namespaced(client.clone(), namespace);
    let ri = api.get(name).await?;
    if let Some(why) = refusal(&ri, to) {
        return Err(why.into());
    }
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&annotation_patch(Some(to))),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::children::tests::instance;

    #[test]
    fn only_a_pod_of_the_instance_with_replicas_may_be_requested() {
        let mut ri = instance("cache");
        ri.spec.replicas = 3;
        assert_eq!(refusal(&ri, "cache-2"), None);
        for bad in [
            "cache-3", "cache-x", "other-1", "cache-01", "cache--1", "cache",
        ] {
            let why = refusal(&ri, bad).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(why.contains("not a pod of cache"), "{why}");
        }
        ri.spec.replicas = 1;
        assert!(refusal(&ri, "cache-0").unwrap().contains("no replica"));
    }

    #[test]
    fn the_request_is_read_trimmed_and_removed_by_a_null() {
        let mut ri = instance("cache");
        assert_eq!(requested(&ri), None);
        ri.metadata.annotations =
            Some([(SWITCHOVER_ANNOTATION.to_string(), " cache-1 ".to_string())].into());
        assert_eq!(requested(&ri).as_deref(), Some("cache-1"));
        assert_eq!(
            annotation_patch(None)["metadata"]["annotations"][SWITCHOVER_ANNOTATION],
            serde_json::Value::Null
        );
    }
}
