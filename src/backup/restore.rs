//! Restore by declaration (`spec.bootstrap.fromBackup`): a new instance's first pod is seeded from a completed
//! backup before any pod serves, and no primary is chosen until it is done.
//!
//! The operator serves the snapshot as a primary would ([`super::serve`]): it points the pod's server at
//! itself (`REPLICAOF` to its own address as the pod reaches it), answers the server's `PSYNC` with
//! `+FULLRESYNC` and the backup's replication id and offset, and streams the object, decompressed, as the
//! server reads it. Nothing is staged on the pod's disk but the server's own received copy, and the operator
//! holds one chunk at a time: the SHA-256 the backup recorded is checked as the bytes pass, and the last chunk
//! is sent only once it matches, so a corrupt object never completes a load. The server takes the backup's
//! replication id once it has loaded the data: that is what [`redis_fsm::seed_step`] recognises. The pod is
//! parked (replicating from itself) and the restore recorded in `status.restore`; the topology engine then
//! starts the instance from that pod, the only one holding data.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use object_store::{ObjectStore, ObjectStoreExt};
use redis_fsm::{
    seed_step, Endpoint, PodReplication, SeedStep, ServerName, ServerSoftware, TopologyStatus,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::archive::{BaseManifest, Timeline};
use super::controller::{bucket_named, COMPLETED, FAILED};
use crate::api::{status_integer, FromArchive, FromBackup, RedisInstance, RestoreStatus};
use crate::reconciler::Context;
use crate::redis::{Access, RedisNode};
use crate::tls::Material;

/// How long a failed attempt that may succeed later (an unreachable bucket or server) waits before the next.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// How long the server may take to connect for the snapshot once pointed at the operator.
const CONNECT_WAIT: Duration = Duration::from_secs(30);
/// How long the server may take to load the snapshot once sent.
const LOAD_WAIT: Duration = Duration::from_secs(600);
/// The bytes read from the object at a time (and the most the operator holds back).
const CHUNK: usize = 256 * 1024;

/// The restores under way in this process, by instance uid.
#[derive(Default)]
pub struct Restores {
    tasks: Mutex<HashMap<String, Task>>,
}

#[derive(Clone, Debug)]
enum Task {
    /// Seeding `pod`; `sent` bytes of the snapshot so far.
    Running { pod: String, sent: Arc<AtomicU64> },
    /// The pod loaded the snapshot (and the stream after it, up to `offset`) and was parked; its observation
    /// will say so.
    Loaded {
        pod: String,
        offset: u64,
        up_to: Option<i64>,
    },
    /// The attempt failed; `permanent` ones are not tried again (by this process).
    Failed {
        message: String,
        permanent: bool,
        retry_at: Instant,
    },
}

/// What the restore pass found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RestorePass {
    /// What the restore waits for or does now (no pod serves meanwhile).
    pub pending: Option<String>,
    /// Why the backup cannot be restored: the instance stops (`Failed`, `RestoreFailed`).
    pub stop: Option<String>,
    /// To record in `status.restore`: the restore done, or (without `completedAt`) the plan of one from an
    /// archive, before it starts.
    pub restored: Option<RestoreStatus>,
}

fn pending(message: String) -> RestorePass {
    RestorePass {
        pending: Some(message),
        ..Default::default()
    }
}

fn stop(message: String) -> RestorePass {
    RestorePass {
        stop: Some(message),
        ..Default::default()
    }
}

/// What a new instance is seeded from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// A completed `RedisBackup`.
    Backup(&'a FromBackup),
    /// An archive, as of a time.
    Archive(&'a FromArchive),
}

/// What to seed `ri` from, while the restore is still to be done: `spec.bootstrap` is set, no restore is
/// recorded complete and no primary ever was.
pub fn outstanding<'a>(ri: &'a RedisInstance, topology: &TopologyStatus) -> Option<Source<'a>> {
    let bootstrap = ri.spec.bootstrap.as_ref()?;
    let done = ri
        .status
        .as_ref()
        .and_then(|s| s.restore.as_ref())
        .is_some_and(|r| r.completed_at.is_some());
    if done || topology.current_primary.is_some() {
        return None;
    }
    bootstrap
        .from_backup
        .as_ref()
        .map(Source::Backup)
        .or(bootstrap.from_archive.as_ref().map(Source::Archive))
}

/// The data a restore seeds, as recorded (`status.restore`, without `completedAt`) and where to read it.
struct Target {
    /// What it is, in messages.
    label: String,
    /// The record, completed once seeded.
    record: RestoreStatus,
    /// The history the seeded pod carries.
    replid: String,
    /// The offset it is complete at, when known before seeding.
    offset: Option<u64>,
}

