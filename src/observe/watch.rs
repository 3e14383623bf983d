//! The watches behind the operator's caches: a prompt, bounded back-off after a watch error, and a
//! RedisInstance watch that survives objects it cannot decode.
//!
//! A single RedisInstance that does not decode (e.g. `replicas: 10000000000`, admitted by a schema without
//! bounds, or written through the status subresource) would otherwise fail the whole list: no instance in any
//! namespace would be reconciled, and kube's client would log the list body (every instance's spec, passwords
//! included) at each retry. So instances are watched as untyped objects, which always decode, and converted
//! one by one; an object that does not convert is reported by name and left alone.

use std::collections::HashSet;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::utils::Backoff;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use tracing::warn;

use crate::api::{RedisInstance, RedisInstanceSpec, RedisInstanceStatus};
use crate::events::EventReason;

/// Delay before the first retry after a watch error.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Longest delay between two attempts while the API server keeps failing: after an API server restart the
/// caches are listed again within this bound once it answers (a change made then is reflected within about
/// this, measured by the benchmark's outage run). A dozen watches retrying every 2 s is no load.
pub const MAX_RETRY: Duration = Duration::from_secs(2);

/// Objects per page of a watch's list. A whole page is decoded at once, `managedFields` included (they are dropped
/// only from the decoded objects): at 500, the default, the operator restarted over 1,000 instances peaked at 121
/// MiB of heap, 41 MiB of it the pages' managed fields, and glibc kept the peak as RSS (heaptrack, 2026-12-07).
pub const LIST_PAGE: u32 = 50;

/// The watch configuration every cache starts from: paginated lists ([`LIST_PAGE`]) of the most recent state.
/// Not `any_semantic`: a list at resourceVersion 0 is served whole from the API server's cache, its `limit`
/// ignored, so one response held every object of the kind at once.
pub fn list_config() -> watcher::Config {
    watcher::Config::default().page_size(LIST_PAGE)
}

/// The back-off of every watch: 0.5 s, 1 s, then 2 s between attempts; reset by any event.
///
/// kube's default grows to 30 s (with a reset timer of two minutes), which kept caches stale for minutes
/// after an API server restart; a relist is cheap next to managing instances from a stale view.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: FIRST_RETRY }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (delay * 2).min(MAX_RETRY);
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST_RETRY;
    }
}

/// A watch as every cache of the operator runs it: a `410 Gone` relists at once ([`relist_at_once`]), any other
/// error waits for [`WatchBackoff`].
pub fn retried<T: Send>(
    watch: impl Stream<Item = Result<T, watcher::Error>> + Send,
) -> impl Stream<Item = Result<T, watcher::Error>> + Send {
    relist_at_once(watch).backoff(WatchBackoff::default())
}

/// Lets a watch relist at once after `410 Gone` (its resource version expired, as every watch's does when the API
/// server restarts): the error is dropped before the back-off sees it. A second error in a row is passed on, so a
/// server that keeps answering 410 is backed off like any other failure.
pub fn relist_at_once<T: Send>(
    stream: impl Stream<Item = Result<T, watcher::Error>> + Send,
) -> impl Stream<Item = Result<T, watcher::Error>> + Send {
    stream
        .scan(false, |after_error, item| {
            let expired =
                matches!(&item, Err(watcher::Error::WatchError(status)) if status.code == 410);
            let relist_now = expired && !*after_error;
            *after_error = item.is_err();
            std::future::ready(Some((!relist_now).then_some(item)))
        })
        .filter_map(std::future::ready)
}

/// Why an instance could not be decoded, without any of its values: serde names the offending value
/// (`invalid value: integer `10000000000`, expected i32`, or a string that may be a password), so only the part
/// from "expected" on is kept, prefixed with the part of the object (`spec` or `status`).
pub fn describe_decode_error(part: &str, error: &serde_json::Error) -> String {
    let text = error.to_string();
    let kind = if text.starts_with("invalid type") {
        "has a value of the wrong type"
    } else if text.starts_with("missing field") {
        "lacks a required field"
    } else {
        "has a value out of range"
    };
    match text.find("expected ") {
        Some(at) => {
            let expected = text[at..].split(" at line ").next().unwrap_or_default();
            format!("{part} {kind} ({expected})")
        }
        None => format!("{part} {kind}"),
    }
}

