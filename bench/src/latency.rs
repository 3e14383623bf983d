//! Reaction latency: spec patch accepted → a status for the new generation on the benchmark's watch, measured
//! side by side with two floors: a status patch by the benchmark itself coming back on its own watch (one write,
//! one watch delivery), and the reaction of a controller that does nothing but answer (the spec patch delivered
//! to its watch, one status write, that delivered to the benchmark's watch: what any controller's reaction
//! costs before it does any work).

use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use redis_fsm::Phase;
use redis_operator::api::{RedisInstance, RedisInstanceSpec};

use crate::audit::{self, Logged};
use crate::watch::Watch;

/// Longest wait for one status.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// Latency samples of one run.
#[derive(Debug, Default)]
pub struct LatencyResult {
    /// Spec patch response → a status with the new `observedGeneration` arrives.
    pub reaction: Vec<Duration>,
    /// Spec patch sent → a status with the new `observedGeneration` arrives.
    pub reaction_from_send: Vec<Duration>,
    /// Status patch response → the patched object arrives (often before the response: zero).
    pub floor: Vec<Duration>,
    /// Status patch sent → the patched object arrives: one write plus one watch delivery.
    pub floor_from_send: Vec<Duration>,
    /// Spec patch sent → the do-nothing controller's status for the new generation arrives (see [`spawn_echo`]).
    pub echo_from_send: Vec<Duration>,
    /// Spec patch response → `Running` and ready for the new generation (the live config change applied).
    pub settle: Vec<Duration>,
    /// Samples whose watch event arrived before the patch response (recorded as zero from the response).
    pub early_events: usize,
    /// Where each reaction's time went, from the audit log (see [`traces`]).
    pub traces: Vec<ReactionTrace>,
}

/// Where one reaction's time went, from the API server's audit log: the requests of the reconcile that applied a
/// `maxmemory` change (its ConfigMap apply and its status write) against the spec patch.
#[derive(Clone, Debug)]
pub struct ReactionTrace {
    /// The spec patch in the API server (received → response complete).
    pub spec_patch: Duration,
    /// Spec patch complete → the operator's ConfigMap apply received: the watch delivery to the operator and its
    /// reconcile up to that request (zero when the watch event overtook the response).
    pub to_apply: Duration,
    /// The ConfigMap apply in the API server.
    pub apply: Duration,
    /// ConfigMap apply complete → the status write received: the passes on the server (`CONFIG SET` and its check,
    /// the observation) and the status computed.
    pub passes: Duration,
    /// The status write in the API server.
    pub status: Duration,
}

/// The trace of every spec patch of `name` by anyone but `operator` in `requests` (one namespace, in the order
/// received) that the operator answered with a ConfigMap apply and a status write before the next spec patch.
pub fn traces(requests: &[Logged], operator: &str, name: &str) -> Vec<ReactionTrace> {
    let is_spec_patch = |r: &Logged| {
        r.user != operator && r.verb == "patch" && r.resource == "redisinstances" && r.name == name
    };
    let patches: Vec<usize> = (0..requests.len())
        .filter(|&i| is_spec_patch(&requests[i]))
        .collect();
    let by_operator = |r: &Logged, verb: &str, resource: &str| {
        r.user == operator && r.verb == verb && r.resource == resource
    };
    let mut traces = Vec::new();
    for (k, &i) in patches.iter().enumerate() {
        let end = patches.get(k + 1).copied().unwrap_or(requests.len());
        let window = &requests[i + 1..end];
        let spec = &requests[i];
        let Some(apply) = window
            .iter()
            .find(|r| by_operator(r, "patch", "configmaps"))
        else {
            continue;
        };
        let Some(status) = window
            .iter()
            .filter(|r| r.received >= apply.done)
            .find(|r| by_operator(r, "update", "redisinstances/status"))
        else {
            continue;
        };
        traces.push(ReactionTrace {
            spec_patch: spec.took(),
            to_apply: audit::since(spec.done, apply.received),
            apply: apply.took(),
            passes: audit::since(apply.done, status.received),
            status: status.took(),
        });
    }
    traces
}