/// One step of restoring `source` into `ri`, whose pods are observed as `pods`: starts seeding the first pod
/// (while leading), reports progress, or says the restore is done.
pub async fn pass(
    ri: &RedisInstance,
    ctx: &Context,
    source: Source<'_>,
    pods: &[PodReplication],
    access: &Access,
    material: Option<&Material>,
) -> RestorePass {
    let uid = ri.uid().unwrap_or_default();
    let target = match source {
        Source::Backup(from) => match backup_target(ri, ctx, from) {
            Ok(target) => target,
            Err(pass) => return *pass,
        },
        Source::Archive(from) => match archive_target(ri, ctx, from).await {
            Ok(target) => target,
            Err(pass) => return *pass,
        },
    };
    let task = ctx
        .restores
        .tasks
        .lock()
        .ok()
        .and_then(|t| t.get(&uid).cloned());
    let mut offset = target.offset;
    match &task {
        Some(Task::Running { pod, sent }) => {
            return pending(format!(
                "restoring {} into {pod}: {} bytes sent",
                target.label,
                sent.load(Ordering::Relaxed)
            ))
        }
        Some(Task::Failed {
            message,
            permanent: true,
            ..
        }) => return stop(message.clone()),
        Some(Task::Failed {
            message, retry_at, ..
        }) if *retry_at > Instant::now() => {
            return pending(format!(
                "{message}; trying again within {} s",
                retry_at.saturating_duration_since(Instant::now()).as_secs() + 1
            ))
        }
        Some(Task::Loaded { offset: loaded, .. }) => offset = Some(*loaded),
        _ => {}
    }
    match seed_step(pods, &target.replid, offset) {
        SeedStep::Wait(why) => pending(format!("restoring {}: {why}", target.label)),
        SeedStep::Refuse(holders) => stop(format!(
            "pods {} hold data of another history: a backup is restored into a new, empty instance only (delete \
             this instance and its claims, or create another instance with spec.bootstrap); nothing was changed",
            holders.join(", ")
        )),
        SeedStep::Seeded(pod) => {
            let loaded = match ctx.restores.tasks.lock() {
                Ok(mut tasks) => tasks.remove(&uid),
                Err(_) => None,
            };
            let restored_up_to = match loaded {
                Some(Task::Loaded { up_to, .. }) => up_to.map(super::archive::millis_rfc3339),
                _ => target.record.restored_up_to.clone(),
            };
            RestorePass {
                restored: Some(RestoreStatus {
                    pod,
                    replication_offset: offset.map(status_integer),
                    restored_up_to,
                    completed_at: Some(crate::status::rfc3339(
                        k8s_openapi::jiff::Timestamp::now(),
                    )),
                    ..target.record
                }),
                ..Default::default()
            }
        }
        SeedStep::Seed(pod) => {
            if let Some(Task::Loaded { pod, .. }) = &task {
                return pending(format!(
                    "restoring {}: waiting to observe {pod} holding it",
                    target.label
                ));
            }
            if !ctx.leadership.is_held() {
                return pending(format!(
                    "restoring {}: waiting for the leading operator",
                    target.label
                ));
            }
            let aof = ri
                .spec
                .config
                .get("appendonly")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes"));
            let size = ri.spec.storage.as_ref().map(|s| s.size.as_str());
            if let Some(why) = claim_too_small(target.record.data_size, size, aof) {
                return stop(format!("{}: {why}; nothing was sent", target.label));
            }
            let job = match prepare(ri, ctx, source, &target, &pod, pods, access, material).await {
                Ok(job) => job,
                Err(message) => return stop(message),
            };
            let sent = Arc::new(AtomicU64::new(0));
            if let Ok(mut tasks) = ctx.restores.tasks.lock() {
                tasks.insert(
                    uid.clone(),
                    Task::Running {
                        pod: pod.clone(),
                        sent: sent.clone(),
                    },
                );
            }
            let restores = ctx.restores.clone();
            let (name, label) = (ri.name_any(), target.label.clone());
            tokio::spawn(async move {
                let task = match seed(&job, &sent).await {
                    Ok(seeded) => {
                        info!(instance = %name, source = %label, pod = %job.pod, offset = seeded.offset, "restore loaded");
                        Task::Loaded {
                            pod: job.pod,
                            offset: seeded.offset,
                            up_to: seeded.up_to,
                        }
                    }
                    Err(failure) => {
                        warn!(instance = %name, source = %label, error = %failure.message, "restore failed");
                        Task::Failed {
                            message: failure.message,
                            permanent: failure.permanent,
                            retry_at: Instant::now() + RETRY_AFTER,
                        }
                    }
                };
                if let Ok(mut tasks) = restores.tasks.lock() {
                    tasks.insert(uid, task);
                }
            });
            pending(format!("restoring {} into {pod}", target.label))
        }
    }
}

