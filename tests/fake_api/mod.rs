//! A fake Kubernetes API server for reconcile-level tests: a `kube::Client` over an in-process tower service that
//! records every request (method, path and query, body) and answers it from an in-memory map of objects, the way
//! an API server without admission or defaulting would: GET reads, POST creates (409 when the name is taken),
//! server-side apply creates or replaces the applied fields (keeping the status subresource), merge and JSON
//! patches edit, a status PUT is guarded by the resourceVersion it carries (409 when stale), DELETE removes.
//! Every write stamps a new resourceVersion, a created object gets a uid and creationTimestamp, and a change of
//! `spec` raises `metadata.generation`. Events (events.k8s.io) are answered and recorded, not stored.
//!
//! [`caches`] fills the operator's watch caches from the same objects, as its watches would.

pub mod caches;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::client::Body;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// The content type of a server-side apply PATCH.
const APPLY_PATCH: &str = "application/apply-patch+yaml";
/// The content type of a JSON merge PATCH (RFC 7386).
const MERGE_PATCH: &str = "application/merge-patch+json";
/// The content type of a JSON PATCH (RFC 6902), as the finalizer helper sends.
const JSON_PATCH: &str = "application/json-patch+json";
/// The path prefix of the events.k8s.io API, where the operator's Recorder publishes Events.
const EVENTS_API: &str = "/apis/events.k8s.io/";

/// One request the fake API received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The HTTP method.
    pub method: Method,
    /// The path without the query.
    pub path: String,
    /// The path with its query, as sent (`/api/v1/...?fieldManager=...`).
    pub path_and_query: String,
    /// The JSON body, when there was one.
    pub body: Option<Value>,
}

impl Recorded {
    /// `METHOD path?query`, the form the tests compare write sets in.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path_and_query)
    }

    /// Whether the request changes something (anything but a GET).
    pub fn is_write(&self) -> bool {
        self.method != Method::GET
    }

    /// Whether the request publishes an Event (events.k8s.io).
    pub fn is_event(&self) -> bool {
        self.path.starts_with(EVENTS_API)
    }
}

/// What the fake API holds and has received.
#[derive(Default)]
struct State {
    /// Every object by its path (`/api/v1/namespaces/NS/configmaps/NAME`).
    objects: BTreeMap<String, Value>,
    /// Every request, in order, since the last [`FakeApi::take_requests`].
    requests: Vec<Recorded>,
    /// The last resourceVersion handed out (one counter for every object, as etcd's revision).
    version: u64,
    /// The last uid handed out.
    uids: u64,
}

/// The fake API server; clones share one state.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    /// An API server holding nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client whose every request this fake answers.
    pub fn client(&self) -> Client {
        let state = self.state.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, request).await) }
        });
        Client::new(service, "default")
    }

    /// Stores `object` as a user or another controller would have created it (no request is recorded): a uid,
    /// resourceVersion, generation and creationTimestamp are added when it has none.
    pub fn insert<K: Resource<DynamicType = ()> + Serialize>(&self, object: &K) {
        let path = object_path(object);
        let value = serde_json::to_value(object).expect("objects serialize");
        let mut state = self.lock();
        let stamped = state.stamp_new(value);
        state.objects.insert(path, stamped);
    }

    /// Replaces what is stored of `object` (e.g. a StatefulSet's status as its controller writes it, or a
    /// user's edit of the spec), as an update would: a new resourceVersion, and a new generation when `spec`
    /// changed. No request is recorded.
    pub fn update<K: Resource<DynamicType = ()> + Serialize>(&self, object: &K) {
        let path = object_path(object);
        let value = serde_json::to_value(object).expect("objects serialize");
        let mut state = self.lock();
        let previous = state
            .objects
            .get(&path)
            .cloned()
            .unwrap_or_else(|| panic!("update of {path}, which does not exist"));
        let updated = state.stamp_update(&previous, value);
        state.objects.insert(path, updated);
    }

    /// Writes the status of `object` (e.g. a StatefulSet's, as its controller does): a new resourceVersion,
    /// nothing else changes. No request is recorded.
    pub fn update_status<K: Resource<DynamicType = ()> + Serialize>(&self, object: &K) {
        let path = object_path(object);
        let value = serde_json::to_value(object).expect("objects serialize");
        let mut state = self.lock();
        let (code, answer) = state.replace_status(&path, value);
        assert_eq!(code, StatusCode::OK, "status of {path}: {answer}");
    }

    /// Deletes the stored object of kind `K` named `name` in `namespace`, as someone else would. No request is
    /// recorded.
    pub fn delete<K: Resource<DynamicType = ()>>(&self, namespace: &str, name: &str) {
        let path = format!("{}/{name}", K::url_path(&(), Some(namespace)));
        self.lock().objects.remove(&path);
    }

    /// The stored object of kind `K` named `name` in `namespace`.
    pub fn get<K: Resource<DynamicType = ()> + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<K> {
        let path = format!("{}/{name}", K::url_path(&(), Some(namespace)));
        let value = self.lock().objects.get(&path).cloned()?;
        Some(serde_json::from_value(value).expect("stored objects deserialize"))
    }

    /// Every stored object of kind `K` in `namespace`, by name.
    pub fn list<K: Resource<DynamicType = ()> + DeserializeOwned>(
        &self,
        namespace: &str,
    ) -> Vec<K> {
        let prefix = format!("{}/", K::url_path(&(), Some(namespace)));
        self.lock()
            .objects
            .iter()
            .filter(|(path, _)| path.starts_with(&prefix) && !path[prefix.len()..].contains('/'))
            .map(|(_, value)| {
                serde_json::from_value(value.clone()).expect("stored objects deserialize")
            })
            .collect()
    }

    /// Every request received since the last call, in order.
    pub fn take_requests(&self) -> Vec<Recorded> {
        std::mem::take(&mut self.lock().requests)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The path of a namespaced object.
fn object_path<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}",
        K::url_path(&(), object.namespace().as_deref()),
        object.name_any()
    )
}