/// Converts an untyped RedisInstance into the typed one, or says (without its contents) why it cannot.
pub fn decode(object: &DynamicObject) -> Result<RedisInstance, String> {
    let spec = object.data.get("spec").cloned().unwrap_or_default();
    let spec: RedisInstanceSpec = if spec.is_null() {
        return Err("spec is missing".into());
    } else {
        serde_json::from_value(spec).map_err(|e| describe_decode_error("spec", &e))?
    };
    let status = match object.data.get("status") {
        None | Some(serde_json::Value::Null) => None,
        Some(status) => Some(
            serde_json::from_value::<RedisInstanceStatus>(status.clone())
                .map_err(|e| describe_decode_error("status", &e))?,
        ),
    };
    let mut instance = RedisInstance::new(&object.name_any(), spec);
    instance.metadata = object.metadata.clone();
    instance.status = status;
    Ok(instance)
}

/// A stand-in carrying only the metadata of an undecodable instance: enough for the cache to drop the
/// last decodable version, so no reconcile acts on a spec the user has since replaced.
fn stand_in(object: &DynamicObject) -> RedisInstance {
    let mut instance = RedisInstance::new(&object.name_any(), RedisInstanceSpec::default());
    instance.metadata = object.metadata.clone();
    instance
}

/// Reports an undecodable instance once per resourceVersion: a log line naming it and a Warning Event on it.
struct Reporter {
    recorder: Recorder,
    reported: HashSet<(String, String, String)>,
}

impl Reporter {
    async fn report(&mut self, object: &DynamicObject, why: &str) {
        let namespace = object.namespace().unwrap_or_default();
        let name = object.name_any();
        let version = object.resource_version().unwrap_or_default();
        if !self
            .reported
            .insert((namespace.clone(), name.clone(), version))
        {
            return;
        }
        warn!(%namespace, %name, reason = %why, "cannot decode RedisInstance; it is not managed until it is fixed");
        let reference = ObjectReference {
            api_version: Some("redis-operator.github.io/v1beta1".into()),
            kind: Some("RedisInstance".into()),
            name: Some(name),
            namespace: Some(namespace),
            uid: object.uid(),
            resource_version: object.resource_version(),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: EventReason::Undecodable.to_string(),
            note: Some(format!(
                "The operator cannot read this RedisInstance and leaves it and its children alone until it is \
                 fixed: {why}"
            )),
            action: "Decode".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &reference).await {
            warn!(%error, "could not publish event");
        }
    }
}