/// Why a snapshot of `data_size` bytes cannot be restored onto claims of `size` (`spec.storage.size`), or `None`
/// when it fits or is not known to (no claim: an emptyDir's room is the node's; no recorded size). The pod's
/// server writes the copy it receives to its data volume before loading it, and with `appendonly yes` writes the
/// data again as its first AOF file: on a smaller claim it runs out of space mid-way, drops the transfer and asks
/// again forever, which no status would explain.
pub fn claim_too_small(data_size: Option<i64>, size: Option<&str>, aof: bool) -> Option<String> {
    let data = u128::try_from(data_size?).ok()?;
    let room = u128::try_from(
        size?
            .parse::<crate::api::quantity::Quantity>()
            .ok()?
            .nanos(),
    )
    .ok()?
        / 1_000_000_000;
    let needed = if aof { data * 2 } else { data };
    (needed > room).then(|| {
        let mib = |bytes: u128| bytes.div_ceil(1024 * 1024);
        format!(
            "its snapshot is {data} bytes and the server writes it to the pod's claim{} before loading it: \
             spec.storage.size {} ({} bytes) is too small; create the instance with a size of at least {}Mi",
            if aof { " and again as its first AOF file (appendonly yes)" } else { "" },
            size.unwrap_or_default(),
            room,
            mib(needed).max(1)
        )
    })
}

/// The completed `RedisBackup` `from` names, or the pass to return while there is none.
fn backup_target(
    ri: &RedisInstance,
    ctx: &Context,
    from: &FromBackup,
) -> Result<Target, Box<RestorePass>> {
    let namespace = ri.namespace().unwrap_or_default();
    let Some(backup) = ctx
        .stores
        .backups
        .get(&ObjectRef::new(&from.name).within(&namespace))
    else {
        return Err(Box::new(pending(format!(
            "waiting for RedisBackup {} (spec.bootstrap.fromBackup): it does not exist in namespace {namespace}",
            from.name
        ))));
    };
    let status = backup.status.clone().unwrap_or_default();
    match status.phase.as_str() {
        COMPLETED => {}
        FAILED => {
            return Err(Box::new(stop(format!(
                "RedisBackup {} failed ({}: {}); no pod serves: create the instance again from a completed backup",
                from.name, status.reason, status.message
            ))))
        }
        _ => {
            return Err(Box::new(pending(format!(
                "waiting for RedisBackup {} to complete before seeding the first pod",
                from.name
            ))))
        }
    }
    Ok(Target {
        label: format!("RedisBackup {}", from.name),
        record: RestoreStatus {
            backup: from.name.clone(),
            object: status.object.clone(),
            replication_id: status.replication_id.clone(),
            data_size: status.data_size,
            ..Default::default()
        },
        replid: status.replication_id.clone(),
        offset: status
            .replication_offset
            .and_then(|o| u64::try_from(o).ok()),
    })
}