/// Waits for the first watched version of `name` that satisfies `done`, returning its arrival time.
pub async fn wait_for(
    watch: &mut Watch<RedisInstance>,
    name: &str,
    what: &str,
    done: impl Fn(&RedisInstance) -> bool,
) -> Result<Instant, String> {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, watch.events.recv()).await {
            Ok(Some((arrived, ri))) if ri.name_any() == name && done(&ri) => return Ok(arrived),
            Ok(Some(_)) => {}
            Ok(None) => return Err(format!("watch of {name} ended")),
            Err(_) => return Err(format!("timed out waiting for {name} to be {what}")),
        }
    }
}

pub fn is_running_at(ri: &RedisInstance, generation: i64) -> bool {
    ri.status.as_ref().is_some_and(|s| {
        s.status == Phase::Running
            && s.ready == "True"
            && s.observed_generation.is_some_and(|g| g >= generation)
    })
}

fn since(start: Instant, arrived: Instant, early: &mut usize) -> Duration {
    arrived.checked_duration_since(start).unwrap_or_else(|| {
        *early += 1;
        Duration::ZERO
    })
}

/// Runs `samples` rounds of (floor sample, reaction sample). The operator must be watching `namespace` and not
/// `floor_namespace`.
pub async fn measure(
    client: &Client,
    namespace: &str,
    floor_namespace: &str,
    samples: usize,
) -> Result<LatencyResult, String> {
    let instances: Api<RedisInstance> = Api::namespaced(client.clone(), namespace);
    let floor_objects: Api<RedisInstance> = Api::namespaced(client.clone(), floor_namespace);
    let mut watch = Watch::start(instances.clone()).await;
    let mut floor_watch = Watch::start(floor_objects.clone()).await;
    let name = "latency";
    let floor_name = "floor";
    let echo_name = "echo";
    let create = |api: &Api<RedisInstance>, name: &str| {
        let api = api.clone();
        let object = RedisInstance::new(name, RedisInstanceSpec::default());
        async move {
            api.create(&PostParams::default(), &object)
                .await
                .map_err(|e| format!("create {}: {e}", object.name_any()))
        }
    };
    let created = create(&instances, name).await?;
    create(&floor_objects, floor_name).await?;
    create(&floor_objects, echo_name).await?;
    let echo = spawn_echo(floor_objects.clone(), echo_name);
    let generation = created.metadata.generation.unwrap_or(1);
    wait_for(&mut watch, name, "Running", |ri| {
        is_running_at(ri, generation)
    })
    .await?;

    let mut result = LatencyResult::default();
    let params = PatchParams::default();
    for i in 0..samples {
        floor_watch.drain();
        let marker = format!("floor sample {i}");
        let patch = serde_json::json!({"status": {"lastConditionMessage": marker}});
        let sent = Instant::now();
        let patched = floor_objects
            .patch_status(floor_name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("status patch of {floor_name}: {e}"))?;
        let accepted = Instant::now();
        let version = patched.resource_version();
        let arrived = wait_for(&mut floor_watch, floor_name, "patched", |ri| {
            ri.resource_version() == version
        })
        .await?;
        result
            .floor
            .push(since(accepted, arrived, &mut result.early_events));
        result
            .floor_from_send
            .push(arrived.saturating_duration_since(sent));

        floor_watch.drain();
        let sent = Instant::now();
        let generation = patch_maxmemory(&floor_objects, echo_name, 100 + i).await?;
        let answered = wait_observed(&mut floor_watch, echo_name, generation).await?;
        result
            .echo_from_send
            .push(answered.saturating_duration_since(sent));

        watch.drain();
        // `maxmemory` is set live (CONFIG SET): the status of the reconcile that applies it carries the new
        // generation.
        let sent = Instant::now();
        let generation = patch_maxmemory(&instances, name, 100 + i).await?;
        let accepted = Instant::now();
        let updating = wait_observed(&mut watch, name, generation).await?;
        result
            .reaction
            .push(since(accepted, updating, &mut result.early_events));
        result
            .reaction_from_send
            .push(updating.saturating_duration_since(sent));
        let running = wait_for(&mut watch, name, "Running", |ri| {
            is_running_at(ri, generation)
        })
        .await?;
        result
            .settle
            .push(since(accepted, running, &mut result.early_events));
    }
    echo.abort();
    Ok(result)
}