/// The RedisInstance watch: untyped objects converted one by one. An undecodable object is reported and
/// never reaches the cache or the controller (a modification that makes one undecodable removes it). Retried as
/// every watch is ([`retried`]).
pub fn instances(
    client: Client,
    namespace: Option<&str>,
    recorder: Recorder,
) -> impl Stream<Item = Result<watcher::Event<RedisInstance>, watcher::Error>> + Send + 'static {
    let resource = ApiResource::erase::<RedisInstance>(&());
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client, ns, &resource),
        None => Api::all_with(client, &resource),
    };
    let reporter = std::sync::Arc::new(tokio::sync::Mutex::new(Reporter {
        recorder,
        reported: HashSet::new(),
    }));
    retried(watcher(api, list_config()))
        .then(move |event| {
            let reporter = reporter.clone();
            async move {
                let event = match event {
                    Ok(event) => event,
                    Err(error) => return Some(Err(error)),
                };
                let converted = match event {
                    watcher::Event::Init => watcher::Event::Init,
                    watcher::Event::InitDone => watcher::Event::InitDone,
                    watcher::Event::Delete(object) => watcher::Event::Delete(
                        decode(&object).unwrap_or_else(|_| stand_in(&object)),
                    ),
                    watcher::Event::InitApply(object) => match decode(&object) {
                        Ok(instance) => watcher::Event::InitApply(instance),
                        Err(why) => {
                            reporter.lock().await.report(&object, &why).await;
                            return None;
                        }
                    },
                    watcher::Event::Apply(object) => match decode(&object) {
                        Ok(instance) => watcher::Event::Apply(instance),
                        Err(why) => {
                            reporter.lock().await.report(&object, &why).await;
                            watcher::Event::Delete(stand_in(&object))
                        }
                    },
                };
                Some(Ok(converted))
            }
        })
        .filter_map(std::future::ready)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(body: serde_json::Value) -> DynamicObject {
        serde_json::from_value(body).unwrap()
    }

    fn with(spec: serde_json::Value, status: Option<serde_json::Value>) -> DynamicObject {
        let mut body = json!({
            "apiVersion": "redis-operator.github.io/v1beta1",
            "kind": "RedisInstance",
            "metadata": {"name": "cache", "namespace": "team", "uid": "u1", "resourceVersion": "7"},
            "spec": spec,
        });
        if let Some(status) = status {
            body["status"] = status;
        }
        object(body)
    }

    #[test]
    fn a_valid_instance_decodes_with_its_metadata() {
        let ri = decode(&with(json!({"replicas": 3}), None)).unwrap();
        assert_eq!(ri.spec.replicas, 3);
        assert_eq!(ri.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(ri.namespace().as_deref(), Some("team"));
        assert!(ri.status.is_none());
    }

    #[test]
    fn an_out_of_range_integer_is_reported_without_the_value_or_other_fields() {
        let secret = "hunter2-password";
        let bad = with(
            json!({"replicas": 10_000_000_000i64, "config": {"requirepass": secret}}),
            None,
        );
        let why = decode(&bad).unwrap_err();
        assert_eq!(why, "spec has a value out of range (expected i32)");
        assert!(!why.contains("10000000000") && !why.contains(secret));
    }

    #[test]
    fn a_wrong_type_names_the_part_but_not_the_value() {
        let secret = "hunter2-password";
        let why = decode(&with(json!({"replicas": secret}), None)).unwrap_err();
        assert!(
            why.starts_with("spec has a value of the wrong type"),
            "{why}"
        );
        assert!(!why.contains(secret), "{why}");
    }

    #[test]
    fn an_undecodable_status_is_reported_as_such() {
        let why = decode(&with(
            json!({}),
            Some(json!({"replicas": 10_000_000_000i64})),
        ))
        .unwrap_err();
        assert!(why.starts_with("status "), "{why}");
    }

    #[test]
    fn a_missing_spec_is_reported() {
        let mut bad = with(json!({}), None);
        bad.data = json!({});
        assert_eq!(decode(&bad).unwrap_err(), "spec is missing");
    }

    #[tokio::test]
    async fn an_expired_watch_relists_at_once_but_a_repeated_expiry_is_backed_off() {
        let gone = || {
            let mut status = kube::core::Status::failure("too old resource version", "Expired");
            status.code = 410;
            Err(watcher::Error::WatchError(Box::new(status)))
        };
        let items: Vec<Result<u32, watcher::Error>> = vec![Ok(1), gone(), Ok(2), gone(), gone()];
        let seen: Vec<Result<u32, String>> = relist_at_once(futures::stream::iter(items))
            .map(|item| item.map_err(|e| e.to_string()))
            .collect()
            .await;
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(seen[..2], [Ok(1), Ok(2)]);
        assert!(seen[2].as_ref().is_err_and(|e| e.contains("Expired")));
    }

    #[test]
    fn backoff_is_prompt_bounded_and_reset() {
        let mut backoff = WatchBackoff::default();
        let delays: Vec<Duration> = backoff.by_ref().take(6).collect();
        assert_eq!(delays[0], FIRST_RETRY);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert_eq!(delays[5], MAX_RETRY);
        assert!(backoff.by_ref().take(100).all(|d| d == MAX_RETRY));
        backoff.reset();
        assert_eq!(backoff.next(), Some(FIRST_RETRY));
    }
}