/// The restore from an archive as recorded, or, before it is, the pass that records its plan (the timeline and
/// its base): the history is persisted before any pod is touched, so a restarted operator recognises it.
async fn archive_target(
    ri: &RedisInstance,
    ctx: &Context,
    from: &FromArchive,
) -> Result<Target, Box<RestorePass>> {
    let label = format!("the archive {}", from.prefix);
    if let Some(record) = ri.status.as_ref().and_then(|s| s.restore.clone()) {
        return Ok(Target {
            label,
            replid: record.replication_id.clone(),
            offset: None,
            record,
        });
    }
    let target_ms = match from.target_time.as_deref().map(parse_time).transpose() {
        Ok(at) => at,
        Err(message) => return Err(Box::new(stop(message))),
    };
    let bucket = match super::controller::bucket_for(ctx, ri).await {
        Ok((bucket, _)) => bucket,
        Err(refused) => {
            return Err(Box::new(stop(format!(
                "{}: {}",
                refused.reason, refused.message
            ))))
        }
    };
    let planned = match plan_archive(&bucket, &from.prefix, target_ms).await {
        Ok(planned) => planned,
        Err(failure) if failure.permanent => return Err(Box::new(stop(failure.message))),
        Err(failure) => return Err(Box::new(pending(failure.message))),
    };
    let timeline = &planned.plan.timeline;
    let bucket_name = ri
        .spec
        .backup
        .as_ref()
        .map(|b| b.s3.bucket.clone())
        .unwrap_or_default();
    Err(Box::new(RestorePass {
        pending: Some(format!(
            "restoring {label}: from the base snapshot {} of {}",
            timeline.offset, timeline.replid
        )),
        restored: Some(RestoreStatus {
            archive: from.prefix.clone(),
            target_time: from.target_time.clone(),
            object: format!("s3://{bucket_name}/{}", timeline.base_key(&from.prefix)),
            replication_id: timeline.replid.clone(),
            data_size: Some(status_integer(planned.base.data_size)),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// An RFC 3339 time in Unix milliseconds.
fn parse_time(text: &str) -> Result<i64, String> {
    text.parse::<k8s_openapi::jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| {
            format!("spec.bootstrap.fromArchive.targetTime {text:?} is not an RFC 3339 time: {e}")
        })
}

/// An archive's plan and its base.
struct Planned {
    plan: super::archive::Plan,
    base: BaseManifest,
}

/// Lists the archive under `prefix` and plans the restore to `target_ms`.
async fn plan_archive(
    bucket: &Arc<dyn ObjectStore>,
    prefix: &str,
    target_ms: Option<i64>,
) -> Result<Planned, Failure> {
    let root = object_store::path::Path::from(format!("{}/archive", prefix.trim_end_matches('/')));
    let keys: Vec<String> = bucket
        .list(Some(&root))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .map_err(|e| transient(format!("listing the archive {prefix}: {e}")))?;
    let timelines = super::archive::parse_listing(prefix, keys.iter().map(String::as_str));
    let mut manifests = HashMap::new();
    for (timeline, listed) in &timelines {
        if listed.complete {
            manifests.insert(
                timeline.clone(),
                read_manifest(bucket, prefix, timeline).await?,
            );
        }
    }
    let plan = super::archive::plan(
        &timelines,
        |t| manifests.get(t).map(|m| m.time_ms),
        target_ms,
    )
    .map_err(|e| permanent(format!("the archive {prefix} cannot restore this: {e}")))?;
    let base = manifests
        .remove(&plan.timeline)
        .ok_or_else(|| permanent("the planned base has no manifest"))?;
    Ok(Planned { plan, base })
}

async fn read_manifest(
    bucket: &Arc<dyn ObjectStore>,
    prefix: &str,
    timeline: &Timeline,
) -> Result<BaseManifest, Failure> {
    let key = timeline.manifest_key(prefix);
    let bytes = bucket
        .get(&object_store::path::Path::from(key.as_str()))
        .await
        .map_err(|e| transient(format!("reading {key}: {e}")))?
        .bytes()
        .await
        .map_err(|e| transient(format!("reading {key}: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| permanent(format!("{key} is not a base manifest: {e}")))
}

/// What the seeded pod reads after the base snapshot: nothing, or an archive's stream up to a time.
enum Stream {
    None,
    Archive {
        prefix: String,
        target_ms: Option<i64>,
    },
}

/// What one seeding reads and where it sends it.
struct Job {
    pod: String,
    target: Endpoint,
    access: Access,
    tls: Option<tokio_rustls::TlsAcceptor>,
    bucket: Arc<dyn ObjectStore>,
    key: String,
    object: String,
    replid: String,
    offset: u64,
    data_size: u64,
    sha256: String,
    stream: Stream,
}

/// The job, or why the backup cannot be restored (reported as the stop; looked at again every pass).
#[allow(clippy::too_many_arguments)]
async fn prepare(
    ri: &RedisInstance,
    ctx: &Context,
    source: Source<'_>,
    target: &Target,
    pod: &str,
    pods: &[PodReplication],
    access: &Access,
    material: Option<&Material>,
) -> Result<Job, String> {
    let at = pods
        .iter()
        .find(|p| p.pod == pod)
        .map(|p| p.endpoint.clone())
        .ok_or_else(|| format!("{pod} has no address yet"))?;
    let tls = match (access.tls.contains_key(&at.host), material) {
        (false, _) => None,
        (true, Some(material)) => Some(
            crate::tls::connect::acceptor(material)
                .map_err(|e| format!("the TLS Secret cannot serve the restore: {e}"))?,
        ),
        (true, None) => return Err("the TLS Secret is not available to serve the restore".into()),
    };
    let (bucket, key, offset, data_size, sha256, stream) = match source {
        Source::Backup(from) => {
            let namespace = ri.namespace().unwrap_or_default();
            let backup = ctx
                .stores
                .backups
                .get(&ObjectRef::new(&from.name).within(&namespace))
                .ok_or_else(|| format!("RedisBackup {} is gone", from.name))?;
            let status = backup.status.clone().unwrap_or_default();
            let (Some((bucket_name, key)), Some(offset), Some(data_size)) = (
                super::pass::object_parts(&status.object),
                status
                    .replication_offset
                    .and_then(|o| u64::try_from(o).ok()),
                status.data_size.and_then(|d| u64::try_from(d).ok()),
            ) else {
                return Err(format!(
                    "RedisBackup {} records no usable object, offset or size ({:?}); it cannot be restored",
                    from.name, status.object
                ));
            };
            if status.sha256.len() != 64 || status.replication_id.is_empty() {
                return Err(format!(
                    "RedisBackup {} records no SHA-256 or replication id; it cannot be restored",
                    from.name
                ));
            }
            let bucket = bucket_named(ctx, ri, bucket_name)
                .await
                .map_err(|r| format!("{}: {}", r.reason, r.message))?;
            (
                bucket,
                key.to_string(),
                offset,
                data_size,
                status.sha256.clone(),
                Stream::None,
            )
        }
        Source::Archive(from) => {
            let (bucket, _) = super::controller::bucket_for(ctx, ri)
                .await
                .map_err(|r| format!("{}: {}", r.reason, r.message))?;
            let timeline = target_timeline(target)?;
            let manifest = read_manifest(&bucket, &from.prefix, &timeline)
                .await
                .map_err(|f| f.message)?;
            let target_ms = from.target_time.as_deref().map(parse_time).transpose()?;
            (
                bucket,
                timeline.base_key(&from.prefix),
                manifest.replication_offset,
                manifest.data_size,
                manifest.sha256,
                Stream::Archive {
                    prefix: from.prefix.clone(),
                    target_ms,
                },
            )
        }
    };
    Ok(Job {
        pod: pod.to_string(),
        target: at,
        access: access.clone(),
        tls,
        bucket,
        key,
        object: target.record.object.clone(),
        replid: target.replid.clone(),
        offset,
        data_size,
        sha256,
        stream,
    })
}

/// The timeline a recorded archive restore reads (its object is the timeline's base).
fn target_timeline(target: &Target) -> Result<Timeline, String> {
    let folder = target.record.object.rsplit('/').nth(1).unwrap_or_default();
    let offset = folder
        .split_once('-')
        .and_then(|(_, offset)| offset.parse().ok())
        .ok_or_else(|| {
            format!(
                "status.restore.object {:?} names no timeline",
                target.record.object
            )
        })?;
    Ok(Timeline {
        replid: target.replid.clone(),
        offset,
    })
}

/// Why a seeding failed.
#[derive(Debug)]
struct Failure {
    message: String,
    /// Trying again would fail the same way (a corrupt object, a server that cannot read the format).
    permanent: bool,
}

fn transient(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        permanent: false,
    }
}

fn permanent(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        permanent: true,
    }
}

/// What a seeding loaded.
struct Seeded {
    /// The offset the pod is at.
    offset: u64,
    /// When the archive received the newest write replayed.
    up_to: Option<i64>,
}

/// Seeds the job's pod: checks that its server reads the snapshot's format, points it at the operator, streams
/// the snapshot (and the archive's stream after it), waits until the server holds it and parks it.
async fn seed(job: &Job, sent: &AtomicU64) -> Result<Seeded, Failure> {
    let at = &job.target;
    let node = RedisNode::open(&at.host, at.port, &job.access)
        .await
        .map_err(|e| transient(format!("{} cannot be reached: {e}", job.pod)))?;
    let software = node
        .info_server()
        .await
        .map_err(|e| transient(format!("{} does not answer INFO: {e}", job.pod)))
        .and_then(|text| server_software(&text).map_err(transient))?;
    let object = job
        .bucket
        .get(&object_store::path::Path::from(job.key.as_str()))
        .await
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                permanent(format!("the object {} does not exist", job.object))
            }
            other => transient(format!("reading {}: {other}", job.object)),
        })?;
    let compressed = tokio_util::io::StreamReader::new(
        object
            .into_stream()
            .map_err(|e| std::io::Error::other(e.to_string())),
    );
    let mut snapshot = async_compression::tokio::bufread::ZstdDecoder::new(compressed);
    let mut head = [0u8; 9];
    snapshot
        .read_exact(&mut head)
        .await
        .map_err(|e| permanent(format!("the object {} is not a snapshot: {e}", job.object)))?;
    check_format(&head, &software).map_err(permanent)?;
    let address = local_address_towards(&at.host)
        .map_err(|e| transient(format!("no local address reaches {}: {e}", at.host)))?;
    let listener = TcpListener::bind(SocketAddr::new(address, 0))
        .await
        .map_err(|e| transient(format!("listening on {address}: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| transient(e.to_string()))?
        .port();
    node.replicaof(&address.to_string(), port)
        .await
        .map_err(|e| transient(format!("pointing {} at the operator: {e}", job.pod)))?;
    let accepted = tokio::time::timeout(CONNECT_WAIT, listener.accept()).await;
    let outcome = match accepted {
        Ok(Ok((stream, _))) => match &job.tls {
            Some(acceptor) => match acceptor.accept(stream).await {
                Ok(stream) => serve(stream, head, &mut snapshot, job, sent, &node, &listener).await,
                Err(e) => Err(transient(format!("TLS with {}: {e}", job.pod))),
            },
            None => serve(stream, head, &mut snapshot, job, sent, &node, &listener).await,
        },
        Ok(Err(e)) => Err(transient(format!("accepting {}: {e}", job.pod))),
        Err(_) => Err(transient(format!(
            "{} did not connect to the operator at {address}:{port} within {} s (a NetworkPolicy limiting \
             the pods' egress?)",
            job.pod,
            CONNECT_WAIT.as_secs()
        ))),
    };
    // Parked again whatever happened: it replicates from itself, keeping what it loaded (or its empty data).
    let parked = node.replicaof(&at.host, at.port).await;
    let seeded = outcome?;
    parked.map_err(|e| transient(format!("parking {}: {e}", job.pod)))?;
    Ok(seeded)
}

/// Serves the snapshot on `stream` and waits until the server has loaded it. The connection stays open
/// until this returns.
#[allow(clippy::too_many_arguments)]
async fn serve<S, R>(
    stream: S,
    head: [u8; 9],
    snapshot: &mut R,
    job: &Job,
    sent: &AtomicU64,
    node: &RedisNode,
    listener: &TcpListener,
) -> Result<Seeded, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let lost = |e: std::io::Error| transient(format!("sending the snapshot to {}: {e}", job.pod));
    let mut stream = super::serve::await_sync(stream, super::IDLE)
        .await
        .map_err(lost)?;
    super::serve::full_resync(&mut stream, &job.replid, job.offset, job.data_size)
        .await
        .map_err(lost)?;
    let mut hasher = Sha256::new();
    let mut held = head.to_vec();
    let mut total = held.len() as u64;
    hasher.update(&held);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let read = snapshot
            .read(&mut buf)
            .await
            .map_err(|e| permanent(format!("the object {} is corrupt: {e}", job.object)))?;
        if read == 0 {
            break;
        }
        total += read as u64;
        if total > job.data_size {
            return Err(permanent(format!(
                "the object {} holds more than the {} bytes its backup recorded: it is not that backup's",
                job.object, job.data_size
            )));
        }
        hasher.update(&buf[..read]);
        // The previous chunk goes; this one is held until the next one (or the checksum) says it may.
        stream.write_all(&held).await.map_err(lost)?;
        sent.fetch_add(held.len() as u64, Ordering::Relaxed);
        held.clear();
        held.extend_from_slice(&buf[..read]);
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if total != job.data_size || digest != job.sha256 {
        return Err(permanent(format!(
            "the object {} does not match its backup ({total} bytes with SHA-256 {digest}, recorded {} bytes \
             with {}): it is corrupt or was replaced; the server was sent none of its end and loaded nothing",
            job.object, job.data_size, job.sha256
        )));
    }
    stream.write_all(&held).await.map_err(lost)?;
    stream.flush().await.map_err(lost)?;
    sent.fetch_add(held.len() as u64, Ordering::Relaxed);
    let (mut offset, mut up_to) = (job.offset, None);
    if let Stream::Archive { prefix, target_ms } = &job.stream {
        // The archive's stream after the base, segment by segment, up to the target.
        let planned = plan_archive(&job.bucket, prefix, *target_ms).await?;
        if planned.plan.timeline.replid != job.replid || planned.plan.timeline.offset != job.offset
        {
            return Err(permanent(format!(
                "the archive {prefix} changed since the restore was planned (its timeline is now {}-{})",
                planned.plan.timeline.replid, planned.plan.timeline.offset
            )));
        }
        for segment in &planned.plan.segments {
            let key = planned.plan.timeline.segment_key(prefix, segment);
            let data = read_segment(&job.bucket, &key).await?;
            let (bytes, ends) = super::archive::decode_frames(&data)
                .map_err(|e| permanent(format!("{key}: {e}")))?;
            let (len, stopped) = super::archive::cut(&bytes, &ends, *target_ms)
                .map_err(|e| permanent(format!("{key}: {e}")))?;
            stream.write_all(&bytes[..len]).await.map_err(lost)?;
            sent.fetch_add(len as u64, Ordering::Relaxed);
            offset += len as u64;
            if len > 0 {
                up_to = ends.iter().find(|(end, _)| *end >= len).map(|(_, t)| *t);
            }
            if stopped {
                break;
            }
        }
        stream.flush().await.map_err(lost)?;
    }
    await_loaded(job, node, listener, offset).await?;
    Ok(Seeded { offset, up_to })
}

/// A segment of the archive, decompressed.
async fn read_segment(bucket: &Arc<dyn ObjectStore>, key: &str) -> Result<Vec<u8>, Failure> {
    let compressed = bucket
        .get(&object_store::path::Path::from(key))
        .await
        .map_err(|e| transient(format!("reading {key}: {e}")))?
        .bytes()
        .await
        .map_err(|e| transient(format!("reading {key}: {e}")))?;
    let mut data = Vec::new();
    async_compression::tokio::bufread::ZstdDecoder::new(&compressed[..])
        .read_to_end(&mut data)
        .await
        .map_err(|e| permanent(format!("{key} is corrupt: {e}")))?;
    Ok(data)
}

/// Waits until the server reports the backup's history at `offset` (it loaded the snapshot and applied the
/// stream sent after it). A server that connects for a
/// snapshot again could not load it.
async fn await_loaded(
    job: &Job,
    node: &RedisNode,
    listener: &TcpListener,
    offset: u64,
) -> Result<(), Failure> {
    let deadline = Instant::now() + LOAD_WAIT;
    while Instant::now() < deadline {
        tokio::select! {
            again = listener.accept() => {
                if again.is_ok() {
                    return Err(permanent(format!(
                        "{} could not load the snapshot and asked for it again (its log says why: a format \
                         or a module it does not know?)",
                        job.pod
                    )));
                }
            }
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                if let Ok(state) = node.observe().await {
                    if state.replid == job.replid && state.repl_offset == offset && !state.loading {
                        return Ok(());
                    }
                }
            }
        }
    }
    Err(transient(format!(
        "{} did not load the snapshot within {} s",
        job.pod,
        LOAD_WAIT.as_secs()
    )))
}

/// The address of this host the pod's server reaches it at: the source address of a route towards `host` (no
/// packet is sent). In a pod, the pod's own address; on a node, the node's address on the pods' network.
fn local_address_towards(host: &str) -> std::io::Result<IpAddr> {
    let ip: IpAddr = host
        .parse()
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let unspecified: IpAddr = if ip.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = std::net::UdpSocket::bind(SocketAddr::new(unspecified, 0))?;
    socket.connect(SocketAddr::new(ip, 9))?;
    Ok(socket.local_addr()?.ip())
}

/// The server's software and release, from `INFO server` (see [`ServerSoftware::from_info`]).
fn server_software(info: &str) -> Result<ServerSoftware, String> {
    let fields = crate::redis::info::InfoFields::parse(info);
    ServerSoftware::from_info(|name| fields.get(name))
        .ok_or_else(|| "INFO server names no release".to_string())
}

/// The newest Redis snapshot format (`REDIS00NN`) a server loads: Redis by release; Valkey loads Redis' formats up
/// to RDB 11 (Redis 7.2), not Redis 7.4's RDB 12.
fn newest_redis_format(software: &ServerSoftware) -> u32 {
    match (software.name, software.version.minor()) {
        (ServerName::Valkey, _) => 11,
        (ServerName::Redis, (0..=6, _)) => 9,
        (ServerName::Redis, (7, 0..=1)) => 10,
        (ServerName::Redis, (7, 2..=3)) => 11,
        (ServerName::Redis, _) => 12,
    }
}

/// The newest Valkey snapshot format (`VALKEYNNN`, written since Valkey 9) a server loads: none for Redis or
/// Valkey before 9.
fn newest_valkey_format(software: &ServerSoftware) -> Option<u32> {
    (software.name == ServerName::Valkey && software.version.0 >= 9).then_some(80)
}

/// Refuses a snapshot that is no RDB file, or whose format `software` does not load: a newer Redis format, or a
/// Valkey format (`VALKEY080`) for Redis or a Valkey before 9.
fn check_format(head: &[u8; 9], software: &ServerSoftware) -> Result<(), String> {
    let number = |digits: &[u8]| std::str::from_utf8(digits).ok()?.parse::<u32>().ok();
    let newer = |format: String, newest: String| {
        format!(
            "the snapshot's format ({format}) is newer than {software} loads ({newest} at most): restore into an \
             instance whose image runs a server at least as new as the one backed up"
        )
    };
    if let Some(format) = head.strip_prefix(b"REDIS").and_then(number) {
        let newest = newest_redis_format(software);
        return match format > newest {
            true => Err(newer(format!("RDB {format}"), format!("RDB {newest}"))),
            false => Ok(()),
        };
    }
    if let Some(format) = head.strip_prefix(b"VALKEY").and_then(number) {
        return match newest_valkey_format(software) {
            None => Err(format!(
                "the snapshot was written by Valkey (format VALKEY{format:03}), which {software} does not load: \
                 restore into an instance whose image runs Valkey 9 or newer"
            )),
            Some(newest) if format > newest => Err(newer(
                format!("VALKEY{format:03}"),
                format!("VALKEY{newest:03}"),
            )),
            Some(_) => Ok(()),
        };
    }
    Err(
        "the object is not an RDB snapshot (it does not start with REDIS or VALKEY and a format number)"
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_larger_than_the_claim_is_refused_and_aof_needs_twice_the_room() {
        let mib = 1024 * 1024;
        assert!(claim_too_small(Some(10 * mib), Some("16Mi"), false).is_none());
        let refused = claim_too_small(Some(10 * mib), Some("16Mi"), true).unwrap();
        assert!(refused.contains("at least 20Mi"), "{refused}");
        assert!(refused.contains("appendonly yes"), "{refused}");
        let refused = claim_too_small(Some(80 * mib + 1), Some("64Mi"), false).unwrap();
        assert!(
            refused.contains("is too small; create the instance with a size of at least 81Mi"),
            "{refused}"
        );
        assert!(claim_too_small(Some(16 * mib), Some("16Mi"), false).is_none());
        assert!(claim_too_small(Some(16 * mib + 1), Some("16Mi"), false).is_some());
        // Nothing known: nothing refused.
        assert!(claim_too_small(None, Some("1Mi"), false).is_none());
        assert!(claim_too_small(Some(10 * mib), None, true).is_none());
        assert!(claim_too_small(Some(10 * mib), Some("1G"), true).is_none());
    }

    fn server(name: ServerName, version: &str) -> ServerSoftware {
        ServerSoftware {
            name,
            version: redis_fsm::Version::parse(version).unwrap(),
        }
    }

    fn redis(version: &str) -> ServerSoftware {
        server(ServerName::Redis, version)
    }

    #[test]
    fn a_snapshot_newer_than_the_server_is_refused_before_anything_is_sent() {
        assert_eq!(check_format(b"REDIS0010", &redis("7.0.15")), Ok(()));
        assert_eq!(check_format(b"REDIS0009", &redis("7.0.15")), Ok(()));
        let refused = check_format(b"REDIS0011", &redis("7.0.15")).unwrap_err();
        assert!(
            refused.contains("RDB 11") && refused.contains("RDB 10 at most"),
            "{refused}"
        );
        assert!(check_format(b"REDIS0010", &redis("6.2.14")).is_err());
        assert_eq!(check_format(b"REDIS0012", &redis("7.4.1")), Ok(()));
        assert!(check_format(b"ELF\x02\x01\x01\x00\x00\x00", &redis("7.0.15")).is_err());
    }

    #[test]
    fn valkey_snapshots_go_only_to_valkey_9_and_valkey_loads_redis_formats_up_to_rdb_11() {
        let valkey9 = server(ServerName::Valkey, "9.1.2");
        let valkey8 = server(ServerName::Valkey, "8.1.0");
        // What valkey-server 9.1.2 writes (SAVE on the real server).
        assert_eq!(check_format(b"VALKEY080", &valkey9), Ok(()));
        let refused = check_format(b"VALKEY080", &redis("7.4.1")).unwrap_err();
        assert!(
            refused.contains("written by Valkey (format VALKEY080)"),
            "{refused}"
        );
        assert!(check_format(b"VALKEY080", &valkey8).is_err());
        assert!(check_format(b"VALKEY081", &valkey9).is_err());
        assert_eq!(check_format(b"REDIS0010", &valkey9), Ok(()));
        assert_eq!(check_format(b"REDIS0011", &valkey8), Ok(()));
        assert!(check_format(b"REDIS0012", &valkey9).is_err());
    }

    #[test]
    fn the_server_software_is_read_from_info() {
        let redis_info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(server_software(redis_info), Ok(redis("7.0.15")));
        let valkey =
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.0.1\r\n";
        assert_eq!(
            server_software(valkey),
            Ok(server(ServerName::Valkey, "9.0.1"))
        );
        assert!(server_software("# Server\r\n").is_err());
    }

    #[test]
    fn the_operator_is_reached_at_its_address_towards_the_pod() {
        assert_eq!(
            local_address_towards("127.0.0.7").unwrap(),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert!(local_address_towards("not-an-address").is_err());
    }
}