/// A controller that does nothing but answer: for each generation of `name` its own watch delivers that its
/// status has not observed, it writes a status observing it.
fn spawn_echo(api: Api<RedisInstance>, name: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut watch = Watch::start(api.clone()).await;
        while let Some((_, ri)) = watch.events.recv().await {
            let generation = ri.metadata.generation.unwrap_or_default();
            let observed = ri.status.as_ref().and_then(|s| s.observed_generation);
            if ri.name_any() != name || observed >= Some(generation) {
                continue;
            }
            let patch = serde_json::json!({"status": {"observedGeneration": generation}});
            if let Err(e) = api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                eprintln!("echo controller: status patch of {name}: {e}");
            }
        }
    })
}

/// Patches `spec.config.maxmemory` of `name` to `mb` megabytes (a live change); returns the new generation.
pub async fn patch_maxmemory(
    instances: &Api<RedisInstance>,
    name: &str,
    mb: usize,
) -> Result<i64, String> {
    let patch = serde_json::json!({"spec": {"config": {"maxmemory": format!("{mb}mb")}}});
    let patched = instances
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| format!("spec patch of {name}: {e}"))?;
    Ok(patched.metadata.generation.unwrap_or_default())
}

/// Waits for a status of `name` that reports `generation` (or later) as observed.
pub async fn wait_observed(
    watch: &mut Watch<RedisInstance>,
    name: &str,
    generation: i64,
) -> Result<Instant, String> {
    wait_for(watch, name, "observed at the new generation", |ri| {
        ri.status
            .as_ref()
            .is_some_and(|s| s.observed_generation.is_some_and(|g| g >= generation))
    })
    .await
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn logged(user: &str, verb: &str, resource: &str, received_ms: i64, done_ms: i64) -> Logged {
        let at = |ms| Timestamp::from_millisecond(ms).unwrap();
        Logged {
            user: user.into(),
            verb: verb.into(),
            resource: resource.into(),
            name: "latency".into(),
            received: at(received_ms),
            done: at(done_ms),
        }
    }

    #[test]
    fn a_trace_follows_each_spec_patch_to_the_operators_apply_and_status_write() {
        let op = "redis-operator";
        let requests = vec![
            logged("admin", "patch", "redisinstances", 0, 4),
            logged(op, "patch", "configmaps", 9, 15),
            logged(op, "update", "redisinstances/status", 18, 25),
            // Answered with no ConfigMap apply: no trace.
            logged("admin", "patch", "redisinstances", 100, 103),
            logged(op, "update", "redisinstances/status", 110, 115),
            logged("admin", "patch", "redisinstances", 200, 205),
            logged(op, "patch", "configmaps", 203, 210),
            logged(op, "update", "redisinstances/status", 211, 219),
        ];
        let traces = traces(&requests, op, "latency");
        let ms = Duration::from_millis;
        assert_eq!(traces.len(), 2);
        let first = &traces[0];
        assert_eq!(
            [
                first.spec_patch,
                first.to_apply,
                first.apply,
                first.passes,
                first.status
            ],
            [ms(4), ms(5), ms(6), ms(3), ms(7)]
        );
        // The watch event overtook the spec patch's response: zero, not negative.
        assert_eq!(traces[1].to_apply, Duration::ZERO);
        assert_eq!(traces[1].passes, ms(1));
    }
}