/// Records a request and answers it.
async fn handle(state: &Mutex<State>, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect_bytes()
        .await
        .expect("request bodies are in memory");
    let body: Option<Value> = (!bytes.is_empty())
        .then(|| serde_json::from_slice(&bytes).expect("request bodies are JSON"));
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let path = parts.uri.path().to_string();
    let recorded = Recorded {
        method: parts.method.clone(),
        path: path.clone(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| path.clone(), |p| p.as_str().to_string()),
        body: body.clone(),
    };
    let (code, answer) = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        state.requests.push(recorded);
        state.answer(&parts.method, &path, &content_type, body)
    };
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::to_vec(&answer).expect("answers serialize"),
        ))
        .expect("a valid response")
}

/// An API server's failure answer.
fn failure(code: StatusCode, reason: &str, message: String) -> (StatusCode, Value) {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    (code, body)
}

impl State {
    fn answer(
        &mut self,
        method: &Method,
        path: &str,
        content_type: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        if path.starts_with(EVENTS_API) {
            // Published and forgotten: nothing in the operator reads events.k8s.io Events back.
            let code = if *method == Method::POST {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            return (code, body.unwrap_or_default());
        }
        match *method {
            Method::GET => match self.objects.get(path) {
                Some(object) => (StatusCode::OK, object.clone()),
                None => not_found(path),
            },
            Method::POST => self.create(path, body.expect("a POST has a body")),
            Method::PATCH => self.patch(path, content_type, body.expect("a PATCH has a body")),
            Method::PUT => match path.strip_suffix("/status") {
                Some(object) => self.replace_status(object, body.expect("a PUT has a body")),
                None => failure(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    format!("the fake API does not replace whole objects ({path})"),
                ),
            },
            Method::DELETE => match self.objects.remove(path) {
                Some(object) => (StatusCode::OK, object),
                None => not_found(path),
            },
            _ => failure(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{method} {path}"),
            ),
        }
    }

    fn create(&mut self, collection: &str, body: Value) -> (StatusCode, Value) {
        let name = body["metadata"]["name"]
            .as_str()
            .expect("a created object has a name")
            .to_string();
        let path = format!("{collection}/{name}");
        if self.objects.contains_key(&path) {
            return failure(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{path} already exists"),
            );
        }
        let object = self.stamp_new(body);
        self.objects.insert(path, object.clone());
        (StatusCode::CREATED, object)
    }

    fn patch(&mut self, path: &str, content_type: &str, patch: Value) -> (StatusCode, Value) {
        let existing = self.objects.get(path).cloned();
        let patched = match (content_type, existing) {
            (APPLY_PATCH, None) => {
                let object = self.stamp_new(patch);
                self.objects.insert(path.to_string(), object.clone());
                return (StatusCode::CREATED, object);
            }
            (APPLY_PATCH, Some(existing)) => {
                // The operator is the only field manager of what it applies and always applies every field it
                // manages, so the applied object replaces the old one; the status subresource stays.
                let mut applied = patch;
                if let Some(status) = existing.get("status") {
                    applied["status"] = status.clone();
                }
                self.stamp_update(&existing, applied)
            }
            (_, None) => return not_found(path),
            (MERGE_PATCH, Some(existing)) => {
                let mut merged = existing.clone();
                json_patch::merge(&mut merged, &patch);
                self.stamp_update(&existing, merged)
            }
            (JSON_PATCH, Some(existing)) => {
                let operations: json_patch::Patch =
                    serde_json::from_value(patch).expect("a JSON patch");
                let mut patched = existing.clone();
                if let Err(error) = json_patch_as_kubernetes(&mut patched, operations) {
                    return failure(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        format!("{path}: {error}"),
                    );
                }
                self.stamp_update(&existing, patched)
            }
            (other, Some(_)) => {
                return failure(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    format!("the fake API does not take {other:?} patches ({path})"),
                )
            }
        };
        self.objects.insert(path.to_string(), patched.clone());
        (StatusCode::OK, patched)
    }

    fn replace_status(&mut self, path: &str, body: Value) -> (StatusCode, Value) {
        let Some(existing) = self.objects.get(path).cloned() else {
            return not_found(path);
        };
        let sent = body["metadata"]["resourceVersion"].as_str();
        let stored = existing["metadata"]["resourceVersion"].as_str();
        if sent.is_some() && sent != stored {
            return failure(
                StatusCode::CONFLICT,
                "Conflict",
                format!("{path}: resourceVersion {sent:?} is not the stored {stored:?}"),
            );
        }
        let mut updated = existing;
        updated["status"] = body.get("status").cloned().unwrap_or(Value::Null);
        self.version += 1;
        updated["metadata"]["resourceVersion"] = json!(self.version.to_string());
        self.objects.insert(path.to_string(), updated.clone());
        (StatusCode::OK, updated)
    }

    /// A new object as stored: with a uid, resourceVersion, generation and creationTimestamp, and a Secret's
    /// `stringData` moved into `data`.
    fn stamp_new(&mut self, mut object: Value) -> Value {
        self.uids += 1;
        self.version += 1;
        let metadata = object["metadata"]
            .as_object_mut()
            .expect("an object has metadata");
        metadata
            .entry("uid")
            .or_insert_with(|| json!(format!("uid-{}", self.uids)));
        metadata
            .entry("creationTimestamp")
            .or_insert_with(|| json!("2024-01-01T00:00:00Z"));
        metadata.entry("generation").or_insert_with(|| json!(1));
        metadata.insert("resourceVersion".into(), json!(self.version.to_string()));
        if object["kind"] == "Secret" {
            object = secret_string_data_to_data(object);
        }
        object
    }

    /// `object` written over `previous`: the identity of `previous`, a new resourceVersion, and a generation
    /// raised when `spec` changed.
    fn stamp_update(&mut self, previous: &Value, mut object: Value) -> Value {
        self.version += 1;
        let old = &previous["metadata"];
        let generation = old["generation"].as_i64().unwrap_or(1)
            + i64::from(previous.get("spec") != object.get("spec"));
        let metadata = object["metadata"]
            .as_object_mut()
            .expect("an object has metadata");
        for field in ["uid", "creationTimestamp"] {
            if let Some(value) = old.get(field) {
                metadata.insert(field.into(), value.clone());
            }
        }
        metadata.insert("generation".into(), json!(generation));
        metadata.insert("resourceVersion".into(), json!(self.version.to_string()));
        if object["kind"] == "Secret" {
            object = secret_string_data_to_data(object);
        }
        object
    }
}

/// Applies a JSON patch as the API server does: a `test` of `null` also passes where the path is absent (the
/// finalizer helper tests `/metadata/finalizers` against `null` on an object without finalizers).
fn json_patch_as_kubernetes(
    object: &mut Value,
    operations: json_patch::Patch,
) -> Result<(), String> {
    let mut kept = Vec::new();
    for operation in operations.0 {
        match &operation {
            json_patch::PatchOperation::Test(test)
                if test.value.is_null() && object.pointer(test.path.as_str()).is_none() => {}
            _ => kept.push(operation),
        }
    }
    json_patch::patch(object, &kept).map_err(|e| e.to_string())
}

fn not_found(path: &str) -> (StatusCode, Value) {
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{path} not found"),
    )
}

/// A Secret as the API server stores it: `stringData` is write-only and merged into `data`.
fn secret_string_data_to_data(object: Value) -> Value {
    let mut secret: Secret = serde_json::from_value(object).expect("a Secret");
    if let Some(strings) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (key, value) in strings {
            data.insert(key, ByteString(value.into_bytes()));
        }
    }
    serde_json::to_value(secret).expect("a Secret serializes")
}
