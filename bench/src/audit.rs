//! Counting the operator's requests from the API server's audit log (JSON lines, Metadata level).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

/// The audit log file; positions are byte offsets, so a window is "everything appended between two offsets".
#[derive(Clone, Debug)]
pub struct AuditLog {
    path: PathBuf,
}

/// A position in the audit log.
#[derive(Clone, Copy, Debug)]
pub struct Mark(u64);

#[derive(Deserialize)]
struct AuditEvent {
    stage: String,
    verb: String,
    #[serde(rename = "requestReceivedTimestamp")]
    received: Option<Timestamp>,
    #[serde(rename = "stageTimestamp")]
    at: Option<Timestamp>,
    user: AuditUser,
    #[serde(rename = "objectRef")]
    object_ref: Option<ObjectRef>,
}

#[derive(Deserialize)]
struct AuditUser {
    username: String,
}

#[derive(Deserialize)]
struct ObjectRef {
    resource: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
    subresource: Option<String>,
}

impl ObjectRef {
    /// `resource` or `resource/subresource`.
    fn path(&self) -> String {
        let resource = self.resource.as_deref().unwrap_or_default();
        match &self.subresource {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_string(),
        }
    }
}

/// The audit events in `text` (JSON lines; a line that is no event is skipped).
fn events(text: &str) -> impl Iterator<Item = AuditEvent> + '_ {
    text.lines()
        .filter_map(|line| serde_json::from_str::<AuditEvent>(line).ok())
}

/// One completed request, as the audit log has it.
#[derive(Clone, Debug)]
pub struct Logged {
    /// Who sent it.
    pub user: String,
    /// Its verb.
    pub verb: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    /// The object's name.
    pub name: String,
    /// When the API server received it.
    pub received: Timestamp,
    /// When its response was complete.
    pub done: Timestamp,
}

impl Logged {
    /// How long the API server took over it.
    pub fn took(&self) -> Duration {
        since(self.received, self.done)
    }
}

/// `to - from`, zero when negative.
pub fn since(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to - from).unwrap_or_default()
}

/// Requests counted by verb and resource (`resource` or `resource/subresource`).
#[derive(Clone, Debug, Default)]
pub struct RequestCounts {
    /// (verb, resource) → number of requests.
    pub by_verb_resource: BTreeMap<(String, String), u64>,
    /// How long the API server took over each of these requests but watches (received → response complete).
    pub latencies: Vec<Duration>,
    /// Requests but watches of every client, in every namespace, in the window: the API server's load.
    pub all_clients: u64,
}

const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

impl RequestCounts {
    /// All requests.
    pub fn total(&self) -> u64 {
        self.by_verb_resource.values().sum()
    }

    /// Requests with this verb.
    pub fn verb(&self, verb: &str) -> u64 {
        self.by_verb_resource
            .iter()
            .filter(|((v, _), _)| v == verb)
            .map(|(_, n)| n)
            .sum()
    }

    /// Writes to anything but Events.
    pub fn object_writes(&self) -> u64 {
        self.writes_where(|resource| resource != "events")
    }

    /// Writes of Events (creates and patches of `events`).
    pub fn event_writes(&self) -> u64 {
        self.writes_where(|resource| resource == "events")
    }

    fn writes_where(&self, keep: impl Fn(&str) -> bool) -> u64 {
        self.by_verb_resource
            .iter()
            .filter(|((verb, resource), _)| WRITE_VERBS.contains(&verb.as_str()) && keep(resource))
            .map(|(_, n)| n)
            .sum()
    }

    /// `verb resource: n` pairs, most frequent first.
    pub fn breakdown(&self) -> Vec<(String, u64)> {
        let mut rows: Vec<(String, u64)> = self
            .by_verb_resource
            .iter()
            .map(|((verb, resource), n)| (format!("{verb} {resource}"), *n))
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows
    }
}

impl AuditLog {
    /// The audit log at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The current end of the log.
    pub fn mark(&self) -> Mark {
        Mark(
            std::fs::metadata(&self.path)
                .map(|m| m.len())
                .unwrap_or_default(),
        )
    }

    /// What was logged between `from` and `to`.
    fn window(&self, from: Mark, to: Mark) -> Result<String, String> {
        if to.0 < from.0 {
            return Err(format!(
                "{} was rotated during the measurement",
                self.path.display()
            ));
        }
        let mut file =
            std::fs::File::open(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        file.seek(SeekFrom::Start(from.0))
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        file.take(to.0 - from.0)
            .read_to_string(&mut text)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        Ok(text)
    }

    /// Every completed request but watches in `namespace` logged between `from` and `to`, in the order the API
    /// server received them.
    pub fn requests(&self, from: Mark, to: Mark, namespace: &str) -> Result<Vec<Logged>, String> {
        let mut requests = Vec::new();
        for event in events(&self.window(from, to)?) {
            let (Some(object), Some(received), Some(done)) =
                (event.object_ref, event.received, event.at)
            else {
                continue;
            };
            if event.stage != "ResponseComplete"
                || event.verb == "watch"
                || object.namespace.as_deref() != Some(namespace)
            {
                continue;
            }
            let resource = object.path();
            requests.push(Logged {
                user: event.user.username,
                verb: event.verb,
                resource,
                name: object.name.unwrap_or_default(),
                received,
                done,
            });
        }
        requests.sort_by_key(|r| r.received);
        Ok(requests)
    }

    /// Requests of `user` in `namespace` logged between `from` and `to`. A watch counts once, when it starts
    /// (its `ResponseComplete` only comes when it ends); every other request counts at `ResponseComplete`.
    pub fn count(
        &self,
        from: Mark,
        to: Mark,
        user: &str,
        namespace: &str,
    ) -> Result<RequestCounts, String> {
        let mut counts = RequestCounts::default();
        for event in events(&self.window(from, to)?) {
            let counted_stage = if event.verb == "watch" {
                "ResponseStarted"
            } else {
                "ResponseComplete"
            };
            if event.stage == "ResponseComplete" && event.verb != "watch" {
                counts.all_clients += 1;
            }
            if event.user.username != user || event.stage != counted_stage {
                continue;
            }
            let Some(object) = event.object_ref else {
                continue;
            };
            if object.namespace.as_deref() != Some(namespace) {
                continue;
            }
            if let (Some(received), Some(at), false) =
                (event.received, event.at, event.verb == "watch")
            {
                counts.latencies.push(since(received, at));
            }
            let resource = object.path();
            *counts
                .by_verb_resource
                .entry((event.verb, resource))
                .or_default() += 1;
        }
        Ok(counts)
    }
}
